"""Opposition lists: Bloctel, the US Do-Not-Call registry, the UK TPS, and companies' own lists.

A snapshot is a sorted array of E.164 numbers as unsigned 64-bit integers (15 digits always
fit), written once as ``.npy`` in the data directory and memory-mapped on load: 20 million
numbers take 160 MB of file-backed pages the processes of one machine share, and membership
is a binary search (``np.searchsorted``), vectorised for bulk scrubs. Metadata (region,
source, fetch time, maximum age, counts) lives in SQL, so every process sees the same current
version. Snapshots are immutable: a delta writes a new version whose parent is the old one,
so the version a decision records names exactly the numbers it consulted.

Example:
    >>> cache = OppositionCache(engine=engine, directory=Path(".quota-ledger/lists"))
    >>> cache.import_file(Path("dnc.txt"), region="US", fmt=ListFormat.DNC)
    >>> cache.status(contact, company_id=1, now=int(time.time())).listed
"""

from __future__ import annotations

import array
import csv
import hashlib
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import numpy.typing as npt
from sqlalchemy import BigInteger, func
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel, col, select

from ledger.db.engine import transaction
from ledger.domain import contacts
from ledger.domain.decision import OppositionStatus
from ledger.domain.errors import InvalidContact, InvalidList, ListUnavailable
from ledger.settings import Settings

Numbers = npt.NDArray[np.uint64]

DAY = 86400
# Legal maximum age of the copy a caller screens against, per region.
MAX_AGE_DAYS: dict[str, int] = {
    "US": 31,  # 16 CFR 310.4(b)(3)(iv): registry accessed no more than 31 days before the call
    "GB": 28,  # TPS: screened at most 28 days before the call (ICO guidance under PECR reg. 21)
    "FR": 30,  # Bloctel: the professional's file is screened at least every 30 days
}
_SORT_QUERIES_FROM = 4096  # bulk lookups at least this big sort their queries first
_CHUNK = 100_000  # lines normalised per task: big enough to amortise a worker round trip
_INVALID_SAMPLE = 20
_REGION = re.compile(r"^[A-Z]{2}$")
# NANP: area code and exchange both start with 2-9 (the US registry only holds such numbers).
_NANP_AREA = re.compile(r"^[2-9]\d{2}$")
_NANP_LOCAL = re.compile(r"^[2-9]\d{6}$")
_DNC_ADD = frozenset({"A", "ADD", "ADDED"})
_DNC_REMOVE = frozenset({"D", "DEL", "DELETE", "DELETED"})


class ListFormat(StrEnum):
    LINES = "lines"  # one number a line, in any usual format; blank and "#" lines skipped
    CSV = "csv"  # one column of a CSV file holds the number
    DNC = "dnc"  # the FTC's flat file: "AAA,NNNNNNN" (area code, number), change flag optional


class ImportMode(StrEnum):
    FULL = "full"  # the file is the whole list: it replaces the current snapshot
    DELTA = "delta"  # the file's numbers are added (DNC lines flagged "D" are removed)
    REMOVE = "remove"  # the file's numbers are removed from the current snapshot


class OppositionListBase(SQLModel):
    version: str = Field(unique=True, index=True)
    # A national list's region; for a company list, the region its numbers were parsed with.
    region: str
    company_id: int | None = Field(default=None, sa_type=BigInteger, index=True)
    source: str
    fetched_at: int = Field(sa_type=BigInteger)  # unix seconds the registry copy was taken
    max_age: int | None = Field(default=None, sa_type=BigInteger)  # seconds; None: no limit
    count: int = Field(sa_type=BigInteger)  # numbers in the snapshot
    added: int = Field(sa_type=BigInteger)  # numbers new against the parent
    removed: int = Field(sa_type=BigInteger)  # numbers of the parent no longer listed
    lines: int = Field(sa_type=BigInteger)  # lines read from the source file
    invalid: int = Field(sa_type=BigInteger)  # lines that held no valid number
    parent: str | None = None  # the snapshot a delta was applied to
    digest: str  # SHA-256 of the array's bytes: checked when a process loads the file
    imported_at: int = Field(sa_type=BigInteger)


class OppositionList(OppositionListBase, table=True):
    """One immutable snapshot; the newest of its region (or company) is current."""

    __tablename__ = "opposition_list"

    id: int | None = Field(default=None, primary_key=True)


@dataclass(frozen=True, slots=True)
class ParsedList:
    """Numbers read from a file, before they meet the current snapshot."""

    additions: Numbers
    removals: Numbers
    lines: int
    invalid: int
    invalid_lines: list[int] = field(default_factory=list)  # first few, 1-based


@dataclass(frozen=True, slots=True)
class ImportReport:
    snapshot: OppositionListBase
    invalid_lines: list[int]  # line numbers only: a line's content may be a phone number
    created: bool  # False when the same snapshot was already imported


def default_max_age(region: str) -> int | None:
    """The legal maximum age in seconds of a national list, or None if none is known."""
    days = MAX_AGE_DAYS.get(region)
    return None if days is None else days * DAY


def member(listed: Numbers, queries: Numbers) -> npt.NDArray[np.bool_]:
    """Which of ``queries`` are in the sorted array ``listed`` (vectorised binary search)."""
    # Mixed signed/unsigned 64-bit operands would be compared as floats: keep both unsigned.
    queries = np.asarray(queries, dtype=np.uint64)
    if listed.size == 0 or queries.size == 0:
        return np.zeros(queries.shape, dtype=np.bool_)
    if queries.size < _SORT_QUERIES_FROM:
        at = np.searchsorted(listed, queries)
        np.minimum(at, listed.size - 1, out=at)
        return np.asarray(listed[at] == queries)
    # Sorted queries walk the list in order: neighbouring searches share cache lines and
    # pages, which makes a large bulk lookup several times faster than in arrival order.
    order = np.argsort(queries, kind="stable")
    ordered = queries[order]
    at = np.searchsorted(listed, ordered)
    np.minimum(at, listed.size - 1, out=at)
    found = np.empty(queries.shape, dtype=np.bool_)
    found[order] = listed[at] == ordered
    return found


def normalise_many(
    raws: Sequence[str], *, default_region: str, workers: int = 1
) -> tuple[Numbers, npt.NDArray[np.bool_]]:
    """E.164 integers of ``raws`` and a mask of the valid ones (invalid entries hold 0).

    Parsing is what costs (phonenumbers, ~20 µs a number); ``workers`` > 1 spreads the chunks
    over processes.
    """
    chunks = [list(raws[i : i + _CHUNK]) for i in range(0, len(raws), _CHUNK)]
    parts = [values for values, _ in _map_chunks(chunks, default_region, workers)]
    out: Numbers = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
    return out, out != 0


def parse_numbers(
    lines: Iterable[str],
    *,
    fmt: ListFormat,
    default_region: str,
    mode: ImportMode = ImportMode.FULL,
    column: int | str = 0,
    header: bool = False,
    workers: int = 1,
) -> ParsedList:
    """Reads a list file's lines into sorted, de-duplicated additions and removals.

    Args:
        lines: the file's lines (with or without line ends).
        fmt: lines, CSV or the FTC's DNC flat file.
        default_region: region of numbers written without a country code.
        mode: in ``REMOVE`` mode every number is a removal; DNC lines may carry a change flag.
        column: CSV only: the 0-based column index, or a header name (implies ``header``).
        header: CSV only: the first row names the columns.
        workers: processes that parse numbers (the DNC format needs none).

    Returns:
        The numbers and how many lines held no valid number (never raises on a bad line).
    """
    adds, removes = array.array("Q"), array.array("Q")
    invalid: list[int] = []
    invalid_count = 0
    total = 0
    pending: list[tuple[int, str]] = []  # (line number, cell) waiting for phonenumbers
    remove_all = mode is ImportMode.REMOVE

    def flush() -> None:
        nonlocal invalid_count
        if not pending:
            return
        chunks = [pending[i : i + _CHUNK] for i in range(0, len(pending), _CHUNK)]
        results = _map_chunks([[c for _, c in ch] for ch in chunks], default_region, workers)
        for chunk, (values, bad) in zip(chunks, results, strict=True):
            for i in bad:
                invalid_count += 1
                if len(invalid) < _INVALID_SAMPLE:
                    invalid.append(chunk[i][0])
            good = values[values != 0]
            (removes if remove_all else adds).frombytes(good.tobytes())
        pending.clear()

    for number, cell in _guarded(_cells(lines, fmt, column, header)):
        total += 1
        if cell is None:
            invalid_count += 1
            if len(invalid) < _INVALID_SAMPLE:
                invalid.append(number)
            continue
        if fmt is ListFormat.DNC:
            value, removal = _dnc_entry(cell)
            if value is None or (removal and mode is ImportMode.FULL):
                # A full list cannot remove; a flagged line there is a malformed file.
                invalid_count += 1
                if len(invalid) < _INVALID_SAMPLE:
                    invalid.append(number)
                continue
            (removes if removal or remove_all else adds).append(value)
            continue
        pending.append((number, cell))
        if len(pending) >= _CHUNK * max(workers, 1) * 4:
            flush()
    flush()
    return ParsedList(
        additions=_sorted_unique(adds),
        removals=_sorted_unique(removes),
        lines=total,
        invalid=invalid_count,
        invalid_lines=sorted(invalid),
    )


class OppositionCache:
    """Imports list snapshots and answers membership from memory-mapped arrays.

    Metadata is re-read from the database at most every ``refresh_seconds``, so an import by
    another process (the CLI) is seen within that time; an import through this object is seen
    at once. Staleness needs no refresh: it is judged from the fetch time at each decision.

    Example:
        >>> cache = OppositionCache(engine=engine, directory=settings.data_dir / "lists")
        >>> cache.import_file(Path("tps.txt"), region="GB", fmt=ListFormat.LINES)
        >>> cache.status(parse_phone("020 7946 0000", default_region="GB"), company_id=1, now=t)
    """

    def __init__(self, *, engine: Engine, directory: Path, refresh_seconds: float = 5.0) -> None:
        self.engine = engine
        self.directory = directory
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._current: dict[tuple[str, str | int], OppositionListBase] = {}
        self._arrays: dict[str, Numbers] = {}
        self._refreshed_at = float("-inf")

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine) -> OppositionCache:
        """The cache of the data directory's ``lists/`` folder."""
        return cls(
            engine=engine,
            directory=settings.data_dir / "lists",
            refresh_seconds=settings.list_refresh_seconds,
        )

    # ----- imports -----

    def import_file(
        self,
        path: Path,
        *,
        region: str,
        fmt: ListFormat,
        mode: ImportMode = ImportMode.FULL,
        column: int | str = 0,
        header: bool = False,
        source: str | None = None,
        fetched_at: int | None = None,
        max_age: int | None = None,
        company_id: int | None = None,
        workers: int = 1,
    ) -> ImportReport:
        """Imports a list file (see ``import_lines``); the fetch time defaults to its mtime.

        The file's modification time, not the import time: importing an old download must
        not make the list look fresh.
        """
        when = int(path.stat().st_mtime) if fetched_at is None else fetched_at
        with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
            return self.import_lines(
                handle,
                region=region,
                fmt=fmt,
                mode=mode,
                column=column,
                header=header,
                source=source or path.name,
                fetched_at=when,
                max_age=max_age,
                company_id=company_id,
                workers=workers,
            )

    def import_lines(
        self,
        lines: Iterable[str],
        *,
        region: str,
        fmt: ListFormat,
        source: str,
        fetched_at: int,
        mode: ImportMode = ImportMode.FULL,
        column: int | str = 0,
        header: bool = False,
        max_age: int | None = None,
        company_id: int | None = None,
        workers: int = 1,
    ) -> ImportReport:
        """Imports a full list or a delta and makes it the current snapshot.

        Args:
            lines: the list's lines.
            region: the national list's region (ISO 3166 alpha-2); for a company list, the
                region assumed for numbers written without a country code.
            fmt: the file format.
            source: where the list came from (a file name, a registry download id).
            fetched_at: unix time the registry copy was taken: its age is judged from it.
            mode: a full list, or a delta on the current snapshot.
            column: CSV column (0-based index or header name).
            header: CSV with a header row.
            max_age: seconds the list stays usable (default: the region's legal maximum;
                company lists have none).
            company_id: import the company's own do-not-call list instead of a national one.
            workers: processes that parse numbers.

        Returns:
            The snapshot's metadata and the numbers of the first invalid lines.

        Raises:
            InvalidList: unknown region without a maximum age, a fetch time in the future, a
                full list without a single valid number, a delta without a list to apply to
                or older than it.
        """
        region = region.upper()
        now = int(time.time())
        if not _REGION.match(region):
            raise InvalidList("region must be an ISO 3166 alpha-2 code", region=region)
        if fetched_at > now + 300:
            raise InvalidList("fetch time is in the future", fetched_at=fetched_at)
        if company_id is None and max_age is None:
            max_age = default_max_age(region)
            if max_age is None:
                raise InvalidList(f"no legal maximum age known for {region}: give one")
        parsed = parse_numbers(
            lines,
            fmt=fmt,
            default_region=region,
            mode=mode,
            column=column,
            header=header,
            workers=workers,
        )
        base = self._current_meta(region, company_id)
        if mode is ImportMode.FULL:
            if parsed.additions.size == 0:
                raise InvalidList(f"no valid number in {parsed.lines} lines", lines=parsed.lines)
            numbers, parent = parsed.additions, None
            old = self._load(base) if base is not None else np.zeros(0, dtype=np.uint64)
            added = int((~member(old, numbers)).sum())
            removed = int(old.size - (numbers.size - added))
        else:
            if base is None:
                raise InvalidList("a delta needs a full list to apply to: import one first")
            if fetched_at < base.fetched_at:
                raise InvalidList(f"delta fetched before its base {base.version}")
            numbers, added, removed = apply_delta(
                self._load(base), parsed.additions, parsed.removals
            )
            parent = base.version
            if max_age is None:
                max_age = base.max_age
        digest = hashlib.sha256(numbers.tobytes()).hexdigest()
        stamp = datetime.fromtimestamp(fetched_at, UTC).strftime("%Y%m%dT%H%M%SZ")
        owner = region if company_id is None else f"C{company_id}"
        meta = OppositionListBase(
            version=f"{owner}-{stamp}-{digest[:10]}",
            region=region,
            company_id=company_id,
            source=source,
            fetched_at=fetched_at,
            max_age=max_age,
            count=int(numbers.size),
            added=added,
            removed=removed,
            lines=parsed.lines,
            invalid=parsed.invalid,
            parent=parent,
            digest=digest,
            imported_at=now,
        )
        created = self._store(meta, numbers)
        return ImportReport(meta, parsed.invalid_lines, created)

    # ----- lookups -----

    def status(self, contact: contacts.Contact, *, company_id: int) -> OppositionStatus:
        """What the region's list and the company's own list say about ``contact``.

        Staleness is left to the decision, which judges it from the fetch time returned.

        Raises:
            ListUnavailable: a current snapshot's file is missing or damaged.
        """
        if contact.kind is not contacts.ContactKind.PHONE:
            return OppositionStatus()  # the lists hold phone numbers only
        self._refresh_if_due()
        number = np.array([int(contact.value[1:])], dtype=np.uint64)
        national = self._current.get(("region", contact.region or ""))
        company = self._current.get(("company", company_id))
        return OppositionStatus(
            version=None if national is None else national.version,
            listed=national is not None and bool(member(self._load(national), number)[0]),
            fetched_at=None if national is None else national.fetched_at,
            max_age=None if national is None else national.max_age,
            company_version=None if company is None else company.version,
            company_listed=company is not None and bool(member(self._load(company), number)[0]),
        )

    def contains_many(
        self, numbers: Numbers, *, region: str | None = None, company_id: int | None = None
    ) -> npt.NDArray[np.bool_]:
        """Bulk membership of E.164 integers in a region's (or a company's) current list.

        Raises:
            ListUnavailable: no current list for that region or company, or its file is bad.
        """
        self._refresh_if_due()
        key: tuple[str, str | int] = (
            ("company", company_id) if company_id is not None else ("region", region or "")
        )
        meta = self._current.get(key)
        if meta is None:
            raise ListUnavailable(f"{key[0]} {key[1]}", "no list loaded")
        return member(self._load(meta), numbers)

    def current(self) -> list[OppositionListBase]:
        """The current snapshot of every region and company, national lists first."""
        self._refresh_if_due(force=True)
        return sorted(
            self._current.values(),
            key=lambda m: (m.company_id is not None, m.company_id or 0, m.region),
        )

    # ----- internals -----

    def _current_meta(self, region: str, company_id: int | None) -> OppositionListBase | None:
        self._refresh_if_due(force=True)
        if company_id is not None:
            return self._current.get(("company", company_id))
        return self._current.get(("region", region))

    def _refresh_if_due(self, *, force: bool = False) -> None:
        if not force and time.monotonic() - self._refreshed_at < self.refresh_seconds:
            return
        newest_id = func.max(OppositionList.id)
        national = (
            select(newest_id)
            .where(col(OppositionList.company_id).is_(None))
            .group_by(col(OppositionList.region))
        )
        company = (
            select(newest_id)
            .where(col(OppositionList.company_id).is_not(None))
            .group_by(col(OppositionList.company_id))
        )
        with transaction(self.engine) as session:
            ids = [*session.exec(national).all(), *session.exec(company).all()]
            rows = session.exec(select(OppositionList).where(col(OppositionList.id).in_(ids))).all()
            current: dict[tuple[str, str | int], OppositionListBase] = {}
            for row in rows:
                meta = OppositionListBase.model_validate(row, from_attributes=True)
                key: tuple[str, str | int] = (
                    ("region", meta.region)
                    if meta.company_id is None
                    else ("company", meta.company_id)
                )
                current[key] = meta
        with self._lock:
            self._current = current
            live = {m.version for m in current.values()}
            # Drop the mappings of superseded snapshots (their pages go with them).
            self._arrays = {v: a for v, a in self._arrays.items() if v in live}
            self._refreshed_at = time.monotonic()

    def _path(self, version: str) -> Path:
        return self.directory / f"{version}.npy"

    def _load(self, meta: OppositionListBase) -> Numbers:
        loaded = self._arrays.get(meta.version)
        if loaded is not None:
            return loaded
        with self._lock:
            loaded = self._arrays.get(meta.version)
            if loaded is not None:
                return loaded
            path = self._path(meta.version)
            try:
                numbers: Numbers = np.load(path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise ListUnavailable(meta.version, f"{type(exc).__name__}: {exc}") from exc
            if numbers.dtype != np.uint64 or numbers.ndim != 1 or numbers.size != meta.count:
                raise ListUnavailable(meta.version, "file does not match its metadata")
            if hashlib.sha256(numbers.data).hexdigest() != meta.digest:
                raise ListUnavailable(meta.version, "file digest does not match")
            self._arrays[meta.version] = numbers
            return numbers

    def _store(self, meta: OppositionListBase, numbers: Numbers) -> bool:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(meta.version)
        if not path.exists():
            # Written whole, then renamed: a reader never maps a half-written snapshot.
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            with tmp.open("wb") as handle:
                np.save(handle, numbers, allow_pickle=False)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        with transaction(self.engine) as session:
            exists = session.exec(
                select(OppositionList.id).where(OppositionList.version == meta.version)
            ).first()
            if exists is None:
                session.add(OppositionList.model_validate(meta))
        self._refresh_if_due(force=True)
        return exists is None


def apply_delta(base: Numbers, additions: Numbers, removals: Numbers) -> tuple[Numbers, int, int]:
    """(new snapshot, numbers added, numbers removed); a number both added and removed goes.

    Linear in the list size: the sorted base is filtered, then the new numbers are inserted
    at their sorted positions.
    """
    gone = member(base, removals)  # removals actually listed
    kept = base[~member(removals, base)] if removals.size else np.asarray(base)
    fresh = additions[~member(kept, additions)]
    if removals.size:
        fresh = fresh[~member(removals, fresh)]
    merged: Numbers = np.insert(kept, np.searchsorted(kept, fresh), fresh)
    return merged, int(fresh.size), int(gone.sum())


def _sorted_unique(values: array.array[int]) -> Numbers:
    numbers = np.frombuffer(values, dtype=np.uint64).copy() if len(values) else None
    if numbers is None:
        return np.zeros(0, dtype=np.uint64)
    numbers.sort()
    keep = np.empty(numbers.size, dtype=np.bool_)
    keep[0] = True
    np.not_equal(numbers[1:], numbers[:-1], out=keep[1:])
    return numbers[keep]


def _cells(
    lines: Iterable[str], fmt: ListFormat, column: int | str, header: bool
) -> Iterator[tuple[int, str | None]]:
    """(1-based line number, the cell holding the number or None) for every data line."""
    if fmt is ListFormat.CSV:
        rows = csv.reader(lines)
        index = column if isinstance(column, int) else None
        if header or isinstance(column, str):
            names = next(rows, [])
            if isinstance(column, str):
                wanted = column.strip().lower()
                found = [i for i, n in enumerate(names) if n.strip().lower() == wanted]
                if not found:
                    raise InvalidList(f"no column named {column!r}")
                index = found[0]
        assert index is not None
        for row in rows:
            if not row or all(not c.strip() for c in row):
                continue
            cell = row[index].strip() if index < len(row) else ""
            yield rows.line_num, cell or None
        return
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        yield number, text


def _guarded(cells: Iterator[tuple[int, str | None]]) -> Iterator[tuple[int, str | None]]:
    """Turns what the csv module cannot read (an overlong field) into a refusal of the file."""
    try:
        yield from cells
    except csv.Error as exc:
        raise InvalidList(f"unreadable CSV: {exc}") from exc


def _dnc_entry(line: str) -> tuple[int | None, bool]:
    """(E.164 integer or None, is a removal) of one FTC flat-file line.

    Full lists hold "AAA,NNNNNNN"; a change list adds fields, one of them "A" or "D". Bare
    ten-digit numbers are accepted too. The NANP structure is checked here without
    phonenumbers (the registry only holds US numbers, and this runs 20 million times); the
    E.164 form "+1" and ten digits is exactly what ``contacts.parse_phone`` produces, and a
    number it would reject can never be looked up, so keeping one is harmless.
    """
    fields = [f.strip().strip('"') for f in line.split(",")]
    digits = fields[0].replace("-", "").replace(" ", "")
    rest = fields[1:]
    if len(digits) == 3 and rest:
        area, local = digits, rest[0].replace("-", "")
        rest = rest[1:]
    elif len(digits) == 10:
        area, local = digits[:3], digits[3:]
    else:
        return None, False
    if not (_NANP_AREA.match(area) and _NANP_LOCAL.match(local)):
        return None, False
    flags = {f.upper() for f in rest}
    removal = bool(flags & _DNC_REMOVE)
    if removal and flags & _DNC_ADD:
        return None, False
    return int(f"1{area}{local}"), removal


def _normalise_chunk(cells: list[str], default_region: str) -> tuple[Numbers, list[int]]:
    """E.164 integers of ``cells`` (0 where invalid) and the indexes of the invalid ones."""
    out = np.zeros(len(cells), dtype=np.uint64)
    bad = []
    for i, cell in enumerate(cells):
        try:
            out[i] = contacts.e164_number(cell, default_region=default_region)
        except InvalidContact:
            bad.append(i)
    return out, bad


def _map_chunks(
    chunks: list[list[str]], default_region: str, workers: int
) -> list[tuple[Numbers, list[int]]]:
    if workers <= 1 or len(chunks) <= 1:
        return [_normalise_chunk(c, default_region) for c in chunks]
    # "spawn": a forked child of a threaded server may inherit held locks.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        return list(pool.map(_normalise_chunk, chunks, [default_region] * len(chunks)))
