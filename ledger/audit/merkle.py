"""RFC 9162 Merkle tree hashing and proof verification: what an auditor runs.

Standard library only, no database and no node: an auditor can verify a receipt's inclusion
proof, or the consistency between two anchored roots, from an export alone. Proofs are built
on the writer's side (``ledger.audit.proofs``) and only checked here, as transparency-dev keeps
its verifier apart from its log.

Hashes are 32-byte ``bytes``; a leaf's hash is the usage entry's ``entry_hash``
(``ledger.usage.hashing.leaf_hash``, ``SHA-256(0x00 || entry)``).

Example:
    >>> leaves = [leaf_hash(b"a"), leaf_hash(b"b"), leaf_hash(b"c")]
    >>> verify_inclusion(leaves[2], 2, 3, [node_hash(leaves[0], leaves[1])], root(leaves))
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32  # SHA-256
EMPTY_ROOT = hashlib.sha256(b"").digest()  # RFC 9162 2.1.1: the hash of an empty list


class ProofError(ValueError):
    """A proof does not prove what it claims; the message says where it failed."""


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)`` (RFC 9162 section 2.1.1)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)`` (RFC 9162 section 2.1.1)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """The largest power of two smaller than ``n`` (``n`` >= 2): where RFC 9162 splits a tree."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """The Merkle tree hash of a list of leaf hashes, folded bottom-up without recursion."""
    if not leaves:
        return EMPTY_ROOT
    # Hash the perfect subtrees of the binary decomposition of len(leaves), left to right,
    # then join them right to left: the same value as the RFC's recursive definition.
    peaks: list[tuple[int, bytes]] = []  # (size, hash) of completed perfect subtrees
    for leaf in leaves:
        size, h = 1, leaf
        while peaks and peaks[-1][0] == size:
            h = node_hash(peaks.pop()[1], h)
            size *= 2
        peaks.append((size, h))
    h = peaks[-1][1]
    for _, left in reversed(peaks[:-1]):
        h = node_hash(left, h)
    return h


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes
) -> None:
    """Checks that ``leaf`` is entry ``index`` (0-based) of the tree of ``size`` with that root.

    Raises:
        ProofError: the index is out of range, a hash is not 32 bytes, the proof has the wrong
            length, or the root it leads to is not ``expected_root``.
    """
    if not 0 <= index < size:
        raise ProofError(f"index {index} is outside a tree of size {size}")
    # A single-leaf tree's root is its leaf: without this, two equal wrong-size values (an
    # empty leaf and an empty root) would "verify", as transparency-dev's tests probe.
    _check_sizes(leaf, proof)
    computed = _root_from_inclusion(leaf, index, size, proof)
    if computed != expected_root:
        raise ProofError(f"inclusion proof for index {index} does not lead to the root")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Checks that the tree of ``size2`` with ``root2`` extends the one of ``size1``/``root1``.

    A log that was edited, truncated or rebuilt between two anchors has no such proof.

    Raises:
        ProofError: the sizes are out of order, the proof has the wrong length, or it does not
            lead to both roots.
    """
    if size1 < 0 or size2 < size1:
        raise ProofError(f"a tree of size {size2} cannot extend one of size {size1}")
    if size1 == size2:
        if proof:
            raise ProofError("a consistency proof between equal sizes is empty")
        if root1 != root2:
            raise ProofError(f"two different roots for the same size {size1}")
        return
    if size1 == 0:
        if proof:
            raise ProofError("a consistency proof from the empty tree is empty")
        return
    if not proof:
        raise ProofError("empty consistency proof between different sizes")
    _check_sizes(root1, proof)
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # a power of two: the old root is itself a node of the path
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != root1:
        raise ProofError(f"consistency proof does not lead to the root of size {size1}")
    if sr != root2:
        raise ProofError(f"consistency proof does not lead to the root of size {size2}")


def _check_sizes(first: bytes, proof: Sequence[bytes]) -> None:
    for position, value in enumerate([first, *proof]):
        if len(value) != HASH_SIZE:
            where = "the starting hash" if position == 0 else f"proof element {position - 1}"
            raise ProofError(f"{where} has {len(value)} bytes, not {HASH_SIZE}")


def _root_from_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    # RFC 9162 section 2.1.3.2.
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    return r
