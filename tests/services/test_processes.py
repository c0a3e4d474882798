"""Exact consumption across several processes sharing one database (DESIGN rule 5).

Four worker processes, each with its own engine and connection pool, like four API
processes, record against one quota of 4 on one database. The ledger state is a fixed
snapshot here (every process must see the same grant, and the in-process chain is per
process): what is under test is that the database serialises count-then-append.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.audit.verify import verify_chain
from ledger.db.engine import transaction
from ledger.domain.channels import Channel
from ledger.domain.grants import ALL_DAYS, ALL_HOURS, OPEN_ENDED, CompanyStatus, GrantRecord
from ledger.domain.state import BlockRef, CompanyRecord, ConsumerRecord, LinkRecord
from ledger.schema import migrated_engine
from ledger.services.checks import Checker
from ledger.usage import log as usage_log
from tests.servers import postgres_url

CONSUMER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
PROCESSES, PER_PROCESS, QUOTA = 4, 50, 4


class FixedState:
    """One consumer with one SMS grant of QUOTA a year, company 1 active, at block 1."""

    def head(self) -> BlockRef:
        return BlockRef(1, b"\x01" * 32, 0)

    def company(self, company_id: int, block: int) -> CompanyRecord:
        return CompanyRecord("0x" + "11" * 20, CompanyStatus.ACTIVE)

    def link(self, commitment: bytes, block: int) -> LinkRecord:
        return LinkRecord(CONSUMER, 0)

    def grant(self, consumer: str, company_id: int, channel: int, block: int) -> GrantRecord:
        return GrantRecord(QUOTA, 365 * 86400, 0, OPEN_ENDED, ALL_HOURS, ALL_DAYS, 1, 0, True)

    def consumer(self, consumer: str, block: int) -> ConsumerRecord:
        return ConsumerRecord(0, 0, 0, 1)


def worker(url: str, start: Any) -> int:  # start: a Manager's Barrier proxy
    engine = migrated_engine(url)
    checker = Checker(state=FixedState(), engine=engine, salt=b"s", default_region="FR")
    start.wait()  # every process starts recording at once
    allowed = 0
    for _ in range(PER_PROCESS):
        result = checker.check(
            company_id=1, contact="+33612345678", channel=Channel.SMS, record=True
        )
        allowed += result.decision.allowed
    engine.dispose()
    return allowed


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    else:
        yield from postgres_url()


def test_several_processes_record_exactly_the_quota(url: str) -> None:
    migrated_engine(url).dispose()  # migrate once before the workers race
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(PROCESSES) as pool:
        barrier = manager.Barrier(PROCESSES)
        allowed = pool.starmap(worker, [(url, barrier)] * PROCESSES)
    assert sum(allowed) == QUOTA
    engine = migrated_engine(url)
    with transaction(engine) as session:
        assert usage_log.size(session) == PROCESSES * PER_PROCESS
        assert verify_chain(session) is None
    engine.dispose()
