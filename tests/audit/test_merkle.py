"""The auditor's Merkle code on the RFC 6962 / transparency-dev reference vectors, and its
properties on random trees.

``vectors.json`` carries transparency-dev/merkle's reference data (its ``source`` field names
the files): the eight reference leaves, the roots at every size, the inclusion and consistency
proofs, and every corruption of them that its verifier must refuse. An auditor can run the same
file against ``ledger.audit.merkle`` alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.audit import merkle, proofs
from ledger.audit.merkle import ProofError

VECTORS: dict[str, Any] = json.loads((Path(__file__).parent / "vectors.json").read_text())
LEAVES = [merkle.leaf_hash(bytes.fromhex(data)) for data in VECTORS["leaves"]]


def _h(value: str) -> bytes:
    return bytes.fromhex(value)


def test_the_vectors_name_their_source() -> None:
    assert VECTORS["source"]["repository"] == "https://github.com/transparency-dev/merkle"
    valid = [case["valid"] for case in VECTORS["inclusion"] + VECTORS["consistency"]]
    assert valid.count(True) >= 10 and valid.count(False) >= 150


@pytest.mark.parametrize("case", VECTORS["hasher"], ids=lambda case: case["desc"])
def test_hasher(case: dict[str, Any]) -> None:
    if case["kind"] == "empty":
        got = merkle.EMPTY_ROOT
    elif case["kind"] == "leaf":
        got = merkle.leaf_hash(_h(case["input"]))
    else:
        got = merkle.node_hash(_h(case["left"]), _h(case["right"]))
    assert got.hex() == case["hash"]


@pytest.mark.parametrize("size", range(9))
def test_root_at_every_size(size: int) -> None:
    expected = _h(VECTORS["roots"][size])
    assert merkle.root(LEAVES[:size]) == expected
    assert proofs.tree_hash(proofs.Leaves(LEAVES), size) == expected


def test_every_complete_subtree_hash() -> None:
    source = proofs.Leaves(LEAVES)
    for level, hashes in enumerate(VECTORS["nodes"]):
        width = 1 << level
        got = [source.hash(i * width, (i + 1) * width).hex() for i in range(len(hashes))]
        assert got == hashes, f"level {level}"


@pytest.mark.parametrize("case", VECTORS["inclusion"], ids=lambda case: case["desc"])
def test_inclusion_vector(case: dict[str, Any]) -> None:
    index, size, path = case["leaf_index"], case["tree_size"], [_h(p) for p in case["proof"]]
    args = (_h(case["leaf_hash"]), index, size, path, _h(case["root"]))
    if case["valid"]:
        merkle.verify_inclusion(*args)
    else:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(*args)


@pytest.mark.parametrize(
    "case",
    [c for c in VECTORS["inclusion"] if c["valid"] and c["root"] in VECTORS["roots"]],
    ids=lambda case: case["desc"],
)
def test_inclusion_proof_built_as_the_reference(case: dict[str, Any]) -> None:
    built = proofs.inclusion_proof(proofs.Leaves(LEAVES), case["leaf_index"], case["tree_size"])
    assert [p.hex() for p in built] == case["proof"]


@pytest.mark.parametrize("case", VECTORS["consistency"], ids=lambda case: case["desc"])
def test_consistency_vector(case: dict[str, Any]) -> None:
    path = [_h(p) for p in case["proof"]]
    args = (case["size1"], case["size2"], path, _h(case["root1"]), _h(case["root2"]))
    if case["valid"]:
        merkle.verify_consistency(*args)
    else:
        with pytest.raises(ProofError):
            merkle.verify_consistency(*args)


@pytest.mark.parametrize(
    "case",
    [c for c in VECTORS["consistency"] if c["valid"] and c["root2"] in VECTORS["roots"]],
    ids=lambda case: case["desc"],
)
def test_consistency_proof_built_as_the_reference(case: dict[str, Any]) -> None:
    built = proofs.consistency_proof(proofs.Leaves(LEAVES), case["size1"], case["size2"])
    assert [p.hex() for p in built] == case["proof"]


@pytest.mark.parametrize(
    ("build", "args"),
    [
        (proofs.inclusion_proof, (0, 0)),
        (proofs.inclusion_proof, (8, 8)),
        (proofs.inclusion_proof, (-1, 8)),
        (proofs.consistency_proof, (5, 4)),
        (proofs.consistency_proof, (-1, 4)),
    ],
)
def test_builders_refuse_impossible_positions(build: Any, args: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="size"):
        build(proofs.Leaves(LEAVES), *args)


# ----- properties on random trees -----

hashes = st.binary(min_size=32, max_size=32)
trees = st.lists(hashes, min_size=1, max_size=80, unique=True)


@st.composite
def tree_and_index(draw: st.DrawFn) -> tuple[list[bytes], int]:
    leaves = draw(trees)
    return leaves, draw(st.integers(0, len(leaves) - 1))


@st.composite
def tree_and_sizes(draw: st.DrawFn) -> tuple[list[bytes], int, int]:
    leaves = draw(trees)
    size2 = draw(st.integers(1, len(leaves)))
    return leaves, draw(st.integers(1, size2)), size2


def _flip(value: bytes, position: int, delta: int) -> bytes:
    changed = bytearray(value)
    changed[position % len(value)] ^= delta
    return bytes(changed)


@settings(max_examples=60, deadline=None)
@given(trees)
def test_every_leaf_of_a_tree_verifies(leaves: list[bytes]) -> None:
    source, size = proofs.Leaves(leaves), len(leaves)
    root = merkle.root(leaves)
    for index, leaf in enumerate(leaves):
        path = proofs.inclusion_proof(source, index, size)
        merkle.verify_inclusion(leaf, index, size, path, root)


@settings(max_examples=40, deadline=None)
@given(trees)
def test_every_pair_of_sizes_is_consistent(leaves: list[bytes]) -> None:
    source = proofs.Leaves(leaves)
    roots = [merkle.root(leaves[:size]) for size in range(len(leaves) + 1)]
    for size2 in range(len(leaves) + 1):
        for size1 in range(size2 + 1):
            path = proofs.consistency_proof(source, size1, size2)
            merkle.verify_consistency(size1, size2, path, roots[size1], roots[size2])


@given(tree_and_index(), st.integers(0, 31), st.integers(1, 255), st.data())
def test_any_changed_byte_breaks_an_inclusion_proof(
    tree: tuple[list[bytes], int], position: int, delta: int, data: st.DataObject
) -> None:
    leaves, index = tree
    size, root = len(leaves), merkle.root(leaves)
    leaf, path = leaves[index], proofs.inclusion_proof(proofs.Leaves(leaves), index, size)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(_flip(leaf, position, delta), index, size, path, root)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(leaf, index, size, path, _flip(root, position, delta))
    if path:
        k = data.draw(st.integers(0, len(path) - 1))
        changed = [*path[:k], _flip(path[k], position, delta), *path[k + 1 :]]
        with pytest.raises(ProofError):
            merkle.verify_inclusion(leaf, index, size, changed, root)


@given(tree_and_index(), st.data())
def test_a_proof_for_one_position_proves_no_other(
    tree: tuple[list[bytes], int], data: st.DataObject
) -> None:
    leaves, index = tree
    size = len(leaves)
    path = proofs.inclusion_proof(proofs.Leaves(leaves), index, size)
    if size > 1:
        other_index = (index + data.draw(st.integers(1, size - 1))) % size
        with pytest.raises(ProofError):
            merkle.verify_inclusion(leaves[index], other_index, size, path, merkle.root(leaves))
    # A size goes with its root (the anchor records both): a proof in the tree of one size
    # does not prove inclusion in the tree of another, whatever that tree's root.
    other_size = data.draw(st.integers(index + 1, size + 8).filter(lambda n: n != size))
    grown = leaves + [merkle.leaf_hash(bytes([i])) for i in range(8)]
    with pytest.raises(ProofError):
        merkle.verify_inclusion(
            leaves[index], index, other_size, path, merkle.root(grown[:other_size])
        )


@given(tree_and_sizes(), st.integers(0, 31), st.integers(1, 255), st.data())
def test_any_changed_byte_or_size_breaks_a_consistency_proof(
    tree: tuple[list[bytes], int, int], position: int, delta: int, data: st.DataObject
) -> None:
    leaves, size1, size2 = tree
    root1, root2 = merkle.root(leaves[:size1]), merkle.root(leaves[:size2])
    path = proofs.consistency_proof(proofs.Leaves(leaves), size1, size2)
    with pytest.raises(ProofError):
        merkle.verify_consistency(size1, size2, path, _flip(root1, position, delta), root2)
    with pytest.raises(ProofError):
        merkle.verify_consistency(size1, size2, path, root1, _flip(root2, position, delta))
    if path:
        k = data.draw(st.integers(0, len(path) - 1))
        changed = [*path[:k], _flip(path[k], position, delta), *path[k + 1 :]]
        with pytest.raises(ProofError):
            merkle.verify_consistency(size1, size2, changed, root1, root2)
    if size1 < size2:
        # Either size changed with the root of the tree of that size.
        other1 = data.draw(st.integers(1, size2).filter(lambda n: n != size1))
        with pytest.raises(ProofError):
            merkle.verify_consistency(other1, size2, path, merkle.root(leaves[:other1]), root2)
        other2 = data.draw(st.integers(size1, len(leaves)).filter(lambda n: n != size2))
        with pytest.raises(ProofError):
            merkle.verify_consistency(size1, other2, path, root1, merkle.root(leaves[:other2]))
