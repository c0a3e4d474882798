"""Reading the usage log's anchors: from the operator's event index, or from the chain itself.

An anchor is a (tree size, root) pair the operator wrote on chain with
``QuotaLedger.anchorRoot``; the contract keeps only the newest, and its ``RootAnchored``
events keep every one. The API serves proofs against the anchors of the index
(``ix_anchor_history``, kept by the indexer); an auditor who does not trust the operator reads
the same events straight from a node of their choosing (``anchors_from_chain``).

Example:
    >>> anchors = anchors_from_chain(Chain.connect(url, operator_key=key), 1, from_block=0)
    >>> [(a.tree_size, a.root.hex()) for a in anchors]
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_utils.crypto import keccak
from sqlalchemy import select
from sqlalchemy.engine import Connection, RowMapping

from ledger.chain.client import Chain, QueryRefused, RawLog
from ledger.domain.errors import Conflict, NotFound
from ledger.index.events import decode
from ledger.index.tables import AnchorHistoryRow, AnchorRow

ROOT_ANCHORED = keccak(text="RootAnchored(uint64,uint64,bytes32)")  # the event's topic 0
_HISTORY = AnchorHistoryRow.__table__  # type: ignore[attr-defined]
_CURRENT = AnchorRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Anchor:
    """One anchored tree head of usage log ``log_id``, where and when the chain recorded it."""

    log_id: int
    tree_size: int
    root: bytes  # the RFC 9162 root of the first ``tree_size`` entries
    block_number: int
    anchored_at: int  # the block's timestamp (unix seconds)
    tx_hash: str  # 0x-prefixed hex of the anchoring transaction


class UnknownAnchor(NotFound):
    """No anchor of this log has that tree size."""

    code = "unknown_anchor"

    def __init__(self, log_id: int, tree_size: int) -> None:
        super().__init__(
            f"usage log {log_id} was never anchored at {tree_size} entries",
            log_id=log_id,
            tree_size=tree_size,
        )


class LogBehindAnchor(Conflict):
    """The log has fewer entries than the chain anchors: it lost its tail (or was replaced)."""

    code = "log_behind_anchor"

    def __init__(self, log_id: int, log_size: int, anchored_size: int) -> None:
        super().__init__(
            f"usage log {log_id} has {log_size} entries but the chain anchors {anchored_size}:"
            " the log lost entries that were anchored",
            log_id=log_id,
            log_size=log_size,
            anchored_size=anchored_size,
        )


class LogDiverged(Conflict):
    """The log's first ``tree_size`` entries no longer hash to the root anchored for them."""

    code = "log_diverged"

    def __init__(self, log_id: int, tree_size: int) -> None:
        super().__init__(
            f"usage log {log_id}: its first {tree_size} entries no longer have the root"
            " anchored for them on chain: the log was edited or replaced",
            log_id=log_id,
            tree_size=tree_size,
        )


def anchors_from_index(
    conn: Connection, log_id: int, *, after_size: int = 0, limit: int | None = None
) -> list[Anchor]:
    """The anchors of ``log_id`` the event index holds, oldest (smallest) first.

    Args:
        conn: a connection to the operator's database (a read-only one is enough).
        log_id: the usage log's id on chain.
        after_size: only the anchors of more entries than this (keyset pagination).
        limit: at most this many (default: every one).
    """
    # Sizes grow with every anchor, so chain order is size order (and uses the block index).
    query = (
        select(_HISTORY)
        .where(_HISTORY.c.log_id == log_id, _HISTORY.c.tree_size > after_size)
        .order_by(_HISTORY.c.block_number, _HISTORY.c.log_index)
    )
    if limit is not None:
        query = query.limit(limit)
    return [_from_row(row) for row in conn.execute(query).mappings()]


def anchor_of_size(conn: Connection, log_id: int, tree_size: int) -> Anchor | None:
    """The indexed anchor of ``log_id`` at exactly ``tree_size`` entries, or None.

    The contract only accepts growing anchors, so at most one anchor has a given size.
    """
    query = select(_HISTORY).where(_HISTORY.c.log_id == log_id, _HISTORY.c.tree_size == tree_size)
    row = conn.execute(query.limit(1)).mappings().first()
    return None if row is None else _from_row(row)


def newest_anchor(conn: Connection, log_id: int) -> Anchor | None:
    """The largest indexed anchor of ``log_id``, or None before the first anchor.

    Read from the index's current-state row (one per log), not the history: every receipt
    asks for it.
    """
    query = select(_CURRENT).where(_CURRENT.c.log_id == log_id, _CURRENT.c.tree_size > 0)
    row = conn.execute(query).mappings().first()
    return None if row is None else _from_row(row)


def anchors_from_chain(
    chain: Chain,
    log_id: int,
    *,
    from_block: int = 0,
    to_block: int | None = None,
    chunk_blocks: int = 10_000,
) -> list[Anchor]:
    """Every anchor of ``log_id`` from the chain's ``RootAnchored`` events, oldest first.

    Reads the node, not the operator's index: what an auditor trusts. Blocks are read in
    chunks of ``chunk_blocks``, halved while the node refuses a range as too large.

    Args:
        chain: a client connected to the node and pointed at the ledger contract.
        log_id: the usage log's id on chain.
        from_block: the first block to read (the contract's deployment block saves reads).
        to_block: the last block to read (default: the node's head when called).
        chunk_blocks: the most blocks asked for in one ``eth_getLogs``.

    Raises:
        ChainUnavailable: the node cannot be reached, or refuses even a one-block range.
    """
    last = chain.head().number if to_block is None else to_block
    topics = [ROOT_ANCHORED, log_id.to_bytes(32, "big")]
    found: list[Anchor] = []
    times: dict[int, int] = {}
    start, span = from_block, max(1, chunk_blocks)
    while start <= last:
        end = min(last, start + span - 1)
        try:
            logs = chain.logs(start, end, topics=topics)
        except QueryRefused:
            if span == 1:
                raise
            span = max(1, span // 2)
            continue
        found.extend(_from_log(chain, raw, times) for raw in logs)
        start = end + 1
    found.sort(key=lambda a: a.tree_size)
    return found


def _from_log(chain: Chain, raw: RawLog, times: dict[int, int]) -> Anchor:
    event = decode(raw)
    if event is None or event.name != "RootAnchored":
        raise QueryRefused(f"the node answered a log that is no RootAnchored in {raw.block_number}")
    stamp = raw.block_timestamp
    if stamp is None:  # not every node puts the block's time in its logs
        if raw.block_number not in times:
            header = chain.header(raw.block_number)
            times[raw.block_number] = 0 if header is None else header.timestamp
        stamp = times[raw.block_number]
    return Anchor(
        log_id=int(event.args["logId"]),
        tree_size=int(event.args["treeSize"]),
        root=bytes(event.args["root"]),
        block_number=raw.block_number,
        anchored_at=stamp,
        tx_hash="0x" + raw.tx_hash.hex(),
    )


def _from_row(row: RowMapping) -> Anchor:
    return Anchor(
        log_id=int(row["log_id"]),
        tree_size=int(row["tree_size"]),
        root=bytes.fromhex(row["root"]),
        block_number=int(row["block_number"]),
        anchored_at=int(row["anchored_at"]),
        tx_hash="0x" + str(row["tx_hash"]),
    )
