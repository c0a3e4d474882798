"""The log's writer lock, one strategy per database backend.

Every append extends one global hash chain, and a check-and-record must count and append with
no other writer in between. SQLite's immediate transactions (``ledger.db.engine``) already hold
the write lock; PostgreSQL takes a transaction-scoped advisory lock, released at commit or
rollback.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Connection
from sqlmodel import Session

_PG_LOCK_KEY = 0x71756F7461  # "quota": the advisory lock of the usage log


def _postgresql(conn: Connection) -> None:
    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")


def _held_by_transaction(conn: Connection) -> None:
    """SQLite: ``BEGIN IMMEDIATE`` took the database's only write lock already."""


_STRATEGIES: dict[str, Callable[[Connection], None]] = {
    "postgresql": _postgresql,
    "sqlite": _held_by_transaction,
}


def connection_of(db: Session | Connection) -> Connection:
    """The Core connection of a unit of work, whichever way it was opened."""
    if isinstance(db, Session):
        db.flush()  # the prepared statements bypass the ORM: pending objects must be written
        return db.connection()
    return db


def lock(db: Session | Connection) -> None:
    """Serialises writers of the log for the rest of the caller's transaction.

    Raises:
        NotImplementedError: a backend with no known lock (refused rather than unserialised).
    """
    conn = connection_of(db)
    strategy = _STRATEGIES.get(conn.dialect.name)
    if strategy is None:
        raise NotImplementedError(f"no usage-log lock for {conn.dialect.name}")
    strategy(conn)
