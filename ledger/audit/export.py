"""The regulator's export of the usage log: JSON Lines an auditor verifies without the operator.

One line per usage entry, in ``seq`` order, carrying the canonical entry exactly as the log
hashed it (``ledger.usage.hashing.canonical``: every hashed field, the contact as its salted
commitment, ``seq`` and ``prev_hash`` included), so that ``SHA-256(0x00 || entry)`` is its
``entry_hash`` with nothing re-serialised::

    {"type":"log","log_id":1,"chain_id":31337,"contract":"0x...","size":3}
    {"type":"entry","seq":1,"entry_hash":"9f...","entry":{"at":...,"prev_hash":"00...","seq":1}}
    {"type":"anchor","tree_size":1,"root":"5c...","block_number":12,"anchored_at":...,...}

An anchor line follows the entry its tree size ends at. The anchors are the operator's index's:
``quota-ledger audit verify --export`` checks them against the chain's own when given a node,
and uses them only when it is not (saying so).

Example:
    >>> source = ExportSource(Path("usage.jsonl"))
    >>> result = verify(source, anchors_from_chain(chain, 1))
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from ledger.audit.anchors import Anchor
from ledger.audit.verify import BATCH_ROWS, Item, Kind, Problem, leaf_data, rows_after
from ledger.domain.errors import InvalidInput
from ledger.usage.hashing import canonical

_ENTRY = b'{"type":"entry","seq":'
_HASH_KEY = b',"entry_hash":"'
_ENTRY_KEY = b'","entry":'
_ANCHOR = b'{"type":"anchor"'
_LOG = b'{"type":"log"'
_PREV_KEY = b'"prev_hash":"'
_SEQ_KEY = b'"seq":'
_UNREADABLE: Item = (None, "", b"", "")  # a line that is no entry: it hashes to nothing


class ExportUnreadable(InvalidInput):
    code = "export_unreadable"


@dataclass(frozen=True, slots=True)
class ExportAnchor:
    """An anchor as the export states it (the operator's word until the chain confirms it)."""

    tree_size: int
    root: bytes
    block_number: int
    anchored_at: int = 0
    tx_hash: str = ""


def header(*, log_id: int, chain_id: int, contract: str, size: int) -> bytes:
    """The export's first line: which log of which contract on which chain it is."""
    body = {"type": "log", "log_id": log_id, "chain_id": chain_id, "contract": contract}
    return (json.dumps({**body, "size": size}, separators=(",", ":")) + "\n").encode()


def entry_line(row: tuple[Any, ...]) -> bytes:
    """The line of one usage entry read as ``ledger.audit.verify.COLUMNS``."""
    return b"%s%d%s%s%s%s}\n" % (
        _ENTRY,
        row[0],
        _HASH_KEY,
        str(row[16]).encode(),
        _ENTRY_KEY,
        leaf_data(row)[1:],
    )


def anchor_line(anchor: Anchor) -> bytes:
    body = {
        "type": "anchor",
        "tree_size": anchor.tree_size,
        "root": anchor.root.hex(),
        "block_number": anchor.block_number,
        "anchored_at": anchor.anchored_at,
        "tx_hash": anchor.tx_hash,
    }
    return (json.dumps(body, separators=(",", ":")) + "\n").encode()


def lines(
    engine: Engine, anchors: Sequence[Anchor], *, after_seq: int = 0, page: int = 5_000
) -> Iterator[bytes]:
    """The entries after ``after_seq`` and the anchors they reach, as export lines.

    Pages are read in their own short read-only transactions, so a slow reader holds no
    snapshot for the whole export.
    """
    pending = sorted((a for a in anchors if a.tree_size > after_seq), key=lambda a: a.tree_size)
    at = 0
    for rows in rows_after(engine, after_seq, page):
        for row in rows:
            yield entry_line(row)
            while at < len(pending) and pending[at].tree_size <= row[0]:
                yield anchor_line(pending[at])
                at += 1
    for anchor in pending[at:]:  # anchors beyond the log's end: the verifier says truncated
        yield anchor_line(anchor)


def parse_entry(line: bytes) -> Item:
    """The verifier's view of one entry line: the hashed bytes sliced out, not re-serialised.

    A line in another layout (pretty-printed, keys reordered) is read as JSON and its entry
    serialised canonically; a line that is no entry at all hashes to nothing.
    """
    if line.startswith(_ENTRY):
        k = line.find(b",", 22)  # the end of the line's own seq: a few digits on
        tail = 3 if line.endswith(b"}}\n") else 2 if line.endswith(b"}}") else 0
        if tail and line[k : k + 15] == _HASH_KEY and line[k + 79 : k + 89] == _ENTRY_KEY:
            data = b"\x00" + line[k + 89 : len(line) - tail + 1]
            # The first key that can hold "prev_hash" is far in: at, channel, contact... come
            # first. No string value can hold the key itself (its quotes would be escaped).
            p = data.find(_PREV_KEY, 100)
            q = data.rfind(_SEQ_KEY)
            if p > 0 and q > 0:
                try:
                    seq = int(data[q + 6 : -1])
                    prev = data[p + 13 : p + 77].decode()
                    return (seq, prev, data, line[k + 15 : k + 79].decode())
                except (ValueError, UnicodeDecodeError):
                    pass
    return _parsed(line)


def _parsed(line: bytes) -> Item:
    try:
        obj = json.loads(line)
        fields = dict(obj["entry"])
        seq, prev = fields.pop("seq"), fields.pop("prev_hash")
        data = b"\x00" + canonical(fields, seq=seq, prev_hash=prev)
        return (seq, str(prev), data, str(obj["entry_hash"]))
    except (ValueError, TypeError, KeyError):
        return _UNREADABLE


def _type(line: bytes) -> str | None:
    """The ``type`` of a line not in the export's own layout; None for no line (blank, or
    unreadable: read as an entry, it then hashes to nothing)."""
    if line.startswith(_ANCHOR):
        return "anchor"
    if line.startswith(_LOG):
        return "log"
    if not line.strip():
        return None
    try:
        kind = json.loads(line).get("type")
    except (ValueError, AttributeError):
        return "entry"
    return kind if isinstance(kind, str) else "entry"


class ExportSource:
    """An export file as a ``ledger.audit.verify.Source``."""

    name = "export"

    def __init__(self, path: Path, *, batch_rows: int = BATCH_ROWS) -> None:
        self.path = path
        self.batch_rows = batch_rows
        try:
            with path.open("rb") as f:
                first = f.readline()
        except OSError as exc:
            raise ExportUnreadable(f"cannot read {path}: {exc.strerror}", path=str(path)) from exc
        self.log: dict[str, Any] = {}
        if _type(first) == "log":
            self.log = json.loads(first)

    def batches(self, start: int) -> Iterator[list[Item]]:
        batch: list[Item] = []
        with self.path.open("rb") as f:
            for line in f:
                if not line.startswith(_ENTRY) and _type(line) != "entry":
                    continue
                entry = parse_entry(line)
                if isinstance(entry[0], int) and entry[0] < start:
                    continue
                batch.append(entry)
                if len(batch) == self.batch_rows:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def hashes(self) -> Iterator[tuple[int, str]]:
        for batch in self.batches(1):
            for seq, _, _, stored in batch:
                yield int(seq or 0), stored

    def count(self) -> int | None:
        size = self.log.get("size")
        return size if isinstance(size, int) else None

    def anchors(self) -> list[ExportAnchor]:
        """The anchor lines, smallest first."""
        found = []
        with self.path.open("rb") as f:
            for line in f:
                if line.startswith(_ENTRY) or _type(line) != "anchor":
                    continue
                try:
                    a = json.loads(line)
                    found.append(
                        ExportAnchor(
                            int(a["tree_size"]),
                            bytes.fromhex(a["root"]),
                            int(a["block_number"]),
                            int(a.get("anchored_at", 0)),
                            str(a.get("tx_hash", "")),
                        )
                    )
                except (ValueError, TypeError, KeyError) as exc:
                    unreadable = f"an anchor line of {self.path} is unreadable"
                    raise ExportUnreadable(unreadable, path=str(self.path)) from exc
        return sorted(found, key=lambda a: a.tree_size)

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every entry's fields (``seq``, ``prev_hash`` included), in file order: for readers
        of the export other than the verifier (the replay)."""
        for batch in self.batches(1):
            for _, _, data, stored in batch:
                if data:
                    yield {**json.loads(data[1:]), "entry_hash": stored}


def unconfirmed(claimed: Sequence[ExportAnchor], on_chain: Sequence[Anchor]) -> Problem | None:
    """The first anchor the export states that the chain does not hold (its root at its size).

    An export is the operator's word: its anchor lines must be the chain's own.
    """
    roots = {a.tree_size: a.root for a in on_chain}
    for anchor in claimed:
        if roots.get(anchor.tree_size) != anchor.root:
            return Problem(
                Kind.ANCHOR_MISMATCH,
                anchor.tree_size,
                f"the export states an anchor at size {anchor.tree_size} that the chain "
                "does not hold",
                last_seq=anchor.tree_size,
            )
    return None
