"""The database's Merkle tree of the usage log: the same roots and proofs as the leaves in memory.

Stored subtree hashes are an accelerator only, so every answer is compared with
``proofs.Leaves`` over the same entry hashes, before and after ``extend``, at sizes around the
stored levels (256, 512, 1024, 2048), and checked with the auditor's ``merkle.verify_*``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DatabaseError

from ledger.audit import merkle, proofs
from ledger.audit import tree as tree_module
from ledger.audit.tree import CHUNK, MerkleNode, MerkleTree, extend
from ledger.db.engine import transaction
from ledger.db.prepared import Prepared
from ledger.domain.channels import Channel
from ledger.runtime import Ledger
from ledger.usage import log as usage_log
from ledger.usage.entries import UsageEntry, UsageEntryBase

# Sizes on both sides of every stored level, and the first sizes of the tree.
SIZES = [1, 2, 3, 7, 255, 256, 257, 300, 511, 512, 513, 767, 768, 1023, 1024, 1025, 2047, 2048]
FULL = 2048 + 77


def synthetic_hashes(count: int, first: int = 0) -> list[bytes]:
    return [hashlib.sha256(b"leaf %d" % i).digest() for i in range(first, first + count)]


def append_synthetic(conn: Connection, leaves: list[bytes], first_seq: int) -> None:
    """Rows with arbitrary entry hashes: the tree reads ``entry_hash`` and nothing else."""
    rows = [
        {
            "seq": first_seq + i,
            "at": 0,
            "company_id": 1,
            "contact": "00",
            "channel": 1,
            "decision": "allowed",
            "reasons": "[]",
            "prev_hash": "00",
            "entry_hash": leaf.hex(),
        }
        for i, leaf in enumerate(leaves)
    ]
    conn.execute(insert(UsageEntry), rows)


@pytest.fixture
def leaves() -> list[bytes]:
    return synthetic_hashes(FULL)


@pytest.fixture
def filled(db_engine: Engine, leaves: list[bytes]) -> Engine:
    with db_engine.begin() as conn:
        append_synthetic(conn, leaves, 1)
    return db_engine


def assert_same_tree(conn: Connection, leaves: list[bytes], sizes: list[int]) -> None:
    tree, memory = MerkleTree(conn), proofs.Leaves(leaves)
    assert tree.size() == len(leaves)
    for size in sizes:
        root = merkle.root(leaves[:size])
        assert tree.root(size) == root, f"root of {size}"
        for index in sorted({0, size // 2, 255, 256, size - 1} & set(range(size))):
            path = tree.inclusion_proof(index, size)
            assert path == proofs.inclusion_proof(memory, index, size), (index, size)
            merkle.verify_inclusion(leaves[index], index, size, path, root)
        for size1 in sorted({1, 255, 256, 257, size // 3, size - 1} & set(range(1, size + 1))):
            path = tree.consistency_proof(size1, size)
            assert path == proofs.consistency_proof(memory, size1, size), (size1, size)
            merkle.verify_consistency(size1, size, path, merkle.root(leaves[:size1]), root)


def stored_levels(conn: Connection) -> dict[int, int]:
    query = "SELECT level, count(*) FROM merkle_node GROUP BY level"
    return {int(level): int(count) for level, count in conn.exec_driver_sql(query)}


def test_the_empty_log_has_the_empty_root(db_engine: Engine) -> None:
    with db_engine.begin() as conn:
        tree = MerkleTree(conn)
        assert (tree.size(), tree.root(0), extend(conn)) == (0, merkle.EMPTY_ROOT, 0)
        assert tree.consistency_proof(0, 0) == []


def test_same_roots_and_proofs_before_and_after_extend(filled: Engine, leaves: list[bytes]) -> None:
    with filled.begin() as conn:
        assert_same_tree(conn, leaves, [*SIZES, FULL])  # computed from the leaves alone
        assert extend(conn) == FULL // CHUNK * CHUNK
        assert stored_levels(conn) == {8: 8, 9: 4, 10: 2, 11: 1}
    with filled.begin() as conn:
        assert_same_tree(conn, leaves, [*SIZES, FULL])  # now through the stored nodes


def test_extend_at_odd_sizes_then_further_appends(db_engine: Engine) -> None:
    leaves: list[bytes] = []
    for grow_to in (1, 300, 700, 1024, 1500, FULL):
        more = synthetic_hashes(grow_to - len(leaves), first=len(leaves))
        with db_engine.begin() as conn:
            append_synthetic(conn, more, len(leaves) + 1)
            leaves += more
            covered = extend(conn)
        assert covered == grow_to // CHUNK * CHUNK
        with db_engine.begin() as conn:
            assert_same_tree(conn, leaves, [s for s in SIZES if s <= grow_to] + [grow_to])
    with db_engine.begin() as conn:
        assert stored_levels(conn) == {8: 8, 9: 4, 10: 2, 11: 1}


def test_extend_is_idempotent_and_finishes_an_extension_cut_short(
    filled: Engine, leaves: list[bytes]
) -> None:
    with filled.begin() as conn:
        # As if an extension stopped after the lowest level: only the 256-leaf nodes exist.
        first = [
            {"level": 8, "idx": i, "hash": merkle.root(leaves[i * CHUNK : (i + 1) * CHUNK]).hex()}
            for i in range(FULL // CHUNK)
        ]
        conn.execute(insert(MerkleNode), first)
    with filled.begin() as conn:
        assert extend(conn) == extend(conn) == 2048
        assert stored_levels(conn) == {8: 8, 9: 4, 10: 2, 11: 1}
        assert_same_tree(conn, leaves, [1024, 2048, FULL])


class Counted:
    """Counts the runs of one of the tree's prepared statements."""

    def __init__(self, prepared: Prepared) -> None:
        self.prepared, self.runs = prepared, 0

    def rows(self, conn: Connection, **params: Any) -> list[tuple[Any, ...]]:
        self.runs += 1
        return self.prepared.rows(conn, **params)

    def first(self, conn: Connection, **params: Any) -> tuple[Any, ...] | None:
        self.runs += 1
        return self.prepared.first(conn, **params)


def test_stored_nodes_spare_reading_the_leaves(
    filled: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    with filled.begin() as conn:
        extend(conn)
    leaf_reads, node_reads = Counted(tree_module._LEAVES), Counted(tree_module._NODE)
    monkeypatch.setattr(tree_module, "_LEAVES", leaf_reads)
    monkeypatch.setattr(tree_module, "_NODE", node_reads)
    with filled.begin() as conn:
        tree = MerkleTree(conn)
        tree.inclusion_proof(1000, FULL)
        tree.consistency_proof(1000, FULL)
    # Without the nodes each proof would read all 2125 leaves, 256 at a time; with them, a
    # few node lookups and the 256-leaf chunks at the ends of the paths.
    assert leaf_reads.runs <= 3
    assert node_reads.runs <= 20


@pytest.mark.parametrize(
    "statement",
    ["UPDATE merkle_node SET hash = 'ff'", "DELETE FROM merkle_node"],
)
def test_the_database_refuses_to_rewrite_stored_nodes(filled: Engine, statement: str) -> None:
    with filled.begin() as conn:
        extend(conn)
    with pytest.raises(DatabaseError, match="append-only"), filled.begin() as conn:
        conn.exec_driver_sql(statement)


def test_a_gap_in_the_log_is_an_error_not_a_wrong_root(db_engine: Engine) -> None:
    leaves = synthetic_hashes(600)
    with db_engine.begin() as conn:
        append_synthetic(conn, leaves[:299], 1)
        append_synthetic(conn, leaves[300:], 301)  # seq 300 is missing
    with db_engine.begin() as conn:
        tree = MerkleTree(conn)
        assert tree.root(299) == merkle.root(leaves[:299])
        with pytest.raises(ValueError, match="300"):
            tree.root(600)
        with pytest.raises(ValueError, match="gap"):
            extend(conn)


@pytest.mark.parametrize(
    ("call", "args"),
    [("hash", (0, 0)), ("hash", (5, 3)), ("root", (FULL + 1,)), ("inclusion_proof", (FULL, FULL))],
)
def test_ranges_outside_the_log_are_refused(
    filled: Engine, call: str, args: tuple[int, ...]
) -> None:
    with filled.begin() as conn, pytest.raises(ValueError):
        getattr(MerkleTree(conn), call)(*args)


@pytest.fixture
def recorded(ledger: Ledger, company: int, linked: str) -> Iterator[list[str]]:
    """A log written by the product: recorded checks, then plain appends past 512 entries."""
    hashes = []
    for _ in range(5):
        result = ledger.checker.check(
            company_id=company, contact=linked, channel=Channel.SMS, record=True
        )
        assert result.receipt is not None
        hashes.append(result.receipt.entry_hash)
    base = UsageEntryBase(
        at=1, company_id=company, contact="ab" * 32, channel=1, decision="refused", reasons="[]"
    )
    with transaction(ledger.engine) as session:
        hashes += [usage_log.append(session, base).entry_hash for _ in range(520)]
    yield hashes


def test_the_root_of_a_real_log_is_the_root_of_its_entry_hashes(
    ledger: Ledger, recorded: list[str]
) -> None:
    leaves = [bytes.fromhex(h) for h in recorded]
    with ledger.engine.begin() as conn:
        extend(conn)
        tree = MerkleTree(conn)
        assert tree.size() == len(leaves)
        assert tree.root(len(leaves)) == merkle.root(leaves)
        for seq in (1, 5, 257, len(leaves)):  # a receipt's seq is its leaf index + 1
            path = tree.inclusion_proof(seq - 1, len(leaves))
            merkle.verify_inclusion(
                leaves[seq - 1], seq - 1, len(leaves), path, merkle.root(leaves)
            )
