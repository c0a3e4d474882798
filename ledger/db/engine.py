"""Database engine: SQLite (WAL) by default, PostgreSQL by URL.

On SQLite every transaction starts with ``BEGIN IMMEDIATE``: the write lock is taken before
the first read, so a check-and-record counts and appends with no other writer in between.
Read-only units of work (``connect(..., read_only=True)``) start with a deferred ``BEGIN``
instead: in WAL mode they read one consistent snapshot and never wait for a writer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DatabaseError, InternalError, OperationalError
from sqlmodel import Session, create_engine

from ledger.db.prepared import Prepared
from ledger.domain.errors import Unavailable

_READ_ONLY = "ql_read_only"  # execution option of a ``connect(..., read_only=True)`` connection


class DatabaseUnavailable(Unavailable):
    code = "database_unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__(f"database unavailable: {detail}", cause=detail)


def make_engine(url: str, *, pool_size: int = 5, max_overflow: int = 10) -> Engine:
    """Creates the engine; the schema is brought up to date by ``ledger.schema.upgrade``.

    Args:
        url: the SQLAlchemy URL.
        pool_size: connections kept open. Size it to the threads that use the database at
            once: a connection over it is opened, then closed after each use (on SQLite its
            pragmas run again; on PostgreSQL a new session).
        max_overflow: connections opened beyond ``pool_size`` at a peak.
    """
    pool = {"pool_size": pool_size, "max_overflow": max_overflow}
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        in_memory = url == "sqlite://" or ":memory:" in url or "mode=memory" in url
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            # An in-memory database lives in its one connection: SQLAlchemy's pool for it
            # takes no size.
            **({} if in_memory else pool),
        )
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    else:
        engine = create_engine(url, pool_pre_ping=True, **pool)
    return engine


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: committed on success, rolled back on any error."""
    try:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            yield session
    except DatabaseError as exc:
        if not _cannot_be_trusted(exc):
            raise
        raise DatabaseUnavailable(str(exc.orig)[:200]) from exc


@contextmanager
def connect(engine: Engine, *, read_only: bool = False) -> Iterator[Connection]:
    """One unit of work on a Core connection, without an ORM session (the per-request paths).

    Committed on success, rolled back on any error, like ``transaction``. With ``read_only``
    (the caller must not write) SQLite starts a deferred transaction rather than an immediate
    one: no write lock is taken, so the reads neither wait for nor hold up writers.

    Raises:
        DatabaseUnavailable: the database cannot be reached, or stayed locked.
    """
    try:
        with engine.connect() as conn:
            if read_only:
                conn.execution_options(**{_READ_ONLY: True})
            with conn.begin():
                yield conn
    except DatabaseError as exc:
        if not _cannot_be_trusted(exc):
            raise
        raise DatabaseUnavailable(str(exc.orig)[:200]) from exc


def _cannot_be_trusted(exc: DatabaseError) -> bool:
    """Whether ``exc`` says the database is down or damaged, rather than the caller wrong.

    Connection loss, locks (OperationalError), server-side failures (InternalError) and a
    generic DatabaseError (SQLite: "file is not a database", a damaged file) are the database's;
    constraint and programming errors are the caller's to handle.
    """
    return isinstance(exc, (OperationalError, InternalError)) or type(exc) is DatabaseError


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would defer it).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


_BEGIN_WRITE = Prepared(text("BEGIN IMMEDIATE"))
_BEGIN_READ = Prepared(text("BEGIN"))


def _sqlite_begin(connection: Connection) -> None:
    # Writers take the write lock before their first read; read-only snapshots never take it.
    # Prepared, since every transaction pays for this statement.
    read_only = connection.get_execution_options().get(_READ_ONLY, False)
    (_BEGIN_READ if read_only else _BEGIN_WRITE).execute(connection)
