"""Ledger state for decisions, answered from the event index and refused when it lags.

``IndexedState`` implements ``LedgerState``: ``head`` is the index's checkpoint block, and every
read returns the state at a given indexed block (the current row when it is not newer, else
the newest history row at or before that block), so a decision reads one consistent state
even while the indexer moves on. ``head`` compares the checkpoint with the node's head and
raises ``LedgerStale`` when the index is behind by more than the configured blocks or seconds,
ahead of the node (blocks being rolled back), or when the node cannot be reached: the decision
is then a refusal, never a silent allow.

Example:
    >>> state = IndexedState(chain=chain, engine=engine, max_lag_blocks=5, max_lag_seconds=10)
    >>> block = state.head().number
    >>> state.grant(consumer, 1, Channel.SMS, block).active
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address
from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from ledger.chain import Chain
from ledger.errors import ChainUnavailable, LedgerStale
from ledger.grants import CompanyStatus, GrantRecord
from ledger.index_tables import COMPANY, CONSUMER, GRANT, LINK, CheckpointRow, Entity
from ledger.state import BlockRef, CompanyRecord, ConsumerRecord, LinkRecord
from ledger.storage import transaction

_MAX_DB_ID = 1 << 63


@dataclass(frozen=True, slots=True)
class IndexLag:
    """How far the index is behind the node, and whether that is too far."""

    index_block: int | None  # the checkpoint (None: nothing indexed yet)
    head_block: int | None  # the node's head (None: the node cannot be reached)
    lag_blocks: int  # blocks behind the head, beyond the confirmation depth
    lag_seconds: float  # seconds since the index last matched the head (0 when it does)
    stale: bool
    detail: str = ""


class IndexedState:
    """``LedgerState`` from the index tables, pinned to the index's checkpoint block."""

    def __init__(
        self,
        *,
        chain: Chain,
        engine: Engine,
        confirmations: int = 0,
        max_lag_blocks: int = 5,
        max_lag_seconds: float = 10.0,
        head_ttl: float = 0.05,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.chain = chain
        self.engine = engine
        self.confirmations = confirmations
        self.max_lag_blocks = max_lag_blocks
        self.max_lag_seconds = max_lag_seconds
        self.clock = clock
        # The node's head is asked at most every `head_ttl` seconds: under load most checks
        # reuse a head a few milliseconds old instead of paying a request each (a failed
        # request is never reused, so an unreachable node is noticed as soon as it expires).
        self.head_ttl = head_ttl
        self._seen: tuple[float, BlockRef] | None = None

    def lag(self) -> IndexLag:
        """Measures the lag now (one read of the checkpoint, one request to the node)."""
        return self._measure()[0]

    def _measure(self) -> tuple[IndexLag, dict[str, Any] | None]:
        checkpoint = self._checkpoint()
        return self._lag(checkpoint), checkpoint

    def _lag(self, checkpoint: dict[str, Any] | None) -> IndexLag:
        now = self.clock()
        try:
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
        lag, checkpoint = self._measure()
        if lag.stale or checkpoint is None:
            detail = f"({lag.detail})" if lag.detail else ""
            raise LedgerStale(lag.lag_blocks, lag.lag_seconds, detail)
        return BlockRef(
            int(checkpoint["block_number"]),
            bytes.fromhex(checkpoint["block_hash"]),
            int(checkpoint["block_timestamp"]),
        )

    def company(self, company_id: int, block: int) -> CompanyRecord:
        row = None
        if 0 <= company_id < _MAX_DB_ID:
            with transaction(self.engine) as session:
                row = _at(session.connection(), COMPANY, (company_id,), block)
        state = COMPANY.empty if row is None else row
        return CompanyRecord(str(state["admin"]), CompanyStatus(int(state["status"])))

    def link(self, commitment: bytes, block: int) -> LinkRecord:
        with transaction(self.engine) as session:
            row = _at(session.connection(), LINK, (commitment.hex(),), block)
        if row is None or row["consumer"] is None:
            return LinkRecord(None, 0)
        return LinkRecord(str(row["consumer"]), int(row["linked_at"]))

    def grant(self, consumer: str, company_id: int, channel: int, block: int) -> GrantRecord:
        who = to_checksum_address(consumer)
        grant_row = None
        with transaction(self.engine) as session:
            conn = session.connection()
            if 0 <= company_id < _MAX_DB_ID:
                grant_row = _at(conn, GRANT, (who, company_id, channel), block)
            consumer_row = _at(conn, CONSUMER, (who,), block)
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
        with transaction(self.engine) as session:
            row = _at(session.connection(), CONSUMER, (to_checksum_address(consumer),), block)
        state = CONSUMER.empty if row is None else row
        return ConsumerRecord(
            int(state["epoch"]),
            int(state["cap_max"]),
            int(state["cap_period"]),
            int(state["link_count"]),
        )

    def _checkpoint(self) -> dict[str, Any] | None:
        table = CheckpointRow.__table__  # type: ignore[attr-defined]
        with transaction(self.engine) as session:
            row = session.connection().execute(select(table)).mappings().first()
        return None if row is None else dict(row)


def _at(
    conn: Connection, entity: Entity, key: tuple[Any, ...], block: int
) -> dict[str, Any] | None:
    """The entity's state at ``block``: None when it had none yet."""
    current = entity.current_table
    match = [current.c[k] == v for k, v in zip(entity.key, key, strict=True)]
    row = conn.execute(select(current).where(*match)).mappings().first()
    if row is None or row["block_number"] <= block:
        return None if row is None else dict(row)
    # Changed after ``block``: the newest change at or before it, from the history.
    history = entity.history_table
    match = [history.c[k] == v for k, v in zip(entity.key, key, strict=True)]
    older = (
        conn.execute(
            select(history)
            .where(*match, history.c.block_number <= block)
            .order_by(history.c.block_number.desc(), history.c.log_index.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    return None if older is None else dict(older)
