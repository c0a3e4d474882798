"""Verifying the usage log against the chain's anchors: a clean log passes; each tampering made
directly in the database (guards dropped) is found with its kind and seq, from the live
database and from an export alike; a checkpoint resumes and names a recomputed entry."""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import Connection

from ledger.audit import export, merkle
from ledger.audit.anchors import anchors_from_chain, anchors_from_index
from ledger.audit.checkpoint import Checkpoint, CheckpointMismatch
from ledger.audit.export import ExportSource
from ledger.audit.verify import (
    COLUMNS,
    DatabaseSource,
    Kind,
    Result,
    Verifier,
    _extend,
    leaf_data,
    verify,
)
from ledger.chain.anvil import AnvilNode, anvil_binary
from ledger.runtime import Ledger
from ledger.usage.hashing import GENESIS_HASH, canonical, leaf_hash
from tests.audit.anchoring import append, leaves, open_ledger

try:
    anvil_binary()
except Exception as exc:  # pragma: no cover - only without `npm ci`
    pytest.skip(f"anvil not installed: {exc}", allow_module_level=True)

pytestmark = pytest.mark.anvil


@pytest.fixture
def ledger(tmp_path: Path, node: AnvilNode) -> Iterator[Ledger]:
    opened = open_ledger(tmp_path, node.url)
    yield opened
    opened.engine.dispose()


def anchor(ledger: Ledger, size: int, root: bytes | None = None) -> None:
    """Anchors the log's first ``size`` entries as they are now (or ``root``, if given)."""
    if root is None:
        root = merkle.root(leaves(ledger)[:size])
    fn = ledger.chain.contract.functions.anchorRoot(ledger.settings.log_id, size, root)
    ledger.chain.transact(fn)


def live(ledger: Ledger, checkpoint: Checkpoint | None = None) -> Result:
    anchors = anchors_from_chain(ledger.chain, ledger.settings.log_id)
    return verify(DatabaseSource(ledger.engine, batch_rows=4), anchors, checkpoint=checkpoint)


def offline(ledger: Ledger, path: Path) -> Result:
    """Exports the log as the API does, then verifies the file against the chain's anchors."""
    with ledger.engine.connect() as conn:
        indexed = anchors_from_index(conn, ledger.settings.log_id)
    path.write_bytes(b"".join(export.lines(ledger.engine, indexed, page=3)))
    anchors = anchors_from_chain(ledger.chain, ledger.settings.log_id)
    return verify(ExportSource(path, batch_rows=4), anchors)


def rows(conn: Connection) -> list[dict[str, Any]]:
    names = ", ".join(COLUMNS)
    found = conn.exec_driver_sql(f"SELECT {names} FROM usage_entry ORDER BY seq")
    return [dict(zip(COLUMNS, r, strict=True)) for r in found]


def rehash(row: dict[str, Any]) -> str:
    fields = {k: v for k, v in row.items() if k not in ("seq", "prev_hash", "entry_hash")}
    return leaf_hash(canonical(fields, seq=row["seq"], prev_hash=row["prev_hash"]))


def unguard(conn: Connection) -> None:
    conn.exec_driver_sql("DROP TRIGGER usage_entry_no_update")
    conn.exec_driver_sql("DROP TRIGGER usage_entry_no_delete")


def renumber(conn: Connection, *, from_seq: int, by: int) -> None:
    # Through negative numbers: a primary key cannot take its final values one row at a time.
    conn.exec_driver_sql(f"UPDATE usage_entry SET seq = -seq WHERE seq >= {from_seq}")
    conn.exec_driver_sql(f"UPDATE usage_entry SET seq = -seq + ({by}) WHERE seq < 0")


def insert(conn: Connection, row: dict[str, Any]) -> None:
    names = ", ".join(row)
    marks = ", ".join(f":{k}" for k in row)
    conn.execute(text(f"INSERT INTO usage_entry ({names}) VALUES ({marks})"), row)


def edit_field(conn: Connection) -> None:
    conn.exec_driver_sql("UPDATE usage_entry SET decision = 'refused' WHERE seq = 5")


def delete_one(conn: Connection) -> None:
    conn.exec_driver_sql("DELETE FROM usage_entry WHERE seq = 5")


def delete_and_renumber(conn: Connection) -> None:
    conn.exec_driver_sql("DELETE FROM usage_entry WHERE seq = 5")
    renumber(conn, from_seq=6, by=-1)


def insert_one(conn: Connection) -> None:
    before = rows(conn)[3]  # entry 4: the new entry 5 links to it and hashes right
    renumber(conn, from_seq=5, by=1)
    new = {**before, "seq": 5, "prev_hash": before["entry_hash"], "decision": "refused"}
    new["entry_hash"] = rehash(new)
    insert(conn, new)


def swap_two(conn: Connection) -> None:
    conn.exec_driver_sql("UPDATE usage_entry SET seq = -1 WHERE seq = 5")
    conn.exec_driver_sql("UPDATE usage_entry SET seq = 5 WHERE seq = 6")
    conn.exec_driver_sql("UPDATE usage_entry SET seq = 6 WHERE seq = -1")


def rehash_one(conn: Connection) -> None:
    row = rows(conn)[4]
    row["decision"] = "refused"
    conn.exec_driver_sql(
        f"UPDATE usage_entry SET decision = 'refused', entry_hash = '{rehash(row)}' WHERE seq = 5"
    )


def cut_tail(conn: Connection) -> None:
    conn.exec_driver_sql("DELETE FROM usage_entry WHERE seq > 6")


TAMPERINGS: list[tuple[Callable[[Connection], None], Kind, int]] = [
    (edit_field, Kind.EDITED, 5),
    (delete_one, Kind.DELETED, 5),
    (delete_and_renumber, Kind.DELETED, 5),
    (insert_one, Kind.INSERTED, 5),
    (swap_two, Kind.REORDERED, 5),
    (rehash_one, Kind.CHAIN_BROKEN, 6),
    (cut_tail, Kind.TRUNCATED, 7),
]


def test_a_clean_log_passes_live_and_offline(ledger: Ledger, tmp_path: Path) -> None:
    append(ledger, 11)
    anchor(ledger, 4)
    anchor(ledger, 9)
    result = live(ledger)
    assert result.ok, result.problem
    assert (result.size, result.read, result.anchors, result.newest_anchor) == (11, 11, 2, 9)
    assert result.root == merkle.root(leaves(ledger)).hex()
    from_export = offline(ledger, tmp_path / "usage.jsonl")
    assert from_export.as_json() == {**result.as_json(), "source": "export"}


def test_an_empty_log_with_no_anchor_passes(ledger: Ledger) -> None:
    result = live(ledger)
    assert result.ok and result.size == 0 and result.root == merkle.EMPTY_ROOT.hex()


@pytest.mark.parametrize(
    ("tamper", "kind", "seq"), TAMPERINGS, ids=lambda t: getattr(t, "__name__", None)
)
def test_each_tampering_is_found_with_its_kind_and_seq(
    ledger: Ledger,
    tmp_path: Path,
    tamper: Callable[[Connection], None],
    kind: Kind,
    seq: int,
) -> None:
    append(ledger, 10)
    anchor(ledger, 8)
    with ledger.engine.begin() as conn:
        unguard(conn)
        tamper(conn)
    found = live(ledger)
    assert found.problem is not None, "tampering not found"
    assert (found.problem.kind, found.problem.seq) == (kind, seq), found.problem.line()
    from_export = offline(ledger, tmp_path / "usage.jsonl")
    assert from_export.problem == found.problem


def test_a_whole_chain_recomputed_after_an_edit_is_named_by_anchor_range_or_exact_seq(
    ledger: Ledger, tmp_path: Path
) -> None:
    append(ledger, 10)
    anchor(ledger, 5)
    with Checkpoint.open(tmp_path / "audit.ckpt", log="test") as checkpoint:
        assert live(ledger, checkpoint).ok  # an earlier verification, kept
    anchor(ledger, 10)
    with ledger.engine.begin() as conn:
        unguard(conn)
        entries = rows(conn)
        entries[6]["decision"] = "refused"  # entry 7, then every hash after it recomputed
        prev = entries[5]["entry_hash"]
        for row in entries[6:]:
            row["prev_hash"] = prev
            row["entry_hash"] = prev = rehash(row)
            conn.exec_driver_sql(
                "UPDATE usage_entry SET decision = ?, prev_hash = ?, entry_hash = ? WHERE seq = ?",
                (row["decision"], row["prev_hash"], row["entry_hash"], row["seq"]),
            )
    # Every entry hashes and links: only the anchor at 10 disagrees, for entries 6..10.
    found = live(ledger).problem
    assert found is not None
    assert (found.kind, found.seq, found.last_seq) == (Kind.ANCHOR_MISMATCH, 6, 10)
    # The earlier verification's leaf hashes name the entry itself.
    with Checkpoint.open(tmp_path / "audit.ckpt", log="test") as checkpoint:
        exact = live(ledger, checkpoint).problem
    assert exact is not None and (exact.kind, exact.seq) == (Kind.EDITED, 7), exact


def test_an_anchor_that_disagrees_with_the_log_is_named(ledger: Ledger) -> None:
    append(ledger, 12)
    anchor(ledger, 4)
    anchor(ledger, 8, root=b"\x11" * 32)
    found = live(ledger).problem
    assert found is not None
    assert (found.kind, found.seq, found.last_seq) == (Kind.ANCHOR_MISMATCH, 5, 8)


def test_a_checkpoint_resumes_with_only_the_new_entries(ledger: Ledger, tmp_path: Path) -> None:
    append(ledger, 9)
    anchor(ledger, 3)
    path = tmp_path / "audit.ckpt"
    with Checkpoint.open(path, log="test") as checkpoint:
        first = live(ledger, checkpoint)
    assert first.ok and first.read == 9
    append(ledger, 5)
    anchor(ledger, 7)  # at a size the checkpoint already covers: checked from its leaves
    anchor(ledger, 12)
    with Checkpoint.open(path, log="test") as checkpoint:
        second = live(ledger, checkpoint)
    assert second.ok, second.problem
    assert (second.resumed_from, second.read, second.size, second.anchors) == (9, 5, 14, 3)
    assert second.root == merkle.root(leaves(ledger)).hex()
    with Checkpoint.open(path, log="test") as checkpoint:
        third = live(ledger, checkpoint)
    assert third.ok and third.read == 0


def test_a_wrong_anchor_at_a_size_the_checkpoint_covers_is_found(
    ledger: Ledger, tmp_path: Path
) -> None:
    append(ledger, 9)
    path = tmp_path / "audit.ckpt"
    with Checkpoint.open(path, log="test") as checkpoint:
        assert live(ledger, checkpoint).ok
    anchor(ledger, 6, root=b"\x22" * 32)
    with Checkpoint.open(path, log="test") as checkpoint:
        found = live(ledger, checkpoint).problem
    assert found is not None and (found.kind, found.seq, found.last_seq) == (
        Kind.ANCHOR_MISMATCH,
        1,
        6,
    )


def test_a_checkpoint_of_another_log_is_refused(tmp_path: Path) -> None:
    Checkpoint.open(tmp_path / "audit.ckpt", log="one").db.close()
    with pytest.raises(CheckpointMismatch):
        Checkpoint.open(tmp_path / "audit.ckpt", log="two")


def test_every_exported_line_rehashes_to_its_entry_hash(ledger: Ledger) -> None:
    append(ledger, 6)
    anchor(ledger, 6)
    with ledger.engine.connect() as conn:
        indexed = anchors_from_index(conn, ledger.settings.log_id)
    lines = [json.loads(line) for line in export.lines(ledger.engine, indexed)]
    entries = [line for line in lines if line["type"] == "entry"]
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5, 6]
    for e in entries:
        fields = dict(e["entry"])
        seq, prev = fields.pop("seq"), fields.pop("prev_hash")
        assert leaf_hash(canonical(fields, seq=seq, prev_hash=prev)) == e["entry_hash"]
        assert "contact" in fields  # the commitment, hashed into the entry
    assert entries[0]["entry"]["prev_hash"] == GENESIS_HASH


_text = st.text(alphabet=string.printable + 'éü€\u2028"\\', max_size=12)
_maybe_text = st.none() | _text
_maybe_int = st.none() | st.integers(min_value=0, max_value=1 << 62)


@given(
    at=st.integers(min_value=0, max_value=1 << 40),
    basis=_maybe_text,
    block_number=_maybe_int,
    channel=st.integers(min_value=0, max_value=9),
    company_id=st.integers(min_value=0, max_value=1 << 62),
    consumer=_maybe_text,
    contact=_text,
    decision=_text,
    grant_version=_maybe_int,
    list_version=_maybe_text,
    outcome=_maybe_text,
    reasons=_text,
    refers_to=_maybe_int,
    rules=_maybe_text,
    seq=st.integers(min_value=1, max_value=1 << 62),
)
def test_the_fast_bytes_are_the_logs_canonical_bytes(**fields: Any) -> None:
    seq = fields.pop("seq")
    row = {**fields, "seq": seq, "prev_hash": "ab" * 32, "entry_hash": ""}
    expected = b"\x00" + canonical(fields, seq=seq, prev_hash="ab" * 32)
    assert leaf_data(tuple(row[c] for c in COLUMNS)) == expected


@given(
    count=st.integers(min_value=0, max_value=300),
    cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=6),
)
def test_the_frontier_fed_in_any_pieces_gives_the_rfc_root(count: int, cuts: list[int]) -> None:
    leaves = [merkle.leaf_hash(b"%d" % i) for i in range(count)]
    verifier = Verifier([])
    start = 0
    for end in [*sorted(c for c in cuts if c <= count), count]:
        _extend(verifier.peaks, start, leaves[start:end])
        start = end
        assert verifier.root() == merkle.root(leaves[:end])
