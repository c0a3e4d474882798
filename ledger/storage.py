"""Database engine: SQLite (WAL) by default, PostgreSQL by URL.

On SQLite every transaction starts with ``BEGIN IMMEDIATE``: the write lock is taken before
the first read, so a check-and-record counts and appends with no other writer in between.
Read-only units of work (``connect(..., read_only=True)``) start with a deferred ``BEGIN``
instead: in WAL mode they read one consistent snapshot and never wait for a writer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement
from sqlmodel import Session, create_engine

from ledger.errors import Unavailable

_READ_ONLY = "ql_read_only"  # execution option of a ``connect(..., read_only=True)`` connection


class DatabaseUnavailable(Unavailable):
    code = "database_unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__(f"database unavailable: {detail}", cause=detail)


def make_engine(url: str) -> Engine:
    """Creates the engine and brings the schema up to date (``ledger.schema``)."""
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    from ledger import schema  # imported here: the table modules import this one

    schema.upgrade(engine)
    return engine


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One unit of work: committed on success, rolled back on any error."""
    try:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            yield session
    except OperationalError as exc:
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
    except OperationalError as exc:
        raise DatabaseUnavailable(str(exc.orig)[:200]) from exc


class Prepared:
    """A Core statement compiled once per dialect and run on the DBAPI cursor directly.

    For the statements every check runs (the ledger-state reads, the rolling-window count, the
    log's head and insert): ``Connection.execute`` spends ~20 us a statement building an
    execution context and result metadata, several times what SQLite takes for an indexed
    lookup. This runs the same SQL in the caller's transaction with plain tuples in and out.
    DBAPI errors are raised as SQLAlchemy's (``OperationalError``, ``IntegrityError``, ...),
    as ``execute`` raises them; engine events and ``echo`` are bypassed.

    Values pass as the DBAPI driver takes and returns them, with no SQLAlchemy type
    processing: use it for integer, string and float columns only. A bind that would need
    converting raises ``TypeError`` when first compiled for a dialect.

    Example:
        >>> HEAD = Prepared(select(table.c.seq).order_by(table.c.seq.desc()).limit(1))
        >>> with connect(engine) as conn:
        ...     HEAD.first(conn)
    """

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        self._compiled: dict[tuple[str, str], _Compiled] = {}

    def rows(self, conn: Connection, **params: Any) -> list[tuple[Any, ...]]:
        """Every row the statement returns, as tuples in the order of its columns."""
        return self._run(conn, params, fetch=True)

    def first(self, conn: Connection, **params: Any) -> tuple[Any, ...] | None:
        rows = self._run(conn, params, fetch=True)
        return rows[0] if rows else None

    def execute(self, conn: Connection, **params: Any) -> None:
        """Runs a statement that returns no rows (INSERT)."""
        self._run(conn, params, fetch=False)

    def _run(self, conn: Connection, params: dict[str, Any], *, fetch: bool) -> list[Any]:
        dialect = conn.dialect
        compiled = self._compiled.get((dialect.name, dialect.driver))
        if compiled is None:
            compiled = _Compiled.of(self.statement, dialect)
            self._compiled[(dialect.name, dialect.driver)] = compiled
        arguments = compiled.arguments(params)
        cursor = conn.connection.cursor()  # the pooled DBAPI connection, inside conn's transaction
        try:
            cursor.execute(compiled.sql, arguments)
            return list(cursor.fetchall()) if fetch else []
        except dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(
                compiled.sql, arguments, exc, dialect.loaded_dbapi.Error, dialect=dialect
            ) from exc
        finally:
            cursor.close()


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # bound parameters, in the order of the SQL when positional
    literals: dict[str, Any]  # values bound in the statement itself (``== "allowed"``, LIMIT)
    positional: bool

    @classmethod
    def of(cls, statement: ClauseElement, dialect: Dialect) -> _Compiled:
        compiled = statement.compile(dialect=dialect)
        if not isinstance(compiled, SQLCompiler):
            raise TypeError(f"not a SQL statement: {statement}")
        if compiled.post_compile_params:
            raise TypeError(f"expanding parameters cannot be prepared: {compiled.string}")
        literals = {}
        for bind, name in compiled.bind_names.items():
            if bind.type.dialect_impl(dialect).bind_processor(dialect) is not None:
                raise TypeError(f"{name} ({bind.type}) needs conversion on {dialect.name}")
            if not bind.required:
                literals[name] = bind.effective_value
        if compiled.positiontup is not None:
            return cls(compiled.string, tuple(compiled.positiontup), literals, True)
        return cls(compiled.string, tuple(compiled.bind_names.values()), literals, False)

    def arguments(self, params: dict[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        # A parameter the caller forgot raises KeyError here, never binds NULL.
        values = {**self.literals, **params}
        if self.positional:
            return tuple(values[name] for name in self.names)
        return {name: values[name] for name in self.names}


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
