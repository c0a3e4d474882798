"""Statements compiled once per dialect and run on the DBAPI cursor: the per-check hot path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement


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
