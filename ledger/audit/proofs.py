"""Building RFC 9162 inclusion and consistency proofs: the writer's side of ``merkle``.

The algorithms are the RFC's recursive definitions (sections 2.1.3.1 and 2.1.4.1) over a
``Subtrees`` source, which answers the hash of any range of leaves. A list of leaf hashes is
one such source (tests, offline exports); the database-backed tree that stores the hashes of
completed subtrees is another (``ledger.audit.tree``), so a proof in a tree of ten million
entries reads a few dozen stored hashes instead of hashing every leaf.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ledger.audit.merkle import EMPTY_ROOT, root, split


class Subtrees(Protocol):
    def hash(self, start: int, end: int) -> bytes:
        """The Merkle tree hash of leaves ``[start, end)`` (``end`` > ``start``)."""
        ...


class Leaves:
    """Every leaf hash in memory: a ``Subtrees`` for tests and for exports an auditor holds."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.leaves = leaves

    def hash(self, start: int, end: int) -> bytes:
        return root(self.leaves[start:end])


def tree_hash(source: Subtrees, size: int) -> bytes:
    """The root of the first ``size`` leaves."""
    return EMPTY_ROOT if size == 0 else source.hash(0, size)


def inclusion_proof(source: Subtrees, index: int, size: int) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of the first ``size`` leaves.

    Raises:
        ValueError: ``index`` is not below ``size``.
    """
    if not 0 <= index < size:
        raise ValueError(f"index {index} is outside a tree of size {size}")
    path: list[bytes] = []
    start, end = 0, size
    # The RFC's PATH(m, D[n]) unrolled from the root down; siblings come out root-first.
    while end - start > 1:
        k = split(end - start)
        if index - start < k:
            path.append(source.hash(start + k, end))
            end = start + k
        else:
            path.append(source.hash(start, start + k))
            start += k
    path.reverse()
    return path


def consistency_proof(source: Subtrees, size1: int, size2: int) -> list[bytes]:
    """The proof that the tree of ``size2`` leaves extends the tree of its first ``size1``.

    Raises:
        ValueError: the sizes are out of order.
    """
    if not 0 <= size1 <= size2:
        raise ValueError(f"a tree of size {size2} cannot extend one of size {size1}")
    if size1 == 0 or size1 == size2:
        return []
    path: list[bytes] = []
    m, start, end, whole = size1, 0, size2, True
    # SUBPROOF(m, D[start:end], whole) unrolled; siblings come out root-first.
    while m != end - start:
        k = split(end - start)
        if m <= k:
            path.append(source.hash(start + k, end))
            end = start + k
        else:
            path.append(source.hash(start, start + k))
            m, start, whole = m - k, start + k, False
    if not whole:
        path.append(source.hash(start, end))
    path.reverse()
    return path
