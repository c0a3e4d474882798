"""Re-hashing the log: finds the first entry whose chain does not hold."""

from __future__ import annotations

from sqlmodel import Session, col, select

from ledger.usage.entries import UsageEntry, UsageEntryBase
from ledger.usage.hashing import GENESIS_HASH, leaf_bytes, leaf_hash


def verify_chain(session: Session) -> int | None:
    """Recomputes every hash; returns the first bad ``seq``, or None when the log is intact."""
    expected_prev, expected_seq = GENESIS_HASH, 1
    for row in session.exec(select(UsageEntry).order_by(col(UsageEntry.seq))):
        base = UsageEntryBase.model_validate(row, from_attributes=True)
        recomputed = leaf_hash(leaf_bytes(base, seq=row.seq, prev_hash=row.prev_hash))
        if (
            row.seq != expected_seq
            or row.prev_hash != expected_prev
            or row.entry_hash != recomputed
        ):
            return expected_seq
        expected_prev, expected_seq = row.entry_hash, row.seq + 1
    return None
