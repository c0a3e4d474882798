"""Contacts of a bulk request parsed side by side in worker processes.

Parsing is what a scrub spends its time on (phonenumbers, tens of microseconds a number, all
in Python), so a large chunk is cut into one slice per CPU and parsed in a pool of processes
started once. A small chunk is parsed inline: a round trip to a worker costs more than it saves.

Example:
    >>> parse_many(["06 12 34 56 78", "nope"], default_region="FR")[0].value
    '+33612345678'
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context

from ledger.domain import contacts
from ledger.domain.errors import InvalidContact
from ledger.services import gc_pause

# A parsed contact, or why it is not one (the reason of its ``InvalidContact``).
Parsed = contacts.Contact | str

INLINE_BELOW = 2_000  # rows parsed in the caller's process below this size

_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def workers() -> int:
    """The processes parsing runs in: one per CPU this process may use."""
    return max(1, len(os.sched_getaffinity(0)))


def parse_many(raws: Sequence[str], *, default_region: str) -> list[Parsed]:
    """``parse_contact`` of each of ``raws``, in order, across the pool when it pays."""
    return gather(submit(raws, default_region=default_region))


def submit(raws: Sequence[str], *, default_region: str) -> list[Future[list[Parsed]]]:
    """Starts parsing ``raws`` (one slice per worker); ``gather`` collects them in order."""
    if len(raws) < INLINE_BELOW or workers() == 1:
        done: Future[list[Parsed]] = Future()
        done.set_result(parse_slice(list(raws), default_region))
        return [done]
    step = -(-len(raws) // workers())
    pool = _shared_pool()
    return [
        pool.submit(parse_slice, list(raws[i : i + step]), default_region)
        for i in range(0, len(raws), step)
    ]


def gather(futures: list[Future[list[Parsed]]]) -> list[Parsed]:
    out: list[Parsed] = []
    for future in futures:
        out.extend(future.result())
    return out


def parse_slice(raws: list[str], default_region: str) -> list[Parsed]:
    """Parses in this process (the worker's task)."""
    out: list[Parsed] = []
    with gc_pause.paused():
        for raw in raws:
            try:
                out.append(contacts.parse_contact(raw, default_region=default_region))
            except InvalidContact as exc:
                out.append(str(exc.fields["reason"]))
    return out


def _shared_pool() -> ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            # "spawn": a forked child of a threaded server may inherit held locks.
            _pool = ProcessPoolExecutor(max_workers=workers(), mp_context=get_context("spawn"))
            atexit.register(_pool.shutdown, cancel_futures=True)
        return _pool
