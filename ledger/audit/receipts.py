"""The proofs the API hands out: a receipt's inclusion in an anchored tree, and the consistency
between two anchors.

Both are built from the operator's database (``tree``) against anchors of the event index
(``anchors``); whoever receives them checks them with ``merkle`` against the roots they read
on chain themselves, so nothing here needs to be trusted.

Example:
    >>> with connect(engine, read_only=True) as conn:
    ...     found = inclusion(conn, log_id=1, seq=42)
    >>> merkle.verify_inclusion(leaf, 41, found.anchor.tree_size, found.path, root_on_chain)
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Connection

from ledger.audit.anchors import (
    Anchor,
    LogBehindAnchor,
    UnknownAnchor,
    anchor_of_size,
    newest_anchor,
)
from ledger.audit.tree import MerkleTree
from ledger.domain.errors import InvalidInput


class NotCovered(InvalidInput):
    """The anchor asked for was written before the entry: it cannot prove it."""

    code = "entry_not_covered"

    def __init__(self, seq: int, tree_size: int) -> None:
        super().__init__(
            f"entry {seq} is not in the anchored tree of {tree_size} entries",
            seq=seq,
            tree_size=tree_size,
        )


@dataclass(frozen=True, slots=True)
class Inclusion:
    """Entry ``seq`` is leaf ``seq - 1`` of ``anchor``'s tree: ``path`` leads to its root."""

    anchor: Anchor
    path: list[bytes]


@dataclass(frozen=True, slots=True)
class Consistency:
    """The tree of ``second`` extends the tree of ``first``: ``path`` proves it."""

    first: Anchor
    second: Anchor
    path: list[bytes]


def inclusion(
    conn: Connection, *, log_id: int, seq: int, tree_size: int | None = None
) -> Inclusion | None:
    """The inclusion proof of entry ``seq`` against the newest anchor, or the one of ``tree_size``.

    Args:
        conn: the operator's database, in one snapshot (a read-only connection).
        log_id: the usage log's id on chain.
        seq: the entry's receipt number (leaf ``seq - 1``).
        tree_size: prove against the anchor of this size instead of the newest.

    Returns:
        The proof, or None while no anchor covers the entry (and no ``tree_size`` was asked).

    Raises:
        UnknownAnchor: no anchor of ``tree_size``.
        NotCovered: the anchor of ``tree_size`` is older than the entry.
        LogBehindAnchor: the log no longer has every entry the anchor covers.
    """
    if tree_size is None:
        anchor = newest_anchor(conn, log_id)
        if anchor is None or anchor.tree_size < seq:
            return None
    else:
        anchor = anchor_of_size(conn, log_id, tree_size)
        if anchor is None:
            raise UnknownAnchor(log_id, tree_size)
        if anchor.tree_size < seq:
            raise NotCovered(seq, tree_size)
    tree = _whole(conn, log_id, anchor.tree_size)
    return Inclusion(anchor, tree.inclusion_proof(seq - 1, anchor.tree_size))


def consistency(conn: Connection, *, log_id: int, size1: int, size2: int) -> Consistency:
    """The consistency proof between the anchors of ``size1`` and ``size2`` entries.

    Raises:
        InvalidInput: ``size1`` is larger than ``size2``.
        UnknownAnchor: either size was never anchored.
        LogBehindAnchor: the log no longer has every entry the larger anchor covers.
    """
    if size1 > size2:
        raise InvalidInput(
            f"the first tree size ({size1}) is larger than the second ({size2})",
            size1=size1,
            size2=size2,
        )
    first = anchor_of_size(conn, log_id, size1)
    if first is None:
        raise UnknownAnchor(log_id, size1)
    second = anchor_of_size(conn, log_id, size2)
    if second is None:
        raise UnknownAnchor(log_id, size2)
    tree = _whole(conn, log_id, size2)
    return Consistency(first, second, tree.consistency_proof(size1, size2))


def _whole(conn: Connection, log_id: int, size: int) -> MerkleTree:
    """The log's tree, once it is known to hold ``size`` entries (else no proof can be built)."""
    tree = MerkleTree(conn)
    have = tree.size()
    if have < size:
        raise LogBehindAnchor(log_id, have, size)
    return tree
