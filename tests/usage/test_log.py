"""The usage log: hash chain, append-only at the database level, tamper detection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError

from ledger.audit.verify import verify_chain
from ledger.db.engine import transaction
from ledger.domain.window import window_state
from ledger.schema import migrated_engine
from ledger.usage import log as usage_log
from ledger.usage.entries import UsageEntryBase
from ledger.usage.hashing import GENESIS_HASH
from ledger.usage.windows import allowed_times


def entry(at: int, decision: str = "allowed") -> UsageEntryBase:
    return UsageEntryBase(
        at=at,
        company_id=1,
        contact="ab" * 32,
        channel=1,
        consumer="0xabc",
        decision=decision,
        reasons="[]",
    )


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = migrated_engine(f"sqlite:///{tmp_path / 'log.sqlite3'}")
    yield engine
    engine.dispose()


def test_entries_chain_their_hashes(engine: Engine) -> None:
    with transaction(engine) as s:
        first = usage_log.append(s, entry(10))
        second = usage_log.append(s, entry(20))
    assert (first.seq, second.seq) == (1, 2)
    with transaction(engine) as s:
        query = "SELECT seq, prev_hash, entry_hash FROM usage_entry ORDER BY seq"
        rows = list(s.connection().exec_driver_sql(query))
        assert rows[0][1] == GENESIS_HASH
        assert rows[1][1] == first.entry_hash == rows[0][2]
        assert verify_chain(s) is None


@pytest.mark.parametrize(
    "statement", ["UPDATE usage_entry SET decision = 'refused'", "DELETE FROM usage_entry"]
)
def test_the_database_refuses_edits(engine: Engine, statement: str) -> None:
    with transaction(engine) as s:
        usage_log.append(s, entry(10))
    with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
        conn.exec_driver_sql(statement)
    with transaction(engine) as s:
        assert usage_log.size(s) == 1


def test_a_tampered_entry_is_located(engine: Engine) -> None:
    with transaction(engine) as s:
        for t in range(5):
            usage_log.append(s, entry(t))
    # An attacker with full database access drops the guard and edits entry 3.
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER usage_entry_no_update")
        conn.exec_driver_sql("UPDATE usage_entry SET decision = 'refused' WHERE seq = 3")
    with transaction(engine) as s:
        assert verify_chain(s) == 3


def test_a_deleted_entry_is_located(engine: Engine) -> None:
    with transaction(engine) as s:
        for t in range(5):
            usage_log.append(s, entry(t))
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER usage_entry_no_delete")
        conn.exec_driver_sql("DELETE FROM usage_entry WHERE seq = 2")
    with transaction(engine) as s:
        assert verify_chain(s) == 2


def test_only_allowed_contacts_in_the_window_count(engine: Engine) -> None:
    with transaction(engine) as s:
        usage_log.append(s, entry(10))
        usage_log.append(s, entry(20, decision="refused"))
        usage_log.append(s, entry(30))
        assert allowed_times(s, consumer="0xabc", company_id=1, channel=1, since=10) == [30]
        assert allowed_times(s, consumer="0xabc", since=0) == [10, 30]


def test_the_newest_times_give_the_window_state_of_all_of_them(engine: Engine) -> None:
    with transaction(engine) as session:
        for at in (100, 105, 110, 120, 130, 140):
            usage_log.append(session, entry(at))
        usage_log.append(session, entry(135, decision="refused"))
    with transaction(engine) as session:
        every = allowed_times(session, consumer="0xabc", company_id=1, channel=1, since=100)
        newest = allowed_times(
            session, consumer="0xabc", company_id=1, channel=1, since=100, newest=3
        )
        assert every == [105, 110, 120, 130, 140]
        assert newest == [120, 130, 140]  # oldest first, like every
        for quota in (1, 3, 5, 8):
            bounded = allowed_times(
                session, consumer="0xabc", company_id=1, channel=1, since=100, newest=quota
            )
            for now in (140, 150):
                assert window_state(bounded, max_contacts=quota, period=50, now=now) == (
                    window_state(every, max_contacts=quota, period=50, now=now)
                )
