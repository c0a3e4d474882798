"""Contacts parsed in worker processes answer as parsed inline, even when a worker dies."""

from __future__ import annotations

import contextlib
import os
import signal

from ledger.domain import contacts
from ledger.services import bulk_parse


def _raws() -> list[str]:
    raws = [
        f"06 12 {i // 10_000 % 100:02d} {i // 100 % 100:02d} {i % 100:02d}" for i in range(3000)
    ]
    raws[7], raws[2500] = "nope", "Bob@Example.org"
    return raws


def _inline(raws: list[str]) -> list[bulk_parse.Parsed]:
    return bulk_parse.parse_slice(raws, "FR")


def test_the_pool_parses_as_inline_and_survives_a_killed_worker() -> None:
    raws = _raws()
    assert len(raws) >= bulk_parse.INLINE_BELOW
    expected = _inline(raws)
    assert isinstance(expected[0], contacts.Contact) and isinstance(expected[7], str)
    assert bulk_parse.parse_many(raws, default_region="FR") == expected
    pool = bulk_parse._shared_pool()
    for pid in list(pool._processes):
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):  # the pool may have reaped it already
            os.waitpid(pid, 0)  # dead before the next request, whenever the pool notices
    assert bulk_parse.parse_many(raws, default_region="FR") == expected  # parsed here instead
    assert bulk_parse._shared_pool() is not pool  # a fresh pool for the next request
    assert bulk_parse.parse_many(raws, default_region="FR") == expected
