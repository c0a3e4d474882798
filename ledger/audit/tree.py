"""The usage log as an RFC 9162 Merkle tree in the database: the writer's side of the proofs.

Leaf ``i`` is the ``entry_hash`` of the usage entry ``seq = i + 1`` (already the RFC's leaf
hash). ``merkle_node`` stores the hash of every completed, aligned, perfect subtree of
``2**level`` leaves for ``level >= 8``: about one row per 128 entries, so the hash of any range
is a few stored nodes plus at most two runs of fewer than 256 leaves, and a proof in a tree of
ten million entries reads a dozen stored nodes and the leaves of two 256-entry chunks (its
leaf's and the log's last). The stored nodes only speed things up: a node not
stored yet is computed from the leaves, and an auditor never reads them (``merkle`` recomputes
everything from the entries).

Appending to the log adds no work here; ``extend`` is run by the anchorer, after the fact. Rows
of ``merkle_node`` are never rewritten: the database refuses UPDATE and DELETE on them
(triggers, migration 0004), as it does for the log itself.

Example:
    >>> with engine.begin() as conn:
    ...     extend(conn)
    ...     tree = MerkleTree(conn)
    ...     size = tree.size()
    ...     proof = tree.inclusion_proof(seq - 1, size)
    ...     merkle.verify_inclusion(leaf, seq - 1, size, proof, tree.root(size))
"""

from __future__ import annotations

from sqlalchemy import BigInteger, bindparam, func, insert
from sqlalchemy.engine import Connection
from sqlmodel import Field, SQLModel, col, select

from ledger.audit import merkle, proofs
from ledger.db.prepared import Prepared
from ledger.usage.entries import UsageEntry

TABLE = "merkle_node"
LEVEL = 8  # the lowest stored level: nodes of 256 leaves
CHUNK = 1 << LEVEL
_INSERT_BATCH = 1000  # nodes per executemany


class MerkleNode(SQLModel, table=True):
    """The hash of leaves ``[idx * 2**level, (idx + 1) * 2**level)``, stored once complete."""

    __tablename__ = TABLE

    level: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    idx: int = Field(
        sa_type=BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    hash: str  # hex, as usage_entry.entry_hash


# A proof runs a dozen of these: compiled once, run on the DBAPI cursor (db.prepared), since
# Connection.execute alone would cost more than the 5 ms a receipt's proof may take.
_SIZE = Prepared(select(func.coalesce(func.max(UsageEntry.seq), 0)))
_NODE = Prepared(
    select(MerkleNode.hash).where(
        MerkleNode.level == bindparam("level"), MerkleNode.idx == bindparam("idx")
    )
)
_LEAVES = Prepared(
    select(UsageEntry.seq, UsageEntry.entry_hash)
    .where(UsageEntry.seq > bindparam("start"), UsageEntry.seq <= bindparam("end"))
    .order_by(col(UsageEntry.seq))
)


class MerkleTree:
    """The Merkle tree over the usage log, read through ``conn``: a ``proofs.Subtrees``.

    Hashes of ranges are cached for the life of the object: a range below the log's size never
    changes (the log is append-only), and the right edges of a proof share their sub-ranges.

    Example:
        >>> tree = MerkleTree(conn)
        >>> tree.consistency_proof(1000, tree.size())
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._cache: dict[tuple[int, int], bytes] = {}
        self._chunks: dict[int, list[list[bytes]]] = {}  # chunk number -> _chunk_levels

    def size(self) -> int:
        """The number of entries in the log (its highest ``seq``)."""
        row = _SIZE.first(self._conn)
        return 0 if row is None else int(row[0])

    def hash(self, start: int, end: int) -> bytes:
        """The Merkle tree hash of leaves ``[start, end)``.

        Raises:
            ValueError: the range is empty or reaches past the log's last entry.
        """
        if not 0 <= start < end:
            raise ValueError(f"no Merkle tree hash for the range [{start}, {end})")
        cached = self._cache.get((start, end))
        if cached is not None:
            return cached
        n = end - start
        stored = None
        if n >= CHUNK and n & (n - 1) == 0 and start % n == 0:
            level = n.bit_length() - 1
            stored = self._node(level, start >> level)
        if stored is not None:
            h = stored
        elif n <= CHUNK and n & (n - 1) == 0 and start % n == 0:
            level = n.bit_length() - 1
            h = self._chunk_levels(start, end)[level][start % CHUNK >> level]
        elif n <= CHUNK and start // CHUNK != (end - 1) // CHUNK:
            # Only a caller's own range straddles two chunks, never a proof's.
            h = merkle.root(_leaves(self._conn, start, end))
        else:
            k = merkle.split(n)
            h = merkle.node_hash(self.hash(start, start + k), self.hash(start + k, end))
        self._cache[(start, end)] = h
        return h

    def root(self, size: int) -> bytes:
        """The root of the first ``size`` entries (``merkle.EMPTY_ROOT`` for 0)."""
        return proofs.tree_hash(self, size)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """The audit path of leaf ``index`` (entry ``seq = index + 1``) in the tree of ``size``.

        Raises:
            ValueError: ``index`` is not below ``size``, or ``size`` is past the log's end.
        """
        return proofs.inclusion_proof(self, index, size)

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """The proof that the tree of ``size2`` entries extends the tree of ``size1``.

        Raises:
            ValueError: the sizes are out of order, or ``size2`` is past the log's end.
        """
        return proofs.consistency_proof(self, size1, size2)

    def _chunk_levels(self, start: int, end: int) -> list[list[bytes]]:
        """The complete subtrees of the 256-leaf chunk holding ``[start, end)``, level by level.

        A proof asks for several ranges inside the chunk of its leaf (the path down to it) and
        of the log's last leaf: one query reads the chunk, as far as the log goes, and its
        levels are hashed once for all of them.
        """
        chunk = start // CHUNK
        base = chunk * CHUNK
        levels = self._chunks.get(chunk)
        if levels is None or len(levels[0]) < end - base:
            levels = [_leaves(self._conn, base, base + CHUNK, partial=True)]
            while len(levels[-1]) > 1:
                below = levels[-1]
                pairs = range(0, len(below) - 1, 2)
                levels.append([merkle.node_hash(below[i], below[i + 1]) for i in pairs])
            self._chunks[chunk] = levels
        if len(levels[0]) < end - base:
            missing = base + len(levels[0]) + 1
            raise ValueError(f"the log has no entry {missing} (asked up to {end})")
        return levels

    def _node(self, level: int, idx: int) -> bytes | None:
        row = _NODE.first(self._conn, level=level, idx=idx)
        return None if row is None else bytes.fromhex(row[0])


def extend(conn: Connection) -> int:
    """Stores the hashes of the completed perfect subtrees of 256 leaves and above not stored yet.

    Each level resumes after its last stored node, from the level below (or from the leaves
    for the lowest), so an extension cut short is finished by the next one and a second call
    stores nothing. Run inside the caller's transaction, by one writer at a time (the
    anchorer holds a leader lock): two concurrent extensions would collide on the key.

    Returns:
        The number of leaves the stored nodes now cover (a multiple of 256).

    Raises:
        ValueError: an entry is missing from the log (a gap in ``seq``).
    """
    size = MerkleTree(conn).size()
    level, covered = LEVEL, 0
    while size >> level:
        target = size >> level
        done = _stored_count(conn, level)
        if done < target:
            if level == LEVEL:
                hashes = _chunk_hashes(conn, done, target)
            else:
                hashes = _parent_hashes(conn, level, done, target)
            rows = [
                {"level": level, "idx": done + i, "hash": h.hex()} for i, h in enumerate(hashes)
            ]
            for i in range(0, len(rows), _INSERT_BATCH):
                conn.execute(insert(MerkleNode), rows[i : i + _INSERT_BATCH])
        if level == LEVEL:
            covered = target << LEVEL
        level += 1
    return covered


def _stored_count(conn: Connection, level: int) -> int:
    # Nodes of a level are stored left to right without gaps, so the highest idx counts them.
    top = conn.execute(
        select(func.max(MerkleNode.idx)).where(MerkleNode.level == level)
    ).scalar_one_or_none()
    return 0 if top is None else int(top) + 1


def _chunk_hashes(conn: Connection, first: int, stop: int) -> list[bytes]:
    """The hashes of the level-8 nodes ``first .. stop - 1``, from one scan of their leaves."""
    hashes: list[bytes] = []
    expected = first * CHUNK + 1
    # yield_per on the statement, not the connection: Connection.execution_options would
    # leave the caller's connection streaming (a server-side cursor on PostgreSQL).
    with conn.execute(
        select(UsageEntry.seq, UsageEntry.entry_hash)
        .where(UsageEntry.seq > first * CHUNK, UsageEntry.seq <= stop * CHUNK)
        .order_by(col(UsageEntry.seq))
        .execution_options(yield_per=CHUNK)
    ) as result:  # closed on a gap too: a server-side cursor must not linger
        for part in result.partitions(CHUNK):
            if len(part) != CHUNK or part[0][0] != expected or part[-1][0] != expected + CHUNK - 1:
                raise ValueError(f"the usage log has a gap in seq after {expected - 1}")
            hashes.append(merkle.root([bytes.fromhex(h) for _, h in part]))
            expected += CHUNK
    if len(hashes) != stop - first:
        raise ValueError(f"the usage log has a gap in seq after {expected - 1}")
    return hashes


def _parent_hashes(conn: Connection, level: int, first: int, stop: int) -> list[bytes]:
    """The hashes of the nodes ``first .. stop - 1`` of ``level``, from their stored children."""
    children = [
        bytes.fromhex(h)
        for h in conn.execute(
            select(MerkleNode.hash)
            .where(
                MerkleNode.level == level - 1,
                MerkleNode.idx >= 2 * first,
                MerkleNode.idx < 2 * stop,
            )
            .order_by(col(MerkleNode.idx))
        ).scalars()
    ]
    if len(children) != 2 * (stop - first):  # the level below was extended first
        raise ValueError(f"merkle_node level {level - 1} is missing nodes")
    return [merkle.node_hash(children[i], children[i + 1]) for i in range(0, len(children), 2)]


def _leaves(conn: Connection, start: int, end: int, *, partial: bool = False) -> list[bytes]:
    """Leaf hashes ``[start, end)``: the entries ``seq`` ``start + 1 .. end``, in one query.

    With ``partial``, the run may stop early where the log ends; it never skips an entry.
    """
    rows = _LEAVES.rows(conn, start=start, end=end)
    if rows and rows[0][0] == start + 1 and rows[-1][0] == start + len(rows):
        hashes = [bytes.fromhex(h) for _, h in rows]  # seq is unique: no gap in between
    else:
        # A missing seq would shift every later leaf: keep only the unbroken run from start.
        hashes = []
        for seq, h in rows:
            if seq != start + len(hashes) + 1:
                break
            hashes.append(bytes.fromhex(h))
    if partial:
        return hashes
    if len(hashes) != end - start:
        raise ValueError(f"the log has no entry {start + len(hashes) + 1} (asked up to {end})")
    return hashes
