"""Ledger state for decisions, answered from the event index and refused when it lags.

``IndexedState`` implements ``LedgerState``: ``head`` is the index's checkpoint block, and every
read returns the state at a given indexed block (the current row when it is not newer, else
the newest history row at or before that block), so a decision reads one consistent state
even while the indexer moves on. ``head`` compares the checkpoint with the node's head and
raises ``LedgerStale`` when the index is behind by more than the configured blocks or seconds,
ahead of the node (blocks being rolled back), or when the node cannot be reached: the decision
is then a refusal, never a silent allow.

Where the node's head comes from: once ``watch_head`` has started (the API does, for as long
as it serves), from the head a background thread and the indexer's loop last read, never from
a request to the node: a slow or frozen node then costs a check nothing, and the head is
"not known" (so checks refuse) as soon as the circuit to the node opens, a read fails, or no
read has succeeded for ``max_lag_seconds``. Without it (a CLI command, a test) ``head`` asks
the node itself, through the same circuit breaker.

Reads are read-only snapshots (no write lock on SQLite) through prepared statements; the
reads of one decision can share one snapshot (``snapshot``).

Example:
    >>> state = IndexedState(chain=chain, engine=engine, max_lag_blocks=5, max_lag_seconds=10)
    >>> block = state.head().number
    >>> with state.snapshot() as reads:
    ...     reads.grant(consumer, 1, Channel.SMS, block).active
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from eth_utils.address import to_checksum_address
from sqlalchemy import Table, bindparam, select
from sqlalchemy.engine import Connection, Engine

from ledger.chain.client import Chain
from ledger.db.engine import connect
from ledger.db.prepared import Prepared
from ledger.domain.errors import ChainUnavailable, LedgerStale
from ledger.domain.grants import CompanyStatus, GrantRecord
from ledger.domain.state import BlockRef, CompanyRecord, ConsumerRecord, LedgerState, LinkRecord
from ledger.index.head import HeadWatcher
from ledger.index.tables import (
    COMPANY,
    CONSUMER,
    GRANT,
    LINK,
    MAX_DB_ID,
    CheckpointRow,
    Entity,
    table_of,
)


@dataclass(frozen=True, slots=True)
class IndexLag:
    """How far the index is behind the node, and whether that is too far."""

    index_block: int | None  # the checkpoint (None: nothing indexed yet)
    head_block: int | None  # the node's head (None: the node cannot be reached)
    lag_blocks: int  # blocks behind the head, beyond the confirmation depth
    lag_seconds: float  # seconds since the index last matched the head (0 when it does)
    stale: bool
    detail: str = ""


@dataclass(eq=False, kw_only=True)
class IndexedState:
    """``LedgerState`` from the index tables, pinned to the index's checkpoint block.

    Args:
        chain: the node whose head the index is measured against.
        engine: the database of the index.
        confirmations: the indexer's confirmation depth (not counted as lag).
        max_lag_blocks: blocks behind beyond which the index is stale.
        max_lag_seconds: seconds behind beyond which the index is stale.
        head_ttl: seconds a head read from the node is reused.
        clock: Unix seconds now, for the lag in seconds.
    """

    chain: Chain
    engine: Engine
    confirmations: int = 0
    max_lag_blocks: int = 5
    max_lag_seconds: float = 10.0
    # The node's head is asked at most every `head_ttl` seconds: under load most checks
    # reuse a head a few milliseconds old instead of paying a request each (a failed
    # request is never reused, so an unreachable node is noticed as soon as it expires).
    head_ttl: float = 0.05
    clock: Callable[[], float] = time.time
    _seen: tuple[float, BlockRef] | None = field(default=None, init=False, repr=False)
    _watcher: HeadWatcher | None = field(default=None, init=False, repr=False)

    def watch_head(self, *, interval: float) -> HeadWatcher:
        """Starts reading the node's head in the background; from then on ``head``, ``lag``
        and ``node_head`` answer from what was read and never wait on the node.

        Args:
            interval: seconds between reads of the head (the indexer's poll interval).

        Returns:
            The started watcher; ``stop`` it (the state then asks the node itself again).
        """
        watcher = HeadWatcher(self.chain, interval=interval)
        if not self.chain.in_process:  # an in-process chain answers at once: nothing to spare
            watcher.start()
            self._watcher = watcher
        return watcher

    def lag(self) -> IndexLag:
        """Measures the lag now (one read of the checkpoint; the node is asked only when no
        ``watch_head`` runs)."""
        return self._measure()[0]

    def node_head(self) -> BlockRef:
        """The node's head: as last read when ``watch_head`` runs, else asked of the node.

        Raises:
            ChainUnavailable: the node cannot be reached, or its head is not known now.
        """
        watcher = self._watcher
        if watcher is not None and watcher.alive:
            return watcher.head(max_age=self.max_lag_seconds).block
        return self.chain.head()

    @property
    def watching(self) -> bool:
        """Whether the node's head is known from memory (``watch_head`` runs): then ``head``
        and ``lag`` never ask the node."""
        watcher = self._watcher
        return watcher is not None and watcher.alive

    def _measure(self, conn: Connection | None = None) -> tuple[IndexLag, dict[str, Any] | None]:
        if conn is not None:  # a snapshot already open, when no node call can follow
            checkpoint = _checkpoint(conn)
            return self._lag(checkpoint), checkpoint
        # The checkpoint is read in a transaction of its own, closed before the node may be
        # asked for its head: no database connection waits on a slow or unreachable node.
        with connect(self.engine, read_only=True) as own:
            checkpoint = _checkpoint(own)
        return self._lag(checkpoint), checkpoint

    def _lag(self, checkpoint: dict[str, Any] | None) -> IndexLag:
        now = self.clock()
        # Written after the head was read: by an indexer that read a newer head than that.
        newer_index = False
        try:
            watcher = self._watcher
            if watcher is not None and watcher.alive:
                seen = watcher.head(max_age=self.max_lag_seconds)
                tip = seen.block
                newer_index = checkpoint is not None and checkpoint["synced_at"] > seen.wall
            else:
                tip = self._node_head(checkpoint)
        except ChainUnavailable as exc:
            since = 0.0 if checkpoint is None else max(0.0, now - checkpoint["synced_at"])
            index_block = None if checkpoint is None else int(checkpoint["block_number"])
            return IndexLag(index_block, None, 0, since, True, f"node unreachable: {exc.message}")
        head = tip.number
        if checkpoint is None:
            return IndexLag(None, head, head + 1, 0.0, True, "nothing indexed yet")
        indexed = int(checkpoint["block_number"])
        expected = head - self.confirmations
        replaced = indexed == head and checkpoint["block_hash"] != tip.hash.hex()
        if newer_index and (indexed > head or replaced):
            # Another process's indexer, or this one's loop, read the head after the watcher
            # did: the head read is older than the index, not a sign that blocks were lost.
            return IndexLag(indexed, head, 0, 0.0, False)
        if indexed > head or replaced:
            # The node lost or replaced blocks the index holds, and the indexer has not rolled
            # back yet: the index may answer from blocks that are no longer on chain.
            return IndexLag(indexed, head, 0, 0.0, True, "the node reorganised the indexed blocks")
        behind = max(0, expected - indexed)
        seconds = 0.0 if behind == 0 else max(0.0, now - float(checkpoint["synced_at"]))
        stale = behind > self.max_lag_blocks or seconds > self.max_lag_seconds
        return IndexLag(indexed, head, behind, seconds, stale)

    def _node_head(self, checkpoint: dict[str, Any] | None) -> BlockRef:
        seen = self._seen
        now = time.monotonic()
        if seen is not None and now - seen[0] < self.head_ttl:
            head = seen[1]
            # A remembered head behind the index, or another block at its height, is out of
            # date rather than a reorg: only the node itself can tell.
            if checkpoint is None or head.number > checkpoint["block_number"]:
                return head
            if (
                head.number == checkpoint["block_number"]
                and head.hash.hex() == checkpoint["block_hash"]
            ):
                return head
        tip = self.chain.head()
        self._seen = (now, tip)
        return tip

    # ----- LedgerState -----

    def head(self) -> BlockRef:
        """The checkpoint block, when the index is fresh enough to decide on.

        Raises:
            LedgerStale: the index lags beyond its bounds, or the node cannot be reached.
        """
        return self._head(*self._measure())

    def _head(self, lag: IndexLag, checkpoint: dict[str, Any] | None) -> BlockRef:
        if lag.stale or checkpoint is None:
            detail = f"({lag.detail})" if lag.detail else ""
            raise LedgerStale(lag.lag_blocks, lag.lag_seconds, detail)
        return BlockRef(
            int(checkpoint["block_number"]),
            bytes.fromhex(checkpoint["block_hash"]),
            int(checkpoint["block_timestamp"]),
        )

    def company(self, company_id: int, block: int) -> CompanyRecord:
        with self.snapshot() as reads:
            return reads.company(company_id, block)

    def link(self, commitment: bytes, block: int) -> LinkRecord:
        with self.snapshot() as reads:
            return reads.link(commitment, block)

    def grant(self, consumer: str, company_id: int, channel: int, block: int) -> GrantRecord:
        with self.snapshot() as reads:
            return reads.grant(consumer, company_id, channel, block)

    def consumer(self, consumer: str, block: int) -> ConsumerRecord:
        with self.snapshot() as reads:
            return reads.consumer(consumer, block)

    @contextmanager
    def snapshot(self) -> Iterator[LedgerState]:
        """The state reads made through the yielded state share one database snapshot.

        A decision reads the company, the link, the grant and the consumer at one block: one
        read transaction for all of them instead of one each. Hold it only for those reads
        (it keeps a pooled connection). Its ``head`` reads the checkpoint in the same
        transaction while ``watch_head`` runs; otherwise it is ``head`` (which may wait on the
        node: then ask it before opening the snapshot).

        Raises:
            DatabaseUnavailable: the database cannot be read.
        """
        with connect(self.engine, read_only=True) as conn:
            yield _SnapshotReads(self, conn)


@dataclass(slots=True)
class _SnapshotReads:
    """``LedgerState`` on one open read transaction (see ``IndexedState.snapshot``)."""

    state: IndexedState
    conn: Connection
    # Addresses known to be in the index's (checksummed) form: a decision reads a link, then
    # the grant and record of the consumer it names, with no keccak for that consumer.
    _addresses: dict[str, str] = field(default_factory=dict)

    def head(self) -> BlockRef:
        if self.state.watching:  # the node's head from memory: nothing here waits on the node
            return self.state._head(*self.state._measure(self.conn))
        return self.state.head()

    def company(self, company_id: int, block: int) -> CompanyRecord:
        row = None
        if 0 <= company_id < MAX_DB_ID:
            row = _at(self.conn, _COMPANY, block, company_id=company_id)
        state = COMPANY.empty if row is None else row
        return CompanyRecord(str(state["admin"]), CompanyStatus(int(state["status"])))

    def link(self, commitment: bytes, block: int) -> LinkRecord:
        row = _at(self.conn, _LINK, block, commitment=commitment.hex())
        if row is None or row["consumer"] is None:
            return LinkRecord(None, 0)
        consumer = str(row["consumer"])
        self._addresses[consumer] = consumer  # the indexer stores addresses checksummed
        return LinkRecord(consumer, int(row["linked_at"]))

    def grant(self, consumer: str, company_id: int, channel: int, block: int) -> GrantRecord:
        who = self._checksum(consumer)
        grant_row = None
        if 0 <= company_id < MAX_DB_ID:
            grant_row = _at(
                self.conn, _GRANT, block, consumer=who, company_id=company_id, channel=channel
            )
        consumer_row = _at(self.conn, _CONSUMER, block, consumer=who)
        g = GRANT.empty if grant_row is None else grant_row
        epoch = 0 if consumer_row is None else int(consumer_row["epoch"])
        # The contract's isGrantActive: set, not revoked, and not cleared by a revoke-all.
        active = int(g["max_contacts"]) != 0 and int(g["epoch"]) == epoch
        return GrantRecord(
            int(g["max_contacts"]),
            int(g["period"]),
            int(g["valid_from"]),
            int(g["valid_until"]),
            int(g["hours_mask"]),
            int(g["days_mask"]),
            int(g["version"]),
            int(g["epoch"]),
            active,
        )

    def consumer(self, consumer: str, block: int) -> ConsumerRecord:
        row = _at(self.conn, _CONSUMER, block, consumer=self._checksum(consumer))
        state = CONSUMER.empty if row is None else row
        return ConsumerRecord(
            int(state["epoch"]),
            int(state["cap_max"]),
            int(state["cap_period"]),
            int(state["link_count"]),
        )

    def _checksum(self, address: str) -> str:
        checksummed = self._addresses.get(address)
        if checksummed is None:
            checksummed = self._addresses[address] = str(to_checksum_address(address))
        return checksummed


@dataclass(frozen=True)
class _Rows:
    """A prepared read of whole rows, returned as dicts by column name."""

    statement: Prepared
    columns: tuple[str, ...]

    @classmethod
    def of(cls, table: Table, *where: Any, order_by: tuple[Any, ...] = ()) -> _Rows:
        query = select(table).where(*where).order_by(*order_by).limit(1)
        return cls(Prepared(query), tuple(column.name for column in table.columns))

    def first(self, conn: Connection, **params: Any) -> dict[str, Any] | None:
        row = self.statement.first(conn, **params)
        return None if row is None else dict(zip(self.columns, row, strict=True))


@dataclass(frozen=True)
class _EntityReads:
    """An entity's current row by key, and its newest history row at or before a block."""

    current: _Rows
    history: _Rows

    @classmethod
    def of(cls, entity: Entity) -> _EntityReads:
        current, history = entity.current_table, entity.history_table
        return cls(
            _Rows.of(current, *(current.c[k] == bindparam(k) for k in entity.key)),
            _Rows.of(
                history,
                *(history.c[k] == bindparam(k) for k in entity.key),
                history.c.block_number <= bindparam("block"),
                order_by=(history.c.block_number.desc(), history.c.log_index.desc()),
            ),
        )


_COMPANY = _EntityReads.of(COMPANY)
_LINK = _EntityReads.of(LINK)
_GRANT = _EntityReads.of(GRANT)
_CONSUMER = _EntityReads.of(CONSUMER)
_CHECKPOINT = _Rows.of(table_of(CheckpointRow))


def _checkpoint(conn: Connection) -> dict[str, Any] | None:
    return _CHECKPOINT.first(conn)


def _at(conn: Connection, reads: _EntityReads, block: int, **key: Any) -> dict[str, Any] | None:
    """The entity's state at ``block``: None when it had none yet."""
    row = reads.current.first(conn, **key)
    if row is None or row["block_number"] <= block:
        return row
    # Changed after ``block``: the newest change at or before it, from the history.
    return reads.history.first(conn, **key, block=block)
