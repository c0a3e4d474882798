"""Verifying the usage log against its anchors on chain: what a regulator runs.

Entries are read in sequence order, from the live database or from an export file, as plain
tuples (``COLUMNS``). Each entry's leaf hash is recomputed from its fields (never read from the
operator's stored hashes or Merkle nodes), the hash chain is followed (``prev_hash``, ``seq``
from 1 with no gap), and the RFC 9162 root is kept as a compact frontier (one peak per set bit
of the size), so the root at every anchored size comes out as the stream passes it. The anchors
are read from the chain's ``RootAnchored`` events by the caller (``ledger.audit.anchors``),
not from the operator's index.

The first problem stops the run and is named by kind and ``seq``:

- ``edited``: an entry's fields no longer hash to its ``entry_hash``;
- ``deleted``: an entry is missing (a gap, or the following entries were renumbered down);
- ``inserted``: an entry that was not there, the following ones renumbered up;
- ``reordered``: two entries swapped places;
- ``chain_broken``: an entry hashes right but does not link to the one before it;
- ``truncated``: the log ends before the newest anchor;
- ``anchor_mismatch``: every entry holds, yet an anchored root is not the root of the log at
  that size: the chain was recomputed after an edit, or the anchor itself is wrong. The range
  between the last anchor that matches and the first that does not is named; a checkpoint of
  an earlier run, which holds the verified leaf hashes, names the exact entry (``edited``).

Hashing runs in one tight loop over tuples (``Verifier.run``): canonical bytes formatted
directly, one SHA-256 for the leaf and on average one for the frontier per entry.

Example:
    >>> anchors = [Anchor(...) for ...]  # from ledger.audit.anchors.anchors_from_chain
    >>> result = verify(DatabaseSource(engine), anchors)
    >>> result.ok, result.problem
    (False, Problem(kind='edited', seq=3, ...))
"""

from __future__ import annotations

import hashlib
import json.encoder
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Final, Protocol

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from ledger.audit.checkpoint import Checkpoint
from ledger.audit.merkle import EMPTY_ROOT
from ledger.db.engine import connect
from ledger.db.prepared import Prepared
from ledger.usage.entries import UsageEntry
from ledger.usage.hashing import GENESIS_HASH
from ledger.usage.locks import connection_of

# The columns of a row as the verifier reads it: the canonical entry's keys in their sorted
# order (``ledger.usage.hashing.canonical``), then the stored hash.
COLUMNS = (
    "seq",
    "at",
    "basis",
    "block_number",
    "channel",
    "company_id",
    "consumer",
    "contact",
    "decision",
    "grant_version",
    "list_version",
    "outcome",
    "prev_hash",
    "reasons",
    "refers_to",
    "rules",
    "entry_hash",
)
Row = tuple[Any, ...]
# What the verifier reads of an entry, whatever the source: (seq, prev_hash, 0x00 || canonical
# entry, entry_hash). seq and prev_hash are the ones inside the hashed bytes.
Item = tuple[Any, str, bytes, str]
SEQ: Final = 0
PREV: Final = 1
DATA: Final = 2
HASH: Final = 3
BATCH_ROWS = 20_000

_sha256 = hashlib.sha256
_enc: Callable[[str], str] = json.encoder.encode_basestring_ascii  # json.dumps' own (C)


class Kind(StrEnum):
    """What is wrong with the log, where a verification stopped."""

    EDITED = "edited"
    DELETED = "deleted"
    INSERTED = "inserted"
    REORDERED = "reordered"
    CHAIN_BROKEN = "chain_broken"
    TRUNCATED = "truncated"
    ANCHOR_MISMATCH = "anchor_mismatch"


@dataclass(frozen=True, slots=True)
class Problem:
    """The first thing that does not hold: its kind, the entry it is at, and why."""

    kind: Kind
    seq: int
    detail: str
    last_seq: int | None = None  # an anchor mismatch: the end of the range it lies in

    def line(self) -> str:
        """One readable line naming the kind and the seq."""
        where = f"seq {self.seq}" if self.last_seq is None else f"seq {self.seq}..{self.last_seq}"
        return f"{self.kind.value} at {where}: {self.detail}"


@dataclass(frozen=True, slots=True)
class AnchorRef:
    """An anchored tree head as the verifier needs it (``ledger.audit.anchors.Anchor`` fits)."""

    tree_size: int
    root: bytes
    block_number: int


class AnchorLike(Protocol):
    @property
    def tree_size(self) -> int: ...
    @property
    def root(self) -> bytes: ...
    @property
    def block_number(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one verification."""

    problem: Problem | None
    size: int  # entries verified, from 1 (resumed runs count the checkpoint's too)
    read: int  # entries read by this run
    resumed_from: int  # the checkpoint's size (0: from the start)
    root: str  # hex root of the verified entries
    anchors: int  # anchors checked against the log, in this run or an earlier one
    newest_anchor: int | None  # the largest anchored size
    source: str = ""

    @property
    def ok(self) -> bool:
        return self.problem is None

    def as_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["ok"] = self.ok
        if self.problem is not None:
            body["problem"] = {**asdict(self.problem), "kind": self.problem.kind.value}
        return body


class Source(Protocol):
    """Where the entries come from: the live database, or an export file."""

    name: str

    def batches(self, start: int) -> Iterator[list[Item]]:
        """Entries with ``seq >= start`` in the source's order (a file's may be tampered)."""
        ...

    def hashes(self) -> Iterator[tuple[int, str]]:
        """``(seq, entry_hash)`` of every row, in order: to locate a rewrite."""
        ...

    def count(self) -> int | None:
        """How many rows there are, if known cheaply (the progress bar's total)."""
        ...


Progress = Callable[[int, int | None], None]  # (entries verified, total if known)


def leaf_data(row: Row) -> bytes:
    """``0x00 || canonical entry`` of a row, the bytes its leaf hash is taken of.

    The same bytes as ``ledger.usage.hashing.canonical`` (``json.dumps`` with sorted keys and no
    spaces) for rows of the types the log writes, formatted directly: several times faster.
    """
    (
        own,
        at,
        basis,
        block,
        channel,
        company,
        consumer,
        contact,
        decision,
        gv,
        lv,
        outcome,
        prev,
        reasons,
        refers,
        rules,
        _,
    ) = row
    return (
        f'\x00{{"at":{at},{"" if basis is None else _BASIS + _enc(basis) + ","}'
        f'"block_number":{"null" if block is None else block},"channel":{channel},'
        f'"company_id":{company},"consumer":{"null" if consumer is None else _enc(consumer)},'
        f'"contact":{_enc(contact)},"decision":{_enc(decision)},'
        f'"grant_version":{"null" if gv is None else gv},'
        f'"list_version":{"null" if lv is None else _enc(lv)},'
        f'"outcome":{"null" if outcome is None else _enc(outcome)},"prev_hash":{_enc(prev)},'
        f'"reasons":{_enc(reasons)},"refers_to":{"null" if refers is None else refers},'
        f'{"" if rules is None else _RULES + _enc(rules) + ","}"seq":{own}}}'
    ).encode()


_BASIS = '"basis":'
_RULES = '"rules":'


def item(row: Row) -> Item:
    """The verifier's view of a database row (``COLUMNS``)."""
    try:
        data = leaf_data(row)
    except TypeError:  # a NULL where the log never writes one: no hash can match
        data = b""
    return (row[0], row[12], data, row[16])


def with_seq(data: bytes, seq: int) -> bytes:
    """``data`` (``0x00 || canonical entry``) numbered ``seq`` instead: ``seq`` is its last key."""
    at = data.rfind(b'"seq":')
    return data[:at] + b'"seq":%d}' % seq


def rehashes(entry: Item, seq: int | None = None) -> bool:
    """Whether the entry (numbered ``seq`` instead of its own) hashes to its ``entry_hash``."""
    data = entry[DATA] if seq is None else with_seq(entry[DATA], seq)
    return bool(data) and _sha256(data).hexdigest() == entry[HASH]


@dataclass
class Verifier:
    """The streaming verification: leaf hashes, hash chain, frontier, anchors.

    Start it empty, or from a checkpoint's state (``size``, ``last_hash``, ``peaks``) to read
    only the entries after it.
    """

    anchors: Sequence[AnchorLike]
    size: int = 0
    last_hash: str = GENESIS_HASH
    peaks: list[bytes] = field(default_factory=list)
    checkpoint: Checkpoint | None = None
    progress: Progress | None = None
    # Keep the Merkle frontier (for the roots); the running service's walk, which checks no
    # anchor and starts mid-log without peaks, only follows the hashes and the chain.
    merkle: bool = True
    total: int | None = None
    read: int = 0
    checked: int = 0  # anchors checked
    _next: int = 0  # index of the next anchor to check
    _leaves: list[tuple[int, bytes]] = field(default_factory=list)  # to save in the checkpoint
    _resuming: bool = False  # the first row read must be the checkpoint's last entry

    def __post_init__(self) -> None:
        self.anchors = sorted(self.anchors, key=lambda a: a.tree_size)
        while self._next < len(self.anchors) and self.anchors[self._next].tree_size <= self.size:
            self._next += 1
        self._resuming = self.size > 0

    def root(self) -> bytes:
        """The root of the verified entries (``EMPTY_ROOT`` before the first)."""
        if not self.peaks:
            return EMPTY_ROOT
        h = self.peaks[-1]
        for left in reversed(self.peaks[:-1]):
            h = _sha256(b"\x01" + left + h).digest()
        return h

    def run(self, batches: Iterator[list[Item]]) -> Problem | None:
        """Verifies every row of ``batches`` (the source's rows from ``seq`` = ``size`` when
        resuming, else from 1); returns the first problem, or None."""
        for batch in batches:
            problem = self._feed(batch, batches)
            self._save()
            if self.progress is not None:
                self.progress(self.size, self.total)
            if problem is not None:
                return problem
        return self._finish()

    def _feed(self, batch: list[Item], rest: Iterator[list[Item]]) -> Problem | None:
        # Locals for the loop: attribute lookups cost as much as the formatting.
        sha, peaks = _sha256, self.peaks
        size, prev = self.size, self.last_hash
        anchors, nxt = self.anchors, self._next
        stop = anchors[nxt].tree_size if nxt < len(anchors) else -1
        keep, merkle = self.checkpoint is not None, self.merkle
        leaves = self._leaves
        # Leaf hashes not yet in the frontier: folded level by level when a root is needed
        # (an anchor, the batch's end), several times cheaper than one leaf at a time.
        fresh: list[bytes] = []
        folded = size
        start = 0
        if self._resuming:
            # The entry the checkpoint ends at must still be there, and be the one it verified.
            self._resuming = False
            if not batch or batch[0][SEQ] != size:
                return Problem(
                    Kind.DELETED, size, f"entry {size}, verified earlier, is no longer there"
                )
            if batch[0][HASH] != prev:
                return Problem(
                    Kind.EDITED,
                    size,
                    f"entry {size} is not the entry an earlier verification saw "
                    "(the chain was recomputed after an edit)",
                )
            start = 1
        for i in range(start, len(batch)):
            row = batch[i]
            seq = row[SEQ]
            stored = row[HASH]
            digest = sha(row[DATA]).digest()
            if seq != size + 1 or row[PREV] != prev or digest.hex() != stored:
                if merkle:
                    _extend(peaks, folded, fresh)
                self.size, self.last_hash = size, prev
                self.read += i - start
                return self._classify(batch, i, rest)
            fresh.append(digest)
            size, prev = seq, stored
            if keep:
                leaves.append((seq, digest))
            if size == stop:
                if merkle:
                    _extend(peaks, folded, fresh)
                    fresh, folded = [], size
                self.size, self.last_hash = size, prev
                problem = self._check_anchor(anchors[nxt])
                if problem is not None:
                    self.read += i - start + 1
                    return problem
                nxt += 1
                self._next = nxt
                stop = anchors[nxt].tree_size if nxt < len(anchors) else -1
        if merkle:
            _extend(peaks, folded, fresh)
        self.read += len(batch) - start
        self.size, self.last_hash = size, prev
        return None

    def _check_anchor(self, anchor: AnchorLike) -> Problem | None:
        previous = self.anchors[self._next - 1].tree_size if self._next else 0
        if self.root() != anchor.root:
            return self._mismatch(previous, anchor)
        self.checked += 1
        return None

    def _mismatch(self, previous: int, anchor: AnchorLike) -> Problem:
        """The anchor at ``anchor.tree_size`` disagrees with entries that each hold: the log
        was rewritten in ``previous+1..tree_size`` (chain recomputed), or the anchor is wrong."""
        return Problem(
            Kind.ANCHOR_MISMATCH,
            previous + 1,
            f"the root anchored at size {anchor.tree_size} (block {anchor.block_number}) is "
            f"not the log's: an entry in this range was rewritten and the chain recomputed, "
            f"or the anchor is wrong",
            last_seq=anchor.tree_size,
        )

    def _classify(self, batch: list[Item], i: int, rest: Iterator[list[Item]]) -> Problem:
        """Names the problem at ``batch[i]``, the first row that does not follow."""
        row, expected = batch[i], self.size + 1
        following = batch[i + 1] if i + 1 < len(batch) else next(iter(next(rest, [])), None)
        seq = row[SEQ]
        if not isinstance(seq, int):
            return Problem(Kind.EDITED, expected, f"entry {expected} has no valid seq ({seq!r})")
        if seq > expected:
            if following is not None and following[SEQ] == expected:
                return Problem(Kind.REORDERED, expected, f"entry {seq} comes before {expected}")
            missing = str(expected) if seq == expected + 1 else f"{expected}..{seq - 1}"
            return Problem(Kind.DELETED, expected, f"entry {missing} is missing")
        if seq < expected:
            return Problem(
                Kind.INSERTED, expected, f"an entry numbered {seq} appears after entry {seq}"
            )
        # The row sits where it should; its contents do not follow.
        if not rehashes(row):
            if rehashes(row, seq + 1):
                if following is not None and rehashes(following, seq):
                    return Problem(
                        Kind.REORDERED, seq, f"entries {seq} and {seq + 1} swapped places"
                    )
                return Problem(
                    Kind.DELETED,
                    seq,
                    f"entry {seq} is missing: the entries after it were renumbered down",
                )
            if rehashes(row, seq - 1):
                return Problem(
                    Kind.INSERTED,
                    seq - 1,
                    f"entry {seq - 1} was inserted: the entries after it were renumbered up",
                )
            if following is not None and rehashes(following, following[SEQ] - 1):
                return Problem(
                    Kind.INSERTED,
                    seq,
                    f"entry {seq} was inserted: the entries after it were renumbered up",
                )
            return Problem(Kind.EDITED, seq, f"entry {seq} does not hash to its entry_hash")
        return Problem(
            Kind.CHAIN_BROKEN,
            seq,
            f"entry {seq} does not link to entry {seq - 1} (one of them was rewritten)",
        )

    def _finish(self) -> Problem | None:
        if self._resuming:
            return Problem(
                Kind.TRUNCATED,
                self.size,
                f"the log ends before entry {self.size}, verified earlier",
            )
        if self._next < len(self.anchors):
            newest = self.anchors[-1]
            return Problem(
                Kind.TRUNCATED,
                self.size + 1,
                f"the log ends at {self.size} entries but {newest.tree_size} were anchored "
                f"(block {newest.block_number})",
            )
        return None

    def _save(self) -> None:
        if self.checkpoint is None:
            return
        self.checkpoint.save(
            size=self.size,
            last_hash=self.last_hash,
            peaks=self.peaks,
            anchored=self.anchors[self._next - 1].tree_size if self._next else 0,
            leaves=self._leaves,
        )
        self._leaves.clear()


def _extend(peaks: list[bytes], size: int, leaves: list[bytes]) -> None:
    """Adds ``leaves`` to the frontier ``peaks`` of a tree of ``size`` leaves, in place.

    The leaves go in as the largest perfect subtrees the size allows, each hashed level by
    level over a whole list, then carried into the frontier as binary addition does.
    """
    sha, i, n = _sha256, 0, len(leaves)
    while i < n:
        fits = n - i if size == 0 else min(size & -size, n - i)
        chunk = 1 << (fits.bit_length() - 1)
        level = leaves[i : i + chunk]
        while len(level) > 1:
            pairs = iter(level)  # a power of two: pairs all the way up
            level = [sha(b"\x01" + a + b).digest() for a, b in zip(pairs, pairs, strict=True)]
        node, carry = level[0], chunk
        while size & carry:
            node = sha(b"\x01" + peaks.pop() + node).digest()
            carry <<= 1
        peaks.append(node)
        size += chunk
        i += chunk


def verify(
    source: Source,
    anchors: Iterable[AnchorLike],
    *,
    checkpoint: Checkpoint | None = None,
    progress: Progress | None = None,
) -> Result:
    """Verifies ``source`` against ``anchors``, resuming from ``checkpoint`` when it has one.

    Args:
        source: the entries (``DatabaseSource``, ``ledger.audit.export.ExportSource``).
        anchors: the anchored tree heads, read from the chain.
        checkpoint: an earlier run's state: only the entries after it are read, and it is
            brought up to date as the run goes.
        progress: called after each batch with (entries verified, total if known).

    Returns:
        The result: ok, or the first problem with its kind and seq.
    """
    anchors = sorted(anchors, key=lambda a: a.tree_size)
    state = checkpoint.state() if checkpoint is not None else None
    verifier = Verifier(
        anchors,
        size=0 if state is None else state.size,
        last_hash=GENESIS_HASH if state is None else state.last_hash,
        peaks=[] if state is None else list(state.peaks),
        checkpoint=checkpoint,
        progress=progress,
        total=source.count(),
    )
    resumed = verifier.size
    problem = None
    if checkpoint is not None and state is not None:
        problem = _earlier_anchors(checkpoint, anchors, state.anchored, resumed)
        if problem is None:
            verifier.checked = sum(1 for a in anchors if a.tree_size <= resumed)
    if problem is None:
        problem = verifier.run(source.batches(max(resumed, 1)))
    if problem is not None and problem.kind is Kind.EDITED and checkpoint is not None:
        problem = _locate(problem, source, checkpoint, resumed)
    return Result(
        problem=problem,
        size=verifier.size,
        read=verifier.read,
        resumed_from=resumed,
        root=verifier.root().hex(),
        anchors=verifier.checked,
        newest_anchor=anchors[-1].tree_size if anchors else None,
        source=source.name,
    )


def _earlier_anchors(
    checkpoint: Checkpoint, anchors: Sequence[AnchorLike], anchored: int, size: int
) -> Problem | None:
    """Anchors made since the checkpoint at sizes it already covers: checked against the roots
    of its verified leaves (the entries themselves are not read again)."""
    previous = 0
    for anchor in anchors:
        if anchored < anchor.tree_size <= size:
            if checkpoint.root(anchor.tree_size) != anchor.root:
                return Problem(
                    Kind.ANCHOR_MISMATCH,
                    previous + 1,
                    f"the root anchored at size {anchor.tree_size} (block "
                    f"{anchor.block_number}) is not the root of the entries verified earlier",
                    last_seq=anchor.tree_size,
                )
        previous = anchor.tree_size
    return None


def _locate(problem: Problem, source: Source, checkpoint: Checkpoint, resumed: int) -> Problem:
    """A rewrite found at the checkpoint's edge: the first entry whose hash differs from the
    verified one is where the chain was recomputed from."""
    if problem.seq != resumed or resumed == 0:
        return problem
    verified = checkpoint.leaves(1, resumed)
    for (seq, stored), leaf in zip(source.hashes(), verified, strict=False):
        if seq > resumed:
            break
        if stored != leaf.hex():
            return Problem(
                Kind.EDITED,
                seq,
                f"entry {seq} is not the entry an earlier verification saw; the chain was "
                "recomputed from it",
            )
    return problem


# ----- the live database -----

_t = UsageEntry.__table__  # type: ignore[attr-defined]
_ROWS = Prepared(
    select(*(_t.c[name] for name in COLUMNS))
    .where(_t.c.seq >= bindparam("start"))
    .order_by(_t.c.seq)
    .limit(bindparam("limit"))
)
_HASHES = Prepared(
    select(_t.c.seq, _t.c.entry_hash)
    .where(_t.c.seq > bindparam("after"))
    .order_by(_t.c.seq)
    .limit(bindparam("limit"))
)
_COUNT = Prepared(select(_t.c.seq).order_by(_t.c.seq.desc()).limit(1))


class DatabaseSource:
    """The live usage log, read in ``seq`` order in one read-only snapshot, as raw tuples."""

    name = "database"

    def __init__(self, engine: Engine, *, batch_rows: int = BATCH_ROWS) -> None:
        self.engine = engine
        self.batch_rows = batch_rows

    def batches(self, start: int) -> Iterator[list[Item]]:
        with connect(self.engine, read_only=True) as conn:
            yield from pages(conn, start, self.batch_rows)

    def hashes(self) -> Iterator[tuple[int, str]]:
        with connect(self.engine, read_only=True) as conn:
            after = 0
            while True:
                rows = _HASHES.rows(conn, after=after, limit=self.batch_rows)
                yield from ((int(s), str(h)) for s, h in rows)
                if len(rows) < self.batch_rows:
                    return
                after = int(rows[-1][0])

    def count(self) -> int | None:
        with connect(self.engine, read_only=True) as conn:
            head = _COUNT.first(conn)
        return 0 if head is None else int(head[0])


_LAST_SEQ = (1 << 63) - 1  # the largest seq a BIGINT column holds


def rows_after(engine: Engine, after: int, page: int) -> Iterator[list[Row]]:
    """The rows (``COLUMNS``) after ``after`` in pages, each read in its own short snapshot."""
    if after >= _LAST_SEQ:  # nothing can follow; and after + 1 would not fit the column
        return
    start = after + 1
    while True:
        with connect(engine, read_only=True) as conn:
            rows = _ROWS.rows(conn, start=start, limit=page)
        if rows:
            yield rows
        if len(rows) < page:
            return
        start = int(rows[-1][0]) + 1


def page(conn: Connection, start: int, limit: int) -> list[Item]:
    """Up to ``limit`` entries from ``seq`` = ``start``, in the caller's transaction."""
    return [item(row) for row in _ROWS.rows(conn, start=start, limit=limit)]


def pages(conn: Connection, start: int, limit: int) -> Iterator[list[Item]]:
    """Every entry from ``seq`` = ``start``, ``limit`` at a time, in the caller's transaction."""
    while True:
        items = page(conn, start, limit)
        if items:
            yield items
        if len(items) < limit:
            return
        start = int(items[-1][SEQ]) + 1


def verify_chain(db: Session | Connection) -> int | None:
    """Re-hashes the whole log in the caller's transaction, without anchors.

    Returns:
        The seq of the first entry whose hash or link does not hold, or None when the log is
        intact.
    """
    problem = Verifier([]).run(pages(connection_of(db), 1, BATCH_ROWS))
    return None if problem is None else problem.seq
