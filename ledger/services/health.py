"""The operator's health report: the node, the index's lag, the database, the lists' freshness,
the local node's supervisor (under ``up``) and which process leads the indexer.

A health report is asked for precisely when something is wrong, so measuring it never fails
because the database does: whatever the database answers (cannot connect, server stopped,
database dropped, file locked, unreadable or not a database), the report says
``database_ok=False`` and why, and still carries what the node alone can tell.

Example:
    >>> report = measure(engine=ledger.engine, state=ledger.state, lists=ledger.lists)
    >>> report.degraded, report.head_block
    (False, 42)
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from ledger.audit.integrity import Corruption, LogIntegrity
from ledger.chain.anvil import NodeState, NodeStatus, NodeSupervisor
from ledger.chain.redact import redact
from ledger.db.engine import DatabaseUnavailable, transaction
from ledger.db.leader import Leader, LeaderLock
from ledger.domain.errors import ChainUnavailable
from ledger.index.state import IndexedState
from ledger.lists.cache import OppositionCache

log = logging.getLogger(__name__)

# Every way a database read can fail: ``transaction``/``connect`` turn connection failures into
# ``DatabaseUnavailable``, but a damaged SQLite file ("file is not a database") or a schema gone
# with its database raise SQLAlchemy's other errors.
_DATABASE_FAILURES = (DatabaseUnavailable, SQLAlchemyError)


@dataclass(frozen=True, slots=True)
class ListFreshness:
    """How old the current snapshot of one opposition list is."""

    region: str
    company_id: int | None
    version: str
    age_seconds: int
    max_age: int | None
    stale: bool


@dataclass(frozen=True, slots=True)
class Leadership:
    """Which process leads a role (the indexer) among those sharing the database."""

    role: str
    this_process: bool
    leader: Leader | None  # None: nobody leads now, or the database cannot tell


@dataclass(frozen=True, slots=True)
class Health:
    """One health measurement; ``None`` where the failing part could not tell."""

    database_ok: bool
    head_block: int | None  # the node's head (None: the node cannot be reached)
    index_block: int | None  # the index's checkpoint (None: nothing indexed, or unreadable)
    lag_blocks: int | None
    lag_seconds: float | None
    index_stale: bool
    detail: str = ""
    lists: list[ListFreshness] = field(default_factory=list)
    node: NodeStatus | None = None  # the local node this process supervises (`up`), if any
    leader: Leadership | None = None
    log_verified: int | None = None  # the seq up to which this process re-hashed the log
    log_corrupt: Corruption | None = None  # the usage log is broken: checks refuse

    @property
    def failed(self) -> bool:
        """Broken beyond waiting it out: the operator must repair and restart."""
        return self.log_corrupt is not None

    @property
    def degraded(self) -> bool:
        node_down = self.node is not None and self.node.state is not NodeState.RUNNING
        return self.index_stale or not self.database_ok or node_down or self.failed


def measure(
    *,
    engine: Engine,
    state: IndexedState,
    lists: OppositionCache,
    leadership: LeaderLock | None = None,
    node: NodeSupervisor | None = None,
    integrity: LogIntegrity | None = None,
    clock: Callable[[], float] = time.time,
) -> Health:
    """Measures the node, the index's lag, the database and the lists' freshness.

    Args:
        engine: the ledger's database.
        state: the event index, measured against the node.
        lists: the opposition lists, whose current snapshots are reported.
        leadership: the indexer's lock, to say who leads it.
        node: the supervisor of the local node this process runs, if any.
        integrity: this process's verification of the usage log, if any.
        clock: Unix seconds now, for the lists' ages.

    Returns:
        The report. It does not raise when the database fails: ``database_ok`` is then False,
        ``detail`` says why, and the index's fields are None (the node's head is still given).
    """
    now = int(clock())
    status = None if node is None else node.status()
    verified = None if integrity is None else integrity.verified
    corrupt = None if integrity is None else integrity.corruption
    try:
        lag = state.lag()
        with transaction(engine) as session:
            # On SQLite this takes the write lock (BEGIN IMMEDIATE): "ok" means checks can record.
            session.connection().exec_driver_sql("SELECT 1")
        freshness = [
            ListFreshness(
                region=m.region,
                company_id=m.company_id,
                version=m.version,
                age_seconds=now - m.fetched_at,
                max_age=m.max_age,
                stale=m.max_age is not None and now - m.fetched_at > m.max_age,
            )
            for m in lists.current()
        ]
        leader = None if leadership is None else _leadership(leadership, ask=True)
    except _DATABASE_FAILURES as exc:
        down = _database_down(state, _reason(exc))
        leader = None if leadership is None else _leadership(leadership, ask=False)
        return dataclasses.replace(
            down, node=status, leader=leader, log_verified=verified, log_corrupt=corrupt
        )
    return Health(
        database_ok=True,
        head_block=lag.head_block,
        index_block=lag.index_block,
        lag_blocks=lag.lag_blocks,
        lag_seconds=round(lag.lag_seconds, 3),
        index_stale=lag.stale,
        detail=redact(lag.detail),
        lists=freshness,
        node=status,
        leader=leader,
        log_verified=verified,
        log_corrupt=corrupt,
    )


def _leadership(lock: LeaderLock, *, ask: bool) -> Leadership:
    """Who leads; without ``ask`` (the database is down) only whether this process does."""
    held = lock.held
    if held or not ask:
        return Leadership(lock.role, held, lock.me if held else None)
    return Leadership(lock.role, False, lock.leader())


def _database_down(state: IndexedState, reason: str) -> Health:
    log.warning("health: %s", reason)
    details = [reason]
    try:
        head: int | None = state.node_head().number  # as last read: no wait on the node
    except ChainUnavailable as exc:
        head = None
        details.append(f"node unreachable: {exc.message}")
    return Health(
        database_ok=False,
        head_block=head,
        index_block=None,
        lag_blocks=None,
        lag_seconds=None,
        index_stale=True,  # an index that cannot be read is no index to decide on
        detail=redact("; ".join(details)),
    )


def _reason(exc: DatabaseUnavailable | SQLAlchemyError) -> str:
    if isinstance(exc, DatabaseUnavailable):
        reason = exc.message
    else:
        cause = exc.orig if isinstance(exc, DBAPIError) else exc
        reason = f"database unavailable: {str(cause).strip() or type(cause).__name__}"
    return reason.splitlines()[0][:200]  # drivers add hint lines; the first says what failed
