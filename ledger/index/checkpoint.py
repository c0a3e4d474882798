"""How far the index goes: the checkpoint row and the recent block hashes kept for reorgs.

The checkpoint is read with a row lock and written in the transaction of the rows it covers,
so two indexer processes never both apply the same chunk. The recent blocks were stored only
after checking that each one's parent hash is the one before it: the newest one matching the
chain means all of them match.

Example:
    >>> stored = checkpoint_of(read_checkpoint(conn, lock=True))
    >>> same_block(stored, expected)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection

from ledger.chain.client import BlockHeader
from ledger.index.tables import BlockRow, CheckpointRow, table_of

_BLOCKS = table_of(BlockRow)
_CHECKPOINT = table_of(CheckpointRow)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The last indexed block, and when the index last matched the chain head (Unix seconds)."""

    block_number: int
    block_hash: bytes
    block_timestamp: int
    synced_at: float


def read_checkpoint(conn: Connection, *, lock: bool = False) -> dict[str, Any] | None:
    """The checkpoint row; with ``lock``, locked for the rest of the transaction (PostgreSQL:
    SQLite's immediate transactions already hold the write lock)."""
    query = select(_CHECKPOINT).where(_CHECKPOINT.c.id == 1)
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    return None if row is None else dict(row)


def checkpoint_of(row: dict[str, Any] | None) -> Checkpoint | None:
    """The checkpoint a row (from ``read_checkpoint``) describes."""
    if row is None:
        return None
    return Checkpoint(
        row["block_number"],
        bytes.fromhex(row["block_hash"]),
        row["block_timestamp"],
        row["synced_at"],
    )


def write_checkpoint(conn: Connection, checkpoint: Checkpoint, address: str, start: int) -> None:
    conn.execute(delete(_CHECKPOINT))
    conn.execute(
        insert(_CHECKPOINT),
        [
            {
                "id": 1,
                "contract": address,
                "start_block": start,
                "block_number": checkpoint.block_number,
                "block_hash": checkpoint.block_hash.hex(),
                "block_timestamp": checkpoint.block_timestamp,
                "synced_at": checkpoint.synced_at,
            }
        ],
    )


def mark_synced(conn: Connection, synced_at: float) -> None:
    """Records when the index last matched the chain head (the lag in seconds starts there)."""
    conn.execute(_CHECKPOINT.update().where(_CHECKPOINT.c.id == 1).values(synced_at=synced_at))


def same_block(a: Checkpoint | None, b: Checkpoint | None) -> bool:
    """Whether two checkpoints name the same block (when they were synced does not matter)."""
    if a is None or b is None:
        return a is b
    return (a.block_number, a.block_hash) == (b.block_number, b.block_hash)


def store_blocks(conn: Connection, headers: Sequence[BlockHeader], *, keep_from: int) -> None:
    """Keeps the headers' hashes and forgets the blocks before ``keep_from``."""
    if headers:
        numbers = [h.number for h in headers]
        conn.execute(delete(_BLOCKS).where(_BLOCKS.c.number.in_(numbers)))
        rows = [
            {
                "number": h.number,
                "hash": h.hash.hex(),
                "parent_hash": h.parent_hash.hex(),
                "timestamp": h.timestamp,
            }
            for h in headers
        ]
        conn.execute(insert(_BLOCKS), rows)
        # The checkpoint block always stays, however far behind the head it is.
        keep_from = min(keep_from, max(numbers))
    # Older blocks are beyond any reorg we look for.
    conn.execute(delete(_BLOCKS).where(_BLOCKS.c.number < keep_from))


def stored_blocks(conn: Connection) -> list[tuple[int, str]]:
    """The kept blocks as (number, hash hex), newest first: where to look for a fork point."""
    query = select(_BLOCKS.c.number, _BLOCKS.c.hash).order_by(_BLOCKS.c.number.desc())
    return [(int(number), str(block_hash)) for number, block_hash in conn.execute(query)]


def block_timestamp(conn: Connection, number: int) -> int:
    """The timestamp of a kept block."""
    query = select(_BLOCKS.c.timestamp).where(_BLOCKS.c.number == number)
    timestamp: int = conn.execute(query).scalar_one()
    return timestamp


def forget_blocks_after(conn: Connection, block: int) -> None:
    conn.execute(delete(_BLOCKS).where(_BLOCKS.c.number > block))


def clear_checkpoint(conn: Connection) -> None:
    """Forgets the checkpoint and the kept blocks: the index starts from nothing."""
    conn.execute(delete(_BLOCKS))
    conn.execute(delete(_CHECKPOINT))
