"""List files: one number a line, a CSV column, or the FTC's DNC flat file, read into numbers.

A bad line is counted, never raised: registries ship files with a few malformed lines, and one
of them must not stop the import of twenty million good ones. Only what makes the whole file
unreadable (an unknown CSV column, a CSV field over the csv module's limit) refuses it.

Example:
    >>> parsed = parse_numbers(["202,4561111", "bad"], fmt=ListFormat.DNC, default_region="US")
    >>> (parsed.additions.tolist(), parsed.invalid_lines)
    ([12024561111], [2])
"""

from __future__ import annotations

import array
import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from ledger.domain.errors import InvalidList
from ledger.lists.arrays import Numbers, sorted_unique
from ledger.lists.normalise import CHUNK, normalise_chunks

_INVALID_SAMPLE = 20
# NANP: area code and exchange both start with 2-9 (the US registry only holds such numbers).
_NANP_AREA = re.compile(r"^[2-9]\d{2}$")
_NANP_LOCAL = re.compile(r"^[2-9]\d{6}$")
_DNC_ADD = frozenset({"A", "ADD", "ADDED"})
_DNC_REMOVE = frozenset({"D", "DEL", "DELETE", "DELETED"})

Cells = Iterator[tuple[int, str | None]]  # (1-based line number, the number's text or None)


class ListFormat(StrEnum):
    LINES = "lines"  # one number a line, in any usual format; blank and "#" lines skipped
    CSV = "csv"  # one column of a CSV file holds the number
    DNC = "dnc"  # the FTC's flat file: "AAA,NNNNNNN" (area code, number), change flag optional


class ImportMode(StrEnum):
    FULL = "full"  # the file is the whole list: it replaces the current snapshot
    DELTA = "delta"  # the file's numbers are added (DNC lines flagged "D" are removed)
    REMOVE = "remove"  # the file's numbers are removed from the current snapshot


@dataclass(frozen=True, slots=True)
class ParsedList:
    """Numbers read from a file, before they meet the current snapshot."""

    additions: Numbers
    removals: Numbers
    lines: int
    invalid: int
    invalid_lines: list[int] = field(default_factory=list)  # first few, 1-based


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

    Raises:
        InvalidList: no CSV column of that name, or a CSV the csv module cannot read.
    """
    tally = _Tally(removing=mode is ImportMode.REMOVE)
    cells = _guarded(_cells(lines, fmt, column, header))
    if fmt is ListFormat.DNC:
        _read_dnc(cells, tally, full=mode is ImportMode.FULL)
    else:
        _read_phone_numbers(cells, tally, default_region=default_region, workers=workers)
    return tally.parsed()


@dataclass(slots=True)
class _Tally:
    """What a file has yielded so far."""

    removing: bool  # every valid number is a removal, whatever its line says
    adds: array.array[int] = field(default_factory=lambda: array.array("Q"))
    removes: array.array[int] = field(default_factory=lambda: array.array("Q"))
    lines: int = 0
    invalid: int = 0
    # Line numbers only, and only the first few: a line's content may be a phone number, and
    # a broken file of millions of lines must not produce a report of millions.
    invalid_lines: list[int] = field(default_factory=list)

    def reject(self, line: int) -> None:
        self.invalid += 1
        if len(self.invalid_lines) < _INVALID_SAMPLE:
            self.invalid_lines.append(line)

    def keep(self, value: int, *, removal: bool) -> None:
        (self.removes if removal or self.removing else self.adds).append(value)

    def keep_all(self, values: Numbers) -> None:
        (self.removes if self.removing else self.adds).frombytes(values.tobytes())

    def parsed(self) -> ParsedList:
        return ParsedList(
            additions=sorted_unique(self.adds),
            removals=sorted_unique(self.removes),
            lines=self.lines,
            invalid=self.invalid,
            invalid_lines=sorted(self.invalid_lines),
        )


def _read_dnc(cells: Cells, tally: _Tally, *, full: bool) -> None:
    for line, cell in cells:
        tally.lines += 1
        value, removal = (None, False) if cell is None else _dnc_entry(cell)
        if value is None or (removal and full):
            # A full list cannot remove; a flagged line there is a malformed file.
            tally.reject(line)
        else:
            tally.keep(value, removal=removal)


def _read_phone_numbers(cells: Cells, tally: _Tally, *, default_region: str, workers: int) -> None:
    # Each batch starts a pool of processes: several chunks a worker pay for its start, and
    # the bound keeps a huge file's cells from all waiting in memory at once.
    batch = CHUNK * max(workers, 1) * 4
    pending: list[tuple[int, str]] = []  # (line number, cell) waiting for phonenumbers
    for line, cell in cells:
        tally.lines += 1
        if cell is None:
            tally.reject(line)
            continue
        pending.append((line, cell))
        if len(pending) >= batch:
            _normalise_pending(pending, tally, default_region=default_region, workers=workers)
            pending.clear()
    _normalise_pending(pending, tally, default_region=default_region, workers=workers)


def _normalise_pending(
    pending: list[tuple[int, str]], tally: _Tally, *, default_region: str, workers: int
) -> None:
    chunks = [pending[i : i + CHUNK] for i in range(0, len(pending), CHUNK)]
    results = normalise_chunks([[c for _, c in ch] for ch in chunks], default_region, workers)
    for chunk, (values, bad) in zip(chunks, results, strict=True):
        for i in bad:
            tally.reject(chunk[i][0])
        tally.keep_all(values[values != 0])


def _cells(lines: Iterable[str], fmt: ListFormat, column: int | str, header: bool) -> Cells:
    """(1-based line number, the cell holding the number or None) for every data line."""
    if fmt is ListFormat.CSV:
        yield from _csv_cells(lines, column, header)
        return
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        yield number, text


def _csv_cells(lines: Iterable[str], column: int | str, header: bool) -> Cells:
    rows = csv.reader(lines)
    names = next(rows, []) if header or isinstance(column, str) else []
    index = column if isinstance(column, int) else _column_named(names, column)
    for row in rows:
        if not row or all(not c.strip() for c in row):
            continue
        cell = row[index].strip() if index < len(row) else ""
        # The reader's line number, not a row count: a quoted cell may span lines.
        yield rows.line_num, cell or None


def _column_named(names: list[str], column: str) -> int:
    wanted = column.strip().lower()
    found = [i for i, n in enumerate(names) if n.strip().lower() == wanted]
    if not found:
        raise InvalidList(f"no column named {column!r}")
    return found[0]


def _guarded(cells: Cells) -> Cells:
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
