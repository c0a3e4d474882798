"""The event indexer: follows every QuotaLedger event into SQL (tables in ``index_tables``).

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

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import requests
from eth_abi.abi import decode as abi_decode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from sqlalchemy import Table, delete, insert, select, tuple_
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from ledger.chain import contract
from ledger.chain.client import BlockHeader, Chain, QueryRefused, RawLog
from ledger.db.engine import transaction
from ledger.domain.errors import ChainUnavailable
from ledger.domain.grants import CompanyStatus
from ledger.index.tables import (
    ANCHOR,
    COMPANY,
    CONSUMER,
    ENTITIES,
    GRANT,
    LINK,
    BlockRow,
    CheckpointRow,
    Entity,
    LogRow,
)

log = logging.getLogger(__name__)

_TARGET_EVENTS = 5_000  # events a chunk aims at: large enough to amortise, small enough to commit
_FIRST_CHUNK = 1_000
_IN_BATCH = 400  # keys per IN (...) list: well under SQLite's bound-parameter limit
_MAX_DB_ID = 1 << 63  # ids at or above do not fit BIGINT; the API cannot name them either


@dataclass(frozen=True, slots=True)
class Checkpoint:
    block_number: int
    block_hash: bytes
    block_timestamp: int
    synced_at: float


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


class Indexer:
    """Follows the ledger contract's events into the index tables. Thread-safe.

    Args:
        chain: the node and the contract to follow.
        engine: the database (tables created by ``storage.make_engine``).
        start_block: the contract's deployment block (nothing to index before it).
        confirmations: blocks that must sit on top of a block before it is indexed.
        reorg_depth: recent block hashes kept to find the fork point of a reorg.
        max_chunk_blocks: the largest block range asked of ``eth_getLogs``.
    """

    def __init__(
        self,
        chain: Chain,
        engine: Engine,
        *,
        start_block: int,
        confirmations: int = 0,
        reorg_depth: int = 64,
        max_chunk_blocks: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.chain = chain
        self.engine = engine
        self.start_block = start_block
        self.confirmations = confirmations
        self.reorg_depth = max(1, reorg_depth)
        self.max_chunk_blocks = max(1, max_chunk_blocks)
        self.clock = clock
        self.chunk_blocks = min(_FIRST_CHUNK, self.max_chunk_blocks)
        self._lock = threading.Lock()

    # ----- reading the checkpoint -----

    def checkpoint(self) -> Checkpoint | None:
        """How far the index goes, or None before the first indexed block."""
        with transaction(self.engine) as session:
            return _checkpoint(_read_checkpoint(session.connection()))

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
            row = _read_checkpoint(conn, lock=True)
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
            current = _checkpoint(row)

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
        wanted |= {lg.block_number for lg in logs if lg.block_timestamp is None and _needs_time(lg)}
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
                if not _same(_checkpoint(_read_checkpoint(conn, lock=True)), base):
                    return None  # another indexer got here first; its rows stand
                applied = _project(conn, events, headers, _known(conn, logs))
                recent = [h for n, h in headers.items() if n > last.number - self.reorg_depth]
                _store_blocks(conn, recent, keep_from=last.number - self.reorg_depth + 1)
                checkpoint = Checkpoint(last.number, last.hash, last.timestamp, synced_at)
                _write_checkpoint(conn, checkpoint, self.chain.address, self.start_block)
        except IntegrityError:
            return None  # a concurrent indexer inserted the same first checkpoint
        return checkpoint, applied

    def _touch(self, current: Checkpoint) -> Checkpoint:
        """Records that the index matched the chain head now (the lag in seconds starts here)."""
        with transaction(self.engine) as session:
            conn = session.connection()
            stored = _checkpoint(_read_checkpoint(conn, lock=True))
            if stored is None or not _same(stored, current):
                return stored or current
            now = self.clock()
            conn.execute(_CHECKPOINT.update().where(_CHECKPOINT.c.id == 1).values(synced_at=now))
            return Checkpoint(
                current.block_number, current.block_hash, current.block_timestamp, now
            )

    def _roll_back(self, current: Checkpoint) -> Checkpoint | None:
        """Finds the fork point among the stored recent blocks and rolls the index back to it."""
        with transaction(self.engine) as session:
            stored = (
                session.connection()
                .execute(select(_BLOCKS.c.number, _BLOCKS.c.hash).order_by(_BLOCKS.c.number.desc()))
                .all()
            )
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
            stored_now = _checkpoint(_read_checkpoint(conn, lock=True))
            if not _same(stored_now, current):
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
            _roll_back_to(conn, number)
            timestamp = conn.execute(
                select(_BLOCKS.c.timestamp).where(_BLOCKS.c.number == number)
            ).scalar_one()
            checkpoint = Checkpoint(number, bytes.fromhex(fork_hash), timestamp, current.synced_at)
            _write_checkpoint(conn, checkpoint, self.chain.address, self.start_block)
            return checkpoint


class IndexFollower:
    """Runs ``Indexer.sync`` every ``poll_interval`` seconds in a background thread.

    Example:
        >>> with IndexFollower(indexer, poll_interval=0.25):
        ...     serve()
    """

    def __init__(self, indexer: Indexer, *, poll_interval: float) -> None:
        self.indexer = indexer
        self.poll_interval = poll_interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ledger-indexer", daemon=True)
        self._failing = False

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stops polling; a sync in progress ends after its current chunk."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> IndexFollower:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

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


# ----- decoding -----


@dataclass(frozen=True, slots=True)
class _EventSpec:
    name: str
    topics: tuple[tuple[str, str], ...]  # indexed (name, type), in order
    data_names: tuple[str, ...]
    data_types: tuple[str, ...]
    static: bool  # every data field is one 32-byte word (no string, bytes or array)


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    args: dict[str, Any]


@lru_cache(maxsize=1)
def _specs() -> dict[bytes, _EventSpec]:
    found: dict[bytes, _EventSpec] = {}
    for item in contract.abi():
        if item["type"] != "event" or item.get("anonymous"):
            continue
        inputs = item["inputs"]
        signature = f"{item['name']}({','.join(i['type'] for i in inputs)})"
        found[keccak(text=signature)] = _EventSpec(
            item["name"],
            tuple((i["name"], i["type"]) for i in inputs if i["indexed"]),
            tuple(i["name"] for i in inputs if not i["indexed"]),
            tuple(i["type"] for i in inputs if not i["indexed"]),
            all(_is_word(i["type"]) for i in inputs if not i["indexed"]),
        )
    return found


def decode(raw: RawLog) -> Event | None:
    """The event of a ledger contract log, or None for a log of no known event."""
    if not raw.topics:
        return None
    spec = _specs().get(raw.topics[0])
    if spec is None:
        return None
    args: dict[str, Any] = {}
    for (name, kind), topic in zip(spec.topics, raw.topics[1:], strict=True):
        args[name] = _word(kind, topic)
    if spec.static:
        # Word by word: several times faster than the generic decoder, which dominated the
        # catch-up time; the data comes from the contract's own emit, so it is well formed.
        data = raw.data
        for i, (name, kind) in enumerate(zip(spec.data_names, spec.data_types, strict=True)):
            args[name] = _word(kind, data[32 * i : 32 * i + 32])
    elif spec.data_types:
        values = abi_decode(spec.data_types, raw.data)
        for name, kind, value in zip(spec.data_names, spec.data_types, values, strict=True):
            args[name] = _checksum(value) if kind == "address" else value
    return Event(spec.name, args)


def _is_word(kind: str) -> bool:
    if "[" in kind:
        return False
    return kind in {"address", "bool", "bytes32"} or kind.startswith(("uint", "int"))


def _word(kind: str, topic: bytes) -> Any:
    if kind == "address":
        return _checksum("0x" + topic[12:].hex())
    if kind.startswith(("uint", "int")):
        return int.from_bytes(topic, "big", signed=kind.startswith("int"))
    if kind == "bool":
        return topic[-1] == 1
    return topic  # bytes32 and hashes of dynamic indexed values


@lru_cache(maxsize=1 << 16)
def _checksum(address: str) -> str:
    return str(to_checksum_address(address))


def _needs_time(raw: RawLog) -> bool:
    spec = _specs().get(raw.topics[0]) if raw.topics else None
    return spec is not None and spec.name in {"ContactLinked", "RootAnchored"}


def _range_problem(exc: ChainUnavailable) -> bool:
    """Whether a smaller block range may succeed: the node refused it or took too long."""
    cause = exc.__cause__
    return isinstance(exc, QueryRefused) or isinstance(cause, requests.Timeout | TimeoutError)


# ----- projecting events onto state -----


Key = tuple[Any, ...]


@dataclass
class _Fold:
    """The state of every key a chunk touches, folded event by event."""

    conn: Connection
    state: dict[str, dict[Key, dict[str, Any]]] = field(default_factory=dict)
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def load(self, entity: Entity, keys: Iterable[Key]) -> None:
        wanted = list(dict.fromkeys(keys))
        known = self.state.setdefault(entity.name, {})
        self.history.setdefault(entity.name, [])
        for rows in _select_by_keys(self.conn, entity.current_table, entity.key, wanted):
            for row in rows:
                known[tuple(row[k] for k in entity.key)] = dict(row)

    def get(self, entity: Entity, key: Key) -> dict[str, Any]:
        found = self.state[entity.name].get(key)
        return dict(entity.empty) if found is None else {f: found[f] for f in entity.fields}

    def put(
        self, entity: Entity, key: Key, fields: dict[str, Any], position: dict[str, Any]
    ) -> None:
        row = {**dict(zip(entity.key, key, strict=True)), **fields, **position}
        self.state[entity.name][key] = row
        self.history[entity.name].append(row)


def _keys(event: Event) -> list[tuple[Entity, Key]]:
    """The state an event changes (for loading before folding)."""
    a = event.args
    match event.name:
        case "CompanyRegistered" | "CompanySuspended" | "CompanyReinstated":
            return [(COMPANY, (a["companyId"],))] if a["companyId"] < _MAX_DB_ID else []
        case "GrantSet" | "GrantRevoked":
            if a["companyId"] >= _MAX_DB_ID:
                return []
            return [(GRANT, (a["consumer"], a["companyId"], a["channel"]))]
        case "AllGrantsRevoked" | "GlobalCapSet":
            return [(CONSUMER, (a["consumer"],))]
        case "ContactLinked":
            found = [(LINK, (a["commitment"].hex(),)), (CONSUMER, (a["consumer"],))]
            return [*found, (CONSUMER, (a["previousConsumer"],))]
        case "ContactUnlinked":
            return [(LINK, (a["commitment"].hex(),)), (CONSUMER, (a["consumer"],))]
        case "RootAnchored":
            return [(ANCHOR, (a["logId"],))] if a["logId"] < _MAX_DB_ID else []
    return []  # role administration and other OpenZeppelin events: raw log only


def _fold(fold: _Fold, event: Event, position: dict[str, Any], timestamp: int | None) -> None:
    """Applies one event exactly as the contract changed its storage."""
    a = event.args
    key: Key
    state: dict[str, Any]
    match event.name:
        case "CompanyRegistered" if a["companyId"] < _MAX_DB_ID:
            state = {"admin": a["admin"], "name": a["name"], "status": int(CompanyStatus.ACTIVE)}
            fold.put(COMPANY, (a["companyId"],), state, position)
        case "CompanySuspended" | "CompanyReinstated" if a["companyId"] < _MAX_DB_ID:
            key = (a["companyId"],)
            status = (
                CompanyStatus.SUSPENDED
                if event.name == "CompanySuspended"
                else CompanyStatus.ACTIVE
            )
            fold.put(COMPANY, key, {**fold.get(COMPANY, key), "status": int(status)}, position)
        case "GrantSet" if a["companyId"] < _MAX_DB_ID:
            state = {
                "max_contacts": a["maxContacts"],
                "period": a["period"],
                "valid_from": a["validFrom"],
                "valid_until": a["validUntil"],
                "hours_mask": a["hoursMask"],
                "days_mask": a["daysMask"],
                "notice_hash": a["noticeHash"].hex(),
                "version": a["version"],
                "epoch": a["epoch"],
            }
            fold.put(GRANT, (a["consumer"], a["companyId"], a["channel"]), state, position)
        case "GrantRevoked" if a["companyId"] < _MAX_DB_ID:
            # The contract zeroes maxContacts and moves the version; the other fields stay.
            key = (a["consumer"], a["companyId"], a["channel"])
            state = {**fold.get(GRANT, key), "max_contacts": 0, "version": a["version"]}
            fold.put(GRANT, key, state, position)
        case "AllGrantsRevoked":
            key = (a["consumer"],)
            fold.put(CONSUMER, key, {**fold.get(CONSUMER, key), "epoch": a["epoch"]}, position)
        case "GlobalCapSet":
            key = (a["consumer"],)
            state = {
                **fold.get(CONSUMER, key),
                "cap_max": a["maxContacts"],
                "cap_period": a["period"],
            }
            fold.put(CONSUMER, key, state, position)
        case "ContactLinked":
            consumer, previous = a["consumer"], a["previousConsumer"]
            linked = {
                "consumer": consumer,
                "previous_consumer": None if int(previous, 16) == 0 else previous,
                "linked_at": timestamp or 0,
            }
            fold.put(LINK, (a["commitment"].hex(),), linked, position)
            if previous != consumer:
                # A reassigned contact: the previous holder's grants no longer reach it.
                if int(previous, 16) != 0:
                    _add_links(fold, previous, -1, position)
                _add_links(fold, consumer, +1, position)
        case "ContactUnlinked":
            state = {"consumer": None, "previous_consumer": a["consumer"], "linked_at": 0}
            fold.put(LINK, (a["commitment"].hex(),), state, position)
            _add_links(fold, a["consumer"], -1, position)
        case "RootAnchored" if a["logId"] < _MAX_DB_ID:
            state = {
                "root": a["root"].hex(),
                "tree_size": a["treeSize"],
                "anchored_at": timestamp or 0,
            }
            fold.put(ANCHOR, (a["logId"],), state, position)


def _add_links(fold: _Fold, consumer: str, delta: int, position: dict[str, Any]) -> None:
    key = (consumer,)
    current = fold.get(CONSUMER, key)
    fold.put(CONSUMER, key, {**current, "link_count": current["link_count"] + delta}, position)


def _project(
    conn: Connection,
    events: Sequence[tuple[RawLog, Event]],
    headers: dict[int, BlockHeader],
    known: set[tuple[str, int]],
) -> int:
    """Writes a chunk's events: raw logs, history rows and the resulting current state."""
    fresh = [(lg, ev) for lg, ev in events if (lg.tx_hash.hex(), lg.log_index) not in known]
    if not fresh:
        return 0
    fold = _Fold(conn)
    wanted: dict[str, list[Key]] = {e.name: [] for e in ENTITIES}
    for _, event in fresh:
        for entity, key in _keys(event):
            wanted[entity.name].append(key)
    for entity in ENTITIES:
        fold.load(entity, wanted[entity.name])
    logs: list[dict[str, Any]] = []
    for raw, event in fresh:
        tx_hash = raw.tx_hash.hex()
        position = {
            "block_number": raw.block_number,
            "log_index": raw.log_index,
            "tx_hash": tx_hash,
        }
        timestamp = raw.block_timestamp
        if timestamp is None and raw.block_number in headers:
            timestamp = headers[raw.block_number].timestamp
        _fold(fold, event, position, timestamp)
        logs.append(
            {
                "tx_hash": tx_hash,
                "log_index": raw.log_index,
                "block_number": raw.block_number,
                "block_hash": raw.block_hash.hex(),
                "event": event.name,
                "args": json.dumps(event.args, default=_json_bytes, separators=(",", ":")),
            }
        )
    for entity in ENTITIES:
        history = fold.history[entity.name]
        if not history:
            continue
        touched = list(dict.fromkeys(tuple(r[k] for k in entity.key) for r in history))
        _delete_by_keys(conn, entity.current_table, entity.key, touched)
        conn.execute(insert(entity.current_table), [fold.state[entity.name][k] for k in touched])
        conn.execute(insert(entity.history_table), history)
    conn.execute(insert(_LOGS), logs)
    return len(fresh)


def _known(conn: Connection, logs: Sequence[RawLog]) -> set[tuple[str, int]]:
    """(tx hash, log index) of the chunk's logs that are already indexed."""
    if not logs:
        return set()
    low, high = logs[0].block_number, logs[-1].block_number
    rows = conn.execute(
        select(_LOGS.c.tx_hash, _LOGS.c.log_index).where(
            _LOGS.c.block_number >= low, _LOGS.c.block_number <= high
        )
    )
    return {(str(tx), int(index)) for tx, index in rows}


def _json_bytes(value: object) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# ----- rollback, reset, checkpoint -----


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


_LOGS = _table(LogRow)
_BLOCKS = _table(BlockRow)
_CHECKPOINT = _table(CheckpointRow)


def _roll_back_to(conn: Connection, fork: int) -> None:
    """Deletes everything after block ``fork`` and recomputes the current state it changed."""
    for entity in ENTITIES:
        history = entity.history_table
        key_columns = [history.c[k] for k in entity.key]
        touched = [
            tuple(row)
            for row in conn.execute(
                select(*key_columns).where(history.c.block_number > fork).distinct()
            )
        ]
        conn.execute(delete(history).where(history.c.block_number > fork))
        _delete_by_keys(conn, entity.current_table, entity.key, touched)
        for key in touched:
            latest = (
                conn.execute(
                    select(history)
                    .where(*(c == v for c, v in zip(key_columns, key, strict=True)))
                    .order_by(history.c.block_number.desc(), history.c.log_index.desc())
                    .limit(1)
                )
                .mappings()
                .first()
            )
            if latest is not None:
                conn.execute(insert(entity.current_table), [dict(latest)])
    conn.execute(delete(_LOGS).where(_LOGS.c.block_number > fork))
    conn.execute(delete(_BLOCKS).where(_BLOCKS.c.number > fork))


def _reset(conn: Connection) -> None:
    for entity in ENTITIES:
        conn.execute(delete(entity.history_table))
        conn.execute(delete(entity.current_table))
    for table in (_LOGS, _BLOCKS, _CHECKPOINT):
        conn.execute(delete(table))


def _store_blocks(conn: Connection, headers: Sequence[BlockHeader], *, keep_from: int) -> None:
    if headers:
        numbers = [h.number for h in headers]
        conn.execute(delete(_BLOCKS).where(_BLOCKS.c.number.in_(numbers)))
        rows = [
            {
                "number": h.number,
                "hash": h.hash.hex(),
                "parent_hash": h.parent_hash.hex(),
                "timestamp": h.timestamp,
            }
            for h in headers
        ]
        conn.execute(insert(_BLOCKS), rows)
        # The checkpoint block always stays, however far behind the head it is.
        keep_from = min(keep_from, max(numbers))
    # Older blocks are beyond any reorg we look for.
    conn.execute(delete(_BLOCKS).where(_BLOCKS.c.number < keep_from))


def _read_checkpoint(conn: Connection, *, lock: bool = False) -> dict[str, Any] | None:
    """The checkpoint row; with ``lock``, locked for the rest of the transaction (PostgreSQL:
    SQLite's immediate transactions already hold the write lock)."""
    query = select(_CHECKPOINT).where(_CHECKPOINT.c.id == 1)
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    return None if row is None else dict(row)


def _write_checkpoint(conn: Connection, checkpoint: Checkpoint, address: str, start: int) -> None:
    conn.execute(delete(_CHECKPOINT))
    conn.execute(
        insert(_CHECKPOINT),
        [
            {
                "id": 1,
                "contract": address,
                "start_block": start,
                "block_number": checkpoint.block_number,
                "block_hash": checkpoint.block_hash.hex(),
                "block_timestamp": checkpoint.block_timestamp,
                "synced_at": checkpoint.synced_at,
            }
        ],
    )


def _checkpoint(row: dict[str, Any] | None) -> Checkpoint | None:
    if row is None:
        return None
    return Checkpoint(
        row["block_number"],
        bytes.fromhex(row["block_hash"]),
        row["block_timestamp"],
        row["synced_at"],
    )


def _same(a: Checkpoint | None, b: Checkpoint | None) -> bool:
    """Whether two checkpoints name the same block (when they were synced does not matter)."""
    if a is None or b is None:
        return a is b
    return (a.block_number, a.block_hash) == (b.block_number, b.block_hash)


def _where_keys(table: Table, key: tuple[str, ...], batch: Sequence[Key]) -> Any:
    columns = [table.c[k] for k in key]
    if len(columns) == 1:
        return columns[0].in_([k[0] for k in batch])
    return tuple_(*columns).in_(batch)


def _select_by_keys(
    conn: Connection, table: Table, key: tuple[str, ...], keys: Sequence[Key]
) -> Iterable[Sequence[Any]]:
    for start in range(0, len(keys), _IN_BATCH):
        batch = keys[start : start + _IN_BATCH]
        yield conn.execute(select(table).where(_where_keys(table, key, batch))).mappings().all()


def _delete_by_keys(
    conn: Connection, table: Table, key: tuple[str, ...], keys: Sequence[Key]
) -> None:
    for start in range(0, len(keys), _IN_BATCH):
        batch = keys[start : start + _IN_BATCH]
        conn.execute(delete(table).where(_where_keys(table, key, batch)))
