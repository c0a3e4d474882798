"""Importing a list: a full copy or a delta of a registry becomes the new current snapshot.

Example:
    >>> spec = ListImport(region="US", fmt=ListFormat.DNC)
    >>> report = import_file(Path("dnc.txt"), spec, cache=cache)
    >>> (report.snapshot.version, report.created)
    ('US-20261101T000000Z-...', True)
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ledger.domain.errors import InvalidList
from ledger.lists.arrays import Numbers, apply_delta, member
from ledger.lists.cache import OppositionCache
from ledger.lists.files import digest, save_snapshot
from ledger.lists.formats import ImportMode, ListFormat, ParsedList, parse_numbers
from ledger.lists.store import OppositionListBase, record_snapshot

DAY = 86400
# Legal maximum age of the copy a caller screens against, per region.
MAX_AGE_DAYS: dict[str, int] = {
    "US": 31,  # 16 CFR 310.4(b)(3)(iv): registry accessed no more than 31 days before the call
    "GB": 28,  # TPS: screened at most 28 days before the call (ICO guidance under PECR reg. 21)
    "FR": 30,  # Bloctel: the professional's file is screened at least every 30 days
}
_CLOCK_SKEW = 300  # seconds: the clock that stamped a copy may run a little ahead of ours
_REGION = re.compile(r"^[A-Z]{2}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class ListImport:
    """Which list a file holds, how to read it, and how it changes the current snapshot.

    Example:
        >>> ListImport(region="GB", fmt=ListFormat.CSV, column="number")
    """

    # The national list's region (ISO 3166 alpha-2); for a company list, the region assumed
    # for numbers written without a country code.
    region: str
    fmt: ListFormat
    mode: ImportMode = ImportMode.FULL  # a full list, or a delta on the current snapshot
    column: int | str = 0  # CSV: 0-based index or header name
    header: bool = False  # CSV with a header row
    # Seconds the list stays usable (default: the region's legal maximum; company lists have
    # none).
    max_age: int | None = None
    company_id: int | None = None  # the company's own do-not-call list, not a national one
    workers: int = 1  # processes that parse numbers


@dataclass(frozen=True, slots=True)
class ImportReport:
    snapshot: OppositionListBase
    invalid_lines: list[int]  # line numbers only: a line's content may be a phone number
    created: bool  # False when the same snapshot was already imported


def default_max_age(region: str) -> int | None:
    """The legal maximum age in seconds of a national list, or None if none is known."""
    days = MAX_AGE_DAYS.get(region)
    return None if days is None else days * DAY


def import_file(
    path: Path,
    spec: ListImport,
    *,
    cache: OppositionCache,
    source: str | None = None,
    fetched_at: int | None = None,
) -> ImportReport:
    """Imports a list file (see ``import_lines``); the source defaults to the file's name.

    The fetch time defaults to the file's modification time, not the import time: importing
    an old download must not make the list look fresh.
    """
    when = int(path.stat().st_mtime) if fetched_at is None else fetched_at
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
        return import_lines(handle, spec, cache=cache, source=source or path.name, fetched_at=when)


def import_lines(
    lines: Iterable[str],
    spec: ListImport,
    *,
    cache: OppositionCache,
    source: str,
    fetched_at: int,
) -> ImportReport:
    """Imports a full list or a delta and makes it the current snapshot.

    Args:
        lines: the list's lines.
        spec: which list they are, how to read them, full list or delta.
        cache: the lists the snapshot joins; it sees the new snapshot at once.
        source: where the list came from (a file name, a registry download id).
        fetched_at: unix time the registry copy was taken: its age is judged from it.

    Returns:
        The snapshot's metadata and the numbers of the first invalid lines.

    Raises:
        InvalidList: unknown region without a maximum age, a fetch time in the future, a
            full list without a single valid number, a delta without a list to apply to
            or older than it.
    """
    now = int(time.time())
    spec = _checked(spec, fetched_at=fetched_at, now=now)
    parsed = parse_numbers(
        lines,
        fmt=spec.fmt,
        default_region=spec.region,
        mode=spec.mode,
        column=spec.column,
        header=spec.header,
        workers=spec.workers,
    )
    base = cache.current_snapshot(region=spec.region, company_id=spec.company_id)
    if spec.mode is ImportMode.FULL:
        change = _replacement(cache, base, parsed)
    else:
        change = _delta(cache, base, parsed, fetched_at=fetched_at)
    meta = _metadata(spec, change, parsed, source=source, fetched_at=fetched_at, now=now)
    save_snapshot(directory=cache.directory, version=meta.version, numbers=change.numbers)
    created = record_snapshot(engine=cache.engine, meta=meta)
    cache.refresh()
    return ImportReport(meta, parsed.invalid_lines, created)


@dataclass(frozen=True, slots=True)
class _Change:
    """The numbers of a new snapshot and how they differ from the current one."""

    numbers: Numbers
    added: int
    removed: int
    parent: OppositionListBase | None  # the snapshot a delta was applied to


def _checked(spec: ListImport, *, fetched_at: int, now: int) -> ListImport:
    """``spec`` with its region in capitals and its maximum age, if the import may go ahead."""
    region = spec.region.upper()
    if not _REGION.match(region):
        raise InvalidList("region must be an ISO 3166 alpha-2 code", region=region)
    if fetched_at > now + _CLOCK_SKEW:
        raise InvalidList("fetch time is in the future", fetched_at=fetched_at)
    max_age = spec.max_age
    if spec.company_id is None and max_age is None:
        max_age = default_max_age(region)
        if max_age is None:
            raise InvalidList(f"no legal maximum age known for {region}: give one")
    return replace(spec, region=region, max_age=max_age)


def _replacement(
    cache: OppositionCache, base: OppositionListBase | None, parsed: ParsedList
) -> _Change:
    if parsed.additions.size == 0:
        raise InvalidList(f"no valid number in {parsed.lines} lines", lines=parsed.lines)
    numbers = parsed.additions
    old = cache.load(base) if base is not None else np.zeros(0, dtype=np.uint64)
    added = int((~member(old, numbers)).sum())
    removed = int(old.size - (numbers.size - added))
    return _Change(numbers, added, removed, parent=None)


def _delta(
    cache: OppositionCache, base: OppositionListBase | None, parsed: ParsedList, *, fetched_at: int
) -> _Change:
    if base is None:
        raise InvalidList("a delta needs a full list to apply to: import one first")
    if fetched_at < base.fetched_at:
        raise InvalidList(f"delta fetched before its base {base.version}")
    numbers, added, removed = apply_delta(cache.load(base), parsed.additions, parsed.removals)
    return _Change(numbers, added, removed, parent=base)


def _metadata(
    spec: ListImport,
    change: _Change,
    parsed: ParsedList,
    *,
    source: str,
    fetched_at: int,
    now: int,
) -> OppositionListBase:
    max_age = spec.max_age
    if max_age is None and change.parent is not None:
        max_age = change.parent.max_age  # a delta amends its base: it lives as long
    hashed = digest(change.numbers)
    stamp = datetime.fromtimestamp(fetched_at, UTC).strftime("%Y%m%dT%H%M%SZ")
    owner = spec.region if spec.company_id is None else f"C{spec.company_id}"
    return OppositionListBase(
        version=f"{owner}-{stamp}-{hashed[:10]}",
        region=spec.region,
        company_id=spec.company_id,
        source=source,
        fetched_at=fetched_at,
        max_age=max_age,
        count=int(change.numbers.size),
        added=change.added,
        removed=change.removed,
        lines=parsed.lines,
        invalid=parsed.invalid,
        parent=None if change.parent is None else change.parent.version,
        digest=hashed,
        imported_at=now,
    )
