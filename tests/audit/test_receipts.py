"""The proofs the API serves, for any entry and any pair of anchors, verify with the auditor's
verifier against roots computed from the entries alone (property-based, on a real database)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from ledger.audit import merkle, receipts
from ledger.audit.anchors import UnknownAnchor
from ledger.audit.tree import extend
from ledger.db.engine import connect, transaction
from ledger.domain.errors import InvalidInput
from ledger.index.tables import AnchorHistoryRow, AnchorRow
from ledger.schema import migrated_engine
from ledger.usage import log as usage_log
from ledger.usage.entries import UsageEntryBase

SIZE = 700  # past two stored subtrees of 256 leaves, and not a power of two
LOG_ID = 1


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, list[bytes]]]:
    """A log of SIZE entries, its tree extended, and an anchor indexed at every size."""
    path: Path = tmp_path_factory.mktemp("receipts") / "log.sqlite3"
    engine = migrated_engine(f"sqlite:///{path}")
    with transaction(engine) as session:
        for i in range(SIZE):
            entry = UsageEntryBase(
                at=i, company_id=1, contact=f"{i:064x}", channel=1, decision="allowed", reasons="[]"
            )
            usage_log.append(session, entry)
    with connect(engine) as conn:
        extend(conn)
    with transaction(engine) as session:
        hashes = [bytes.fromhex(e.entry_hash) for e in usage_log.entries(session, limit=SIZE)]
    # What the indexer writes for RootAnchored events: here one anchor per size, in block order.
    rows = [
        {
            "log_id": LOG_ID,
            "tree_size": n,
            "root": merkle.root(hashes[:n]).hex(),
            "anchored_at": 1_800_000_000 + n,
            "block_number": n,
            "log_index": 0,
            "tx_hash": f"{n:064x}",
        }
        for n in range(1, SIZE + 1)
    ]
    with engine.begin() as conn:
        conn.execute(insert(AnchorHistoryRow.__table__), rows)  # type: ignore[attr-defined]
        conn.execute(insert(AnchorRow.__table__), [rows[-1]])  # type: ignore[attr-defined]
    yield engine, hashes
    engine.dispose()


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_every_inclusion_proof_verifies_against_the_anchored_root(
    log: tuple[Engine, list[bytes]], data: st.DataObject
) -> None:
    engine, hashes = log
    size = data.draw(st.integers(1, SIZE), label="anchor")
    seq = data.draw(st.integers(1, size), label="seq")
    with connect(engine, read_only=True) as conn:
        found = receipts.inclusion(conn, log_id=LOG_ID, seq=seq, tree_size=size)
        newest = receipts.inclusion(conn, log_id=LOG_ID, seq=seq)
    assert found is not None and newest is not None and newest.anchor.tree_size == SIZE
    for proof in (found, newest):
        n = proof.anchor.tree_size
        assert proof.anchor.root == merkle.root(hashes[:n])
        merkle.verify_inclusion(hashes[seq - 1], seq - 1, n, proof.path, merkle.root(hashes[:n]))


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_every_consistency_proof_verifies_between_the_anchored_roots(
    log: tuple[Engine, list[bytes]], data: st.DataObject
) -> None:
    engine, hashes = log
    size2 = data.draw(st.integers(1, SIZE), label="second")
    size1 = data.draw(st.integers(1, size2), label="first")
    with connect(engine, read_only=True) as conn:
        found = receipts.consistency(conn, log_id=LOG_ID, size1=size1, size2=size2)
    root1, root2 = merkle.root(hashes[:size1]), merkle.root(hashes[:size2])
    assert (found.first.root, found.second.root) == (root1, root2)
    merkle.verify_consistency(size1, size2, found.path, root1, root2)


@pytest.mark.parametrize(
    ("size1", "size2", "error"),
    [
        (5, 3, InvalidInput),  # out of order
        (3, SIZE + 1, UnknownAnchor),  # never anchored
        (0, 3, UnknownAnchor),  # the empty tree is no anchor
    ],
)
def test_a_consistency_proof_needs_two_anchors_in_order(
    log: tuple[Engine, list[bytes]], size1: int, size2: int, error: type[Exception]
) -> None:
    with connect(log[0], read_only=True) as conn, pytest.raises(error):
        receipts.consistency(conn, log_id=LOG_ID, size1=size1, size2=size2)


def test_an_entry_newer_than_every_anchor_has_no_proof_yet(
    log: tuple[Engine, list[bytes]],
) -> None:
    engine, _ = log
    with connect(engine, read_only=True) as conn:
        assert receipts.inclusion(conn, log_id=LOG_ID, seq=SIZE + 1) is None
        assert receipts.inclusion(conn, log_id=LOG_ID + 1, seq=1) is None  # another log's
        with pytest.raises(receipts.NotCovered):
            receipts.inclusion(conn, log_id=LOG_ID, seq=10, tree_size=9)
