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
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Slice:
    """Part of the input being parsed, kept to parse it again should its worker die."""

    raws: list[str]
    default_region: str
    future: Future[list[Parsed]]


def submit(raws: Sequence[str], *, default_region: str) -> list[Slice]:
    """Starts parsing ``raws`` (one slice per worker); ``gather`` collects them in order."""
    if len(raws) < INLINE_BELOW or workers() == 1:
        done: Future[list[Parsed]] = Future()
        done.set_result(parse_slice(list(raws), default_region))
        return [Slice([], default_region, done)]
    step = -(-len(raws) // workers())
    parts = [list(raws[i : i + step]) for i in range(0, len(raws), step)]
    try:
        pool = _shared_pool()
        return [
            Slice(p, default_region, pool.submit(parse_slice, p, default_region)) for p in parts
        ]
    except BrokenProcessPool:  # a worker died since the last request: start afresh
        _drop_pool()
        pool = _shared_pool()
        return [
            Slice(p, default_region, pool.submit(parse_slice, p, default_region)) for p in parts
        ]


def gather(slices: list[Slice]) -> list[Parsed]:
    out: list[Parsed] = []
    for part in slices:
        try:
            out.extend(part.future.result())
        except BrokenProcessPool:
            # A worker died (killed, out of memory): a new pool serves the next request, and
            # this slice is parsed here rather than failing the request.
            _drop_pool()
            out.extend(parse_slice(part.raws, part.default_region))
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


def _drop_pool() -> None:
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None


def _shared_pool() -> ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            # "spawn": a forked child of a threaded server may inherit held locks.
            _pool = ProcessPoolExecutor(max_workers=workers(), mp_context=get_context("spawn"))
            atexit.register(_pool.shutdown, cancel_futures=True)
        return _pool
