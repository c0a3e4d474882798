"""The event indexer: follows every QuotaLedger event into SQL (tables in ``tables``).

One ``sync`` (a poll):

1. Reorg check. The hash of the checkpoint block is compared with the node's. The recent
   blocks kept in ``ix_block`` were stored only after checking that each one's parent hash is
   the one before it, so the newest matching means all of the last ``reorg_depth`` match: one
   request re-checks them all. On a mismatch the stored blocks are compared newest first to
   find the fork point; history after it is deleted and the current state recomputed from
   the history that remains, in one transaction with the moved-back checkpoint. Then it
   replays from there. A reorg deeper than the stored blocks rebuilds from the deployment.
2. Catch-up. ``eth_getLogs`` from the checkpoint to the head minus ``confirmations``, in chunks
   whose size adapts (halved when the node refuses or times out, steered towards
   ``_TARGET_EVENTS`` events a chunk). Each chunk's rows and the new checkpoint are written in
   one transaction, which first re-reads the checkpoint: when another indexer process moved
   it meanwhile, that work is kept and this chunk dropped. Logs already in ``ix_log``
   (transaction hash, log index) are skipped, so applying a range twice changes nothing.

Example:
    >>> indexer = Indexer(chain, engine, start_block=0)
    >>> indexer.sync().checkpoint
    42
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass, field

import requests
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from ledger.background import BackgroundLoop
from ledger.chain.client import BlockHeader, Chain, QueryRefused, RawLog
from ledger.db.engine import transaction
from ledger.domain.errors import ChainUnavailable
from ledger.index.checkpoint import (
    Checkpoint,
    block_timestamp,
    checkpoint_of,
    clear_checkpoint,
    forget_blocks_after,
    mark_synced,
    read_checkpoint,
    same_block,
    store_blocks,
    stored_blocks,
    write_checkpoint,
)
from ledger.index.events import decode, needs_time
from ledger.index.projection import clear_projection, known_logs, project, roll_back_projection

log = logging.getLogger(__name__)

_TARGET_EVENTS = 5_000  # events a chunk aims at: large enough to amortise, small enough to commit
_FIRST_CHUNK = 1_000


@dataclass
class SyncReport:
    """What one ``sync`` did."""

    checkpoint: int | None = None  # the last indexed block afterwards
    target: int | None = None  # the block it aimed at (head minus confirmations)
    events: int = 0  # logs applied
    chunks: int = 0
    reorgs: int = 0
    rolled_back_to: int | None = None  # fork point of the last reorg handled

    @property
    def caught_up(self) -> bool:
        return self.target is not None and (self.checkpoint or -1) >= self.target


Progress = Callable[[int, int, int], None]  # (checkpoint, target, events so far)


@dataclass(eq=False)
class Indexer:
    """Follows the ledger contract's events into the index tables. Thread-safe.

    Args:
        chain: the node and the contract to follow.
        engine: the database (tables created by ``ledger.schema.upgrade``).
        start_block: the contract's deployment block (nothing to index before it).
        confirmations: blocks that must sit on top of a block before it is indexed.
        reorg_depth: recent block hashes kept to find the fork point of a reorg (at least 1).
        max_chunk_blocks: the largest block range asked of ``eth_getLogs`` (at least 1).
        clock: Unix seconds now, for the lag in seconds.
    """

    chain: Chain
    engine: Engine
    _: KW_ONLY
    start_block: int
    confirmations: int = 0
    reorg_depth: int = 64
    max_chunk_blocks: int = 10_000
    clock: Callable[[], float] = time.time
    chunk_blocks: int = field(init=False)  # the block range of the next eth_getLogs
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.reorg_depth = max(1, self.reorg_depth)
        self.max_chunk_blocks = max(1, self.max_chunk_blocks)
        self.chunk_blocks = min(_FIRST_CHUNK, self.max_chunk_blocks)

    # ----- reading the checkpoint -----

    def checkpoint(self) -> Checkpoint | None:
        """How far the index goes, or None before the first indexed block."""
        with transaction(self.engine) as session:
            return checkpoint_of(read_checkpoint(session.connection()))

    # ----- following the chain -----

    def sync(
        self, *, progress: Progress | None = None, stop: threading.Event | None = None
    ) -> SyncReport:
        """Checks for a reorg, then indexes up to the head minus ``confirmations``.

        Args:
            progress: called after each chunk with (checkpoint, target, events so far).
            stop: when set, the sync ends after the chunk in progress (a long catch-up).

        Raises:
            ChainUnavailable: the node cannot be reached (the index is left consistent).
            DatabaseUnavailable: the database cannot be written.
        """
        with self._lock:
            return self._sync(progress, stop)

    def wait_for(self, block: int, *, timeout: float, poll_interval: float = 0.1) -> bool:
        """Returns once the index covers ``block`` (syncing as needed), or False after ``timeout``.

        With confirmations a block is covered only once enough blocks sit on top of it.
        """
        deadline = time.monotonic() + timeout
        while True:
            current = self.checkpoint()
            if current is not None and current.block_number >= block:
                return True
            try:
                self.sync()
            except ChainUnavailable as exc:
                log.warning(
                    "index cannot reach the node while waiting for block %d: %s", block, exc
                )
            current = self.checkpoint()
            if current is not None and current.block_number >= block:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll_interval)

    def rebuild(self, *, progress: Progress | None = None) -> SyncReport:
        """Empties the index and indexes again from the deployment block."""
        with self._lock:
            with transaction(self.engine) as session:
                _reset(session.connection())
            return self._sync(progress, None)

    def _sync(self, progress: Progress | None, stop: threading.Event | None) -> SyncReport:
        report = SyncReport()
        head = self.chain.head()
        target = head.number - self.confirmations
        report.target = target
        with transaction(self.engine) as session:
            conn = session.connection()
            row = read_checkpoint(conn, lock=True)
            if row is not None and (
                row["contract"] != self.chain.address or row["start_block"] != self.start_block
            ):
                # The index follows another deployment (a redeployed contract): start over.
                log.warning(
                    "index was for %s from block %d: rebuilding",
                    row["contract"],
                    row["start_block"],
                )
                _reset(conn)
                row = None
            current = checkpoint_of(row)

        if (
            current is not None
            and self.chain.block_hash(current.block_number) != current.block_hash
        ):
            current = self._roll_back(current)
            report.reorgs += 1
            report.rolled_back_to = (
                self.start_block - 1 if current is None else current.block_number
            )

        while True:
            done = self.start_block - 1 if current is None else current.block_number
            if done >= target:
                break
            if stop is not None and stop.is_set():
                report.checkpoint = None if current is None else current.block_number
                return report
            applied = self._next_chunk(current, done + 1, target)
            if applied is None:
                # The chain moved under this chunk (a reorg while fetching) or another indexer
                # wrote it: the next sync starts again from whatever is now stored.
                report.checkpoint = None if current is None else current.block_number
                return report
            current, events = applied
            report.events += events
            report.chunks += 1
            if progress is not None:
                progress(current.block_number, target, report.events)

        if current is not None:
            current = self._touch(current)
        report.checkpoint = None if current is None else current.block_number
        return report

    def _next_chunk(
        self, base: Checkpoint | None, first: int, target: int
    ) -> tuple[Checkpoint, int] | None:
        while True:
            last = min(target, first + self.chunk_blocks - 1)
            try:
                logs = self.chain.logs(first, last)
                break
            except ChainUnavailable as exc:
                if self.chunk_blocks == 1 or not _range_problem(exc):
                    raise
                self.chunk_blocks = max(1, self.chunk_blocks // 2)
                log.info(
                    "eth_getLogs refused %d..%d: chunk now %d blocks",
                    first,
                    last,
                    self.chunk_blocks,
                )
        headers = self._headers(base, first, last, target, logs)
        if headers is None:
            return None
        applied = self._apply(base, logs, headers, caught_up=last >= target)
        self._adapt(last - first + 1, len(logs))
        return applied

    def _adapt(self, span: int, events: int) -> None:
        wanted = self.max_chunk_blocks if events == 0 else max(1, span * _TARGET_EVENTS // events)
        self.chunk_blocks = max(1, min(self.max_chunk_blocks, 2 * self.chunk_blocks, wanted))

    def _headers(
        self, base: Checkpoint | None, first: int, last: int, target: int, logs: Sequence[RawLog]
    ) -> dict[int, BlockHeader] | None:
        """Headers of the chunk's last block, of its blocks within ``reorg_depth`` of the
        target, and of blocks whose events need a timestamp; None when they do not link up."""
        wanted = {last, *range(max(first, target - self.reorg_depth + 1), last + 1)}
        wanted |= {lg.block_number for lg in logs if lg.block_timestamp is None and needs_time(lg)}
        headers: dict[int, BlockHeader] = {}
        for number in sorted(wanted):
            header = self.chain.header(number)
            if header is None:
                return None  # the chain got shorter since the head was read
            headers[number] = header
        for number, header in headers.items():
            parent = headers.get(number - 1)
            if parent is not None and header.parent_hash != parent.hash:
                return None
        if base is not None and first in headers and headers[first].parent_hash != base.block_hash:
            return None
        for lg in logs:
            known = headers.get(lg.block_number)
            if known is not None and known.hash != lg.block_hash:
                return None
        return headers

    def _apply(
        self,
        base: Checkpoint | None,
        logs: Sequence[RawLog],
        headers: dict[int, BlockHeader],
        *,
        caught_up: bool,
    ) -> tuple[Checkpoint, int] | None:
        last = headers[max(headers)]
        # The lag in seconds counts from when the index last matched the head: a chunk in the
        # middle of a catch-up does not reset it.
        synced_at = self.clock() if caught_up else (0.0 if base is None else base.synced_at)
        events = [(lg, decoded) for lg in logs if (decoded := decode(lg)) is not None]
        try:
            with transaction(self.engine) as session:
                conn = session.connection()
                if not same_block(checkpoint_of(read_checkpoint(conn, lock=True)), base):
                    return None  # another indexer got here first; its rows stand
                applied = project(conn, events, headers, known_logs(conn, logs))
                recent = [h for n, h in headers.items() if n > last.number - self.reorg_depth]
                store_blocks(conn, recent, keep_from=last.number - self.reorg_depth + 1)
                checkpoint = Checkpoint(last.number, last.hash, last.timestamp, synced_at)
                write_checkpoint(conn, checkpoint, self.chain.address, self.start_block)
        except IntegrityError:
            return None  # a concurrent indexer inserted the same first checkpoint
        return checkpoint, applied

    def _touch(self, current: Checkpoint) -> Checkpoint:
        """Records that the index matched the chain head now (the lag in seconds starts here)."""
        with transaction(self.engine) as session:
            conn = session.connection()
            stored = checkpoint_of(read_checkpoint(conn, lock=True))
            if stored is None or not same_block(stored, current):
                return stored or current
            now = self.clock()
            mark_synced(conn, now)
            return Checkpoint(
                current.block_number, current.block_hash, current.block_timestamp, now
            )

    def _roll_back(self, current: Checkpoint) -> Checkpoint | None:
        """Finds the fork point among the stored recent blocks and rolls the index back to it."""
        with transaction(self.engine) as session:
            stored = stored_blocks(session.connection())
        fork: tuple[int, str] | None = None
        for number, stored_hash in stored:
            if number > current.block_number:
                continue
            actual = self.chain.block_hash(number)
            if actual is not None and actual.hex() == stored_hash:
                fork = (number, stored_hash)
                break
        with transaction(self.engine) as session:
            conn = session.connection()
            stored_now = checkpoint_of(read_checkpoint(conn, lock=True))
            if not same_block(stored_now, current):
                return stored_now  # another indexer handled it
            if fork is None:
                log.warning(
                    "reorg deeper than the %d stored blocks: rebuilding the index", len(stored)
                )
                _reset(conn)
                return None
            number, fork_hash = fork
            log.warning(
                "reorg: index rolled back from block %d to %d", current.block_number, number
            )
            roll_back_projection(conn, number)
            forget_blocks_after(conn, number)
            timestamp = block_timestamp(conn, number)
            checkpoint = Checkpoint(number, bytes.fromhex(fork_hash), timestamp, current.synced_at)
            write_checkpoint(conn, checkpoint, self.chain.address, self.start_block)
            return checkpoint


class IndexFollower(BackgroundLoop):
    """Runs ``Indexer.sync`` every ``poll_interval`` seconds in a background thread.

    Example:
        >>> with IndexFollower(indexer, poll_interval=0.25):
        ...     serve()
    """

    def __init__(self, indexer: Indexer, *, poll_interval: float) -> None:
        self.indexer = indexer
        self.poll_interval = poll_interval
        self._failing = False
        # Stopping ends polling; a sync in progress ends after its current chunk.
        super().__init__("ledger-indexer")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.indexer.sync(stop=self._stop)
                if self._failing:
                    log.info("index is following the chain again")
                self._failing = False
            except Exception as exc:  # keep following: checks refuse as stale meanwhile
                if not self._failing:
                    log.warning("index cannot follow the chain: %s", exc)
                self._failing = True
            self._stop.wait(self.poll_interval)


def _range_problem(exc: ChainUnavailable) -> bool:
    """Whether a smaller block range may succeed: the node refused it or took too long."""
    cause = exc.__cause__
    return isinstance(exc, QueryRefused) or isinstance(cause, requests.Timeout | TimeoutError)


def _reset(conn: Connection) -> None:
    """Empties the index: the next sync starts from the deployment block."""
    clear_projection(conn)
    clear_checkpoint(conn)
