"""A verification's checkpoint: where it got to, so that the next run reads only new entries.

A small SQLite file of the auditor's own (not the operator's database): the verified size, the
hash of the last verified entry, the compact Merkle frontier (one peak per set bit of the
size: the root at any later size needs no earlier entry), the largest anchor checked, and every
verified leaf hash (to name the exact entry when the log is later found recomputed, and to
check anchors made later at sizes already verified). It names the log it belongs to, so that
one checkpoint is never used for another.

Example:
    >>> with Checkpoint.open(Path("audit.ckpt"), log="chain 1 / 0xabc... / log 1") as cp:
    ...     result = verify(source, anchors, checkpoint=cp)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from ledger.audit.merkle import EMPTY_ROOT, node_hash
from ledger.domain.errors import InvalidInput
from ledger.usage.hashing import GENESIS_HASH

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS state (id INTEGER PRIMARY KEY CHECK (id = 1), log TEXT NOT NULL,"
    " size INTEGER NOT NULL, last_hash TEXT NOT NULL, peaks BLOB NOT NULL,"
    " anchored INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS leaf (seq INTEGER PRIMARY KEY, hash BLOB NOT NULL)",
)


class CheckpointMismatch(InvalidInput):
    code = "checkpoint_mismatch"

    def __init__(self, path: Path, theirs: str, ours: str) -> None:
        super().__init__(f"checkpoint {path} belongs to {theirs}, not to {ours}", path=str(path))


@dataclass(frozen=True, slots=True)
class State:
    size: int
    last_hash: str  # hex entry hash of entry ``size`` (``GENESIS_HASH`` at 0)
    peaks: tuple[bytes, ...]  # the frontier, largest subtree first
    anchored: int  # the largest anchored size already checked against the log


class Checkpoint:
    """The checkpoint file of one log; a context manager that closes it."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self.db = db
        self.path = path

    @classmethod
    def open(cls, path: Path, *, log: str) -> Checkpoint:
        """Opens (or creates) the checkpoint of ``log`` (a name of the log: chain, contract, id).

        Raises:
            CheckpointMismatch: the file is the checkpoint of another log.
        """
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        for statement in _SCHEMA:
            db.execute(statement)
        row = db.execute("SELECT log FROM state WHERE id = 1").fetchone()
        if row is None:
            db.execute("INSERT INTO state VALUES (1, ?, 0, ?, ?, 0)", (log, GENESIS_HASH, b""))
        elif row[0] != log:
            db.close()
            raise CheckpointMismatch(path, row[0], log)
        return cls(db, path)

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.db.close()

    def state(self) -> State | None:
        """Where the last run got to; None before any entry was verified."""
        size, last_hash, peaks, anchored = self.db.execute(
            "SELECT size, last_hash, peaks, anchored FROM state WHERE id = 1"
        ).fetchone()
        if size == 0:
            return None
        blob = bytes(peaks)
        return State(
            int(size),
            str(last_hash),
            tuple(blob[i : i + 32] for i in range(0, len(blob), 32)),
            int(anchored),
        )

    def save(
        self,
        *,
        size: int,
        last_hash: str,
        peaks: Sequence[bytes],
        anchored: int,
        leaves: Sequence[tuple[int, bytes]],
    ) -> None:
        """Records a verified prefix and its new leaves, at once (a crash keeps the last one)."""
        with self.db:  # one transaction
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR REPLACE INTO leaf VALUES (?, ?)", leaves)
            self.db.execute(
                "UPDATE state SET size = ?, last_hash = ?, peaks = ?, anchored = ? WHERE id = 1",
                (size, last_hash, b"".join(peaks), anchored),
            )

    def leaves(self, first: int, last: int) -> Iterator[bytes]:
        """The verified leaf hashes of entries ``first..last``, in order."""
        query = "SELECT hash FROM leaf WHERE seq BETWEEN ? AND ? ORDER BY seq"
        for (leaf,) in self.db.execute(query, (first, last)):
            yield bytes(leaf)

    def root(self, size: int) -> bytes:
        """The root of the first ``size`` verified entries, folded from their leaves."""
        peaks: list[bytes] = []
        for count, leaf in enumerate(self.leaves(1, size)):
            node, n = leaf, count
            while n & 1:
                node = node_hash(peaks.pop(), node)
                n >>= 1
            peaks.append(node)
        if not peaks:
            return EMPTY_ROOT
        h = peaks[-1]
        for left in reversed(peaks[:-1]):
            h = node_hash(left, h)
        return h
