"""Storage helpers of the hot path: prepared statements and read-only snapshots."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import bindparam, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from ledger.db.engine import DatabaseUnavailable, connect
from ledger.db.prepared import Prepared
from ledger.index.tables import CheckpointRow
from ledger.schema import migrated_engine
from ledger.usage import log as usage_log
from ledger.usage.entries import UsageEntry, UsageEntryBase
from ledger.usage.windows import allowed_times

LOG = UsageEntry.__table__  # type: ignore[attr-defined]


def entry(at: int, consumer: str = "0xabc", decision: str = "allowed") -> UsageEntryBase:
    return UsageEntryBase(
        at=at,
        company_id=1,
        contact="ab" * 32,
        channel=1,
        consumer=consumer,
        decision=decision,
        reasons="[]",
    )


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "storage.sqlite3"


def test_a_prepared_select_returns_what_sqlalchemy_returns(db_engine: Engine) -> None:
    with connect(db_engine) as conn:
        for at, who, decision in [(10, "a", "allowed"), (20, "a", "refused"), (30, "b", "allowed")]:
            usage_log.append(conn, entry(at, who, decision))
    # A bound parameter, a literal bound by the statement itself, ordering and a LIMIT.
    query = (
        select(LOG.c.seq, LOG.c.at, LOG.c.consumer)
        .where(LOG.c.at > bindparam("since"), LOG.c.decision == "allowed")
        .order_by(LOG.c.at.desc())
        .limit(5)
    )
    with connect(db_engine, read_only=True) as conn:
        expected = [tuple(row) for row in conn.execute(query, {"since": 0})]
        assert Prepared(query).rows(conn, since=0) == expected == [(3, 30, "b"), (1, 10, "a")]
        assert Prepared(query).first(conn, since=25) == (3, 30, "b")
        assert Prepared(query).first(conn, since=30) is None


def test_a_missing_parameter_raises_rather_than_binding_null(db_engine: Engine) -> None:
    query = Prepared(select(LOG.c.seq).where(LOG.c.consumer == bindparam("consumer")))
    with connect(db_engine, read_only=True) as conn, pytest.raises(KeyError, match="consumer"):
        query.rows(conn)


def test_a_bind_the_driver_would_need_converted_is_refused() -> None:
    checkpoint = CheckpointRow.__table__  # type: ignore[attr-defined]
    float_bind = Prepared(select(checkpoint).where(checkpoint.c.synced_at > bindparam("t")))
    engine = migrated_engine("sqlite://")
    with connect(engine, read_only=True) as conn, pytest.raises(TypeError, match="FLOAT"):
        float_bind.rows(conn, t=1.0)
    engine.dispose()


def test_driver_errors_surface_as_sqlalchemy_errors(db_engine: Engine) -> None:
    broken = Prepared(text("SELECT seq FROM no_such_table"))
    with db_engine.connect() as conn, pytest.raises(DBAPIError, match="no_such_table"):
        broken.rows(conn)


def test_an_operational_error_makes_the_database_unavailable(sqlite_path: Path) -> None:
    engine = migrated_engine(f"sqlite:///{sqlite_path}")
    broken = Prepared(text("SELECT seq FROM no_such_table"))  # OperationalError on SQLite
    with pytest.raises(DatabaseUnavailable, match="no such table"), connect(engine) as conn:
        broken.rows(conn)
    engine.dispose()


def _other_writer_can_lock(path: Path) -> bool:
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
        return False
    finally:
        other.close()


def test_on_sqlite_a_read_only_snapshot_leaves_the_write_lock_to_writers(
    sqlite_path: Path,
) -> None:
    engine = migrated_engine(f"sqlite:///{sqlite_path}")
    with connect(engine, read_only=True) as conn:
        allowed_times(conn, consumer="0xabc", since=0)
        assert _other_writer_can_lock(sqlite_path)
    with connect(engine) as conn:  # a writer holds the lock from its first statement on
        allowed_times(conn, consumer="0xabc", since=0)
        assert not _other_writer_can_lock(sqlite_path)
    engine.dispose()
