"""Opposition lists: file formats, snapshots and deltas, membership against a reference."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from ledger.domain import contacts
from ledger.domain.errors import InvalidContact, InvalidList, ListUnavailable
from ledger.lists.cache import (
    DAY,
    ImportMode,
    ListFormat,
    OppositionCache,
    apply_delta,
    member,
    normalise_many,
    parse_numbers,
)

NOW = int(time.time())
FETCHED = NOW - DAY
WHITE_HOUSE = 12024561111
NYC = 12125550100


@pytest.fixture
def cache(db_engine: Engine, tmp_path: Path) -> OppositionCache:
    return OppositionCache(engine=db_engine, directory=tmp_path / "lists", refresh_seconds=3600)


def phone(raw: str, region: str = "US") -> contacts.Contact:
    return contacts.parse_phone(raw, default_region=region)


def values(numbers: np.ndarray) -> list[int]:  # type: ignore[type-arg]
    return [int(n) for n in numbers]


@pytest.mark.parametrize(
    ("case", "fmt", "lines", "kw", "adds", "removes", "invalid"),
    [
        (
            "lines in any usual format, duplicates once, comments and blanks skipped",
            ListFormat.LINES,
            ["(202) 456-1111", "+1 202 456 1111", "", "# header", "212.555.0100"],
            {},
            [WHITE_HOUSE, NYC],
            [],
            0,
        ),
        (
            "lines: invalid numbers counted, never raised",
            ListFormat.LINES,
            ["202 456 1111", "not a number", "+1 123", "x" * 300],
            {},
            [WHITE_HOUSE],
            [],
            3,
        ),
        (
            "lines in remove mode are removals",
            ListFormat.LINES,
            ["202 456 1111"],
            {"mode": ImportMode.REMOVE},
            [],
            [WHITE_HOUSE],
            0,
        ),
        (
            "csv by 0-based column",
            ListFormat.CSV,
            ["Ann,202-456-1111,x", "Bob,212 555 0100", "Cy"],
            {"column": 1},
            [WHITE_HOUSE, NYC],
            [],
            1,
        ),
        (
            "csv by header name, quoted cells",
            ListFormat.CSV,
            ['name,"Phone"', '"Doe, Ann","(202) 456-1111"', "Bob,+1 212 555 0100"],
            {"column": "phone"},
            [WHITE_HOUSE, NYC],
            [],
            0,
        ),
        (
            "csv header row skipped when asked",
            ListFormat.CSV,
            ["number", "2024561111"],
            {"header": True},
            [WHITE_HOUSE],
            [],
            0,
        ),
        (
            "dnc full list: area code, number",
            ListFormat.DNC,
            ["202,4561111", "212,5550100", "2024561111"],
            {},
            [WHITE_HOUSE, NYC],
            [],
            0,
        ),
        (
            "dnc: malformed area codes and exchanges are invalid",
            ListFormat.DNC,
            ["102,4561111", "202,1561111", "20,4561111", "202,456111", "abc,defghij"],
            {},
            [],
            [],
            5,
        ),
        (
            "dnc: a removal flag in a full list is invalid",
            ListFormat.DNC,
            ["202,4561111", "212,5550100,D"],
            {},
            [WHITE_HOUSE],
            [],
            1,
        ),
        (
            "dnc change list: flags decide",
            ListFormat.DNC,
            ["202,4561111,A", "212,5550100,D", "415,5552671"],
            {"mode": ImportMode.DELTA},
            [WHITE_HOUSE, 14155552671],
            [NYC],
            0,
        ),
        (
            "dnc: both flags on a line is invalid",
            ListFormat.DNC,
            ["202,4561111,A,D"],
            {"mode": ImportMode.DELTA},
            [],
            [],
            1,
        ),
    ],
)
def test_parse_numbers(
    case: str,
    fmt: ListFormat,
    lines: list[str],
    kw: dict[str, object],
    adds: list[int],
    removes: list[int],
    invalid: int,
) -> None:
    parsed = parse_numbers(lines, fmt=fmt, default_region="US", **kw)  # type: ignore[arg-type]
    assert values(parsed.additions) == sorted(adds), case
    assert values(parsed.removals) == sorted(removes), case
    assert parsed.invalid == invalid, case


def test_invalid_lines_are_reported_by_number_never_by_content() -> None:
    parsed = parse_numbers(
        ["202 456 1111", "bad", "", "worse"], fmt=ListFormat.LINES, default_region="US"
    )
    assert (parsed.lines, parsed.invalid, parsed.invalid_lines) == (3, 2, [2, 4])


def test_a_csv_field_beyond_the_csv_limit_refuses_the_file() -> None:
    with pytest.raises(InvalidList):
        parse_numbers(['"' + "1" * 200_000 + '"'], fmt=ListFormat.CSV, default_region="US")


def test_an_unknown_csv_column_name_is_refused() -> None:
    with pytest.raises(InvalidList):
        parse_numbers(["a,b", "1,2"], fmt=ListFormat.CSV, default_region="US", column="phone")


@settings(max_examples=400, deadline=None)
@given(area=st.integers(200, 999), local=st.integers(2_000_000, 9_999_999))
def test_the_dnc_fast_path_keeps_every_number_a_check_could_ask_about(
    area: int, local: int
) -> None:
    # A number the check side accepts must be found under the same key, or it would be
    # allowed although listed; the converse (extra keys) is harmless.
    [line] = [f"{area},{local}"]
    fast = values(parse_numbers([line], fmt=ListFormat.DNC, default_region="US").additions)
    try:
        checked = phone(f"+1{area}{local}")
    except InvalidContact:
        return
    assert fast == [int(checked.value[1:])]


def test_normalise_many_matches_the_single_contact_path() -> None:
    raws = ["06 12 34 56 78", "+44 20 7946 0000", "nope", "+33 1 23 45 67 89"]
    numbers, valid = normalise_many(raws, default_region="FR")
    assert valid.tolist() == [True, True, False, True]
    assert values(numbers[valid]) == [
        int(contacts.parse_phone(r, default_region="FR").value[1:])
        for r, ok in zip(raws, valid, strict=True)
        if ok
    ]


sorted_sets = st.sets(st.integers(1, 10**15), max_size=60).map(
    lambda s: np.array(sorted(s), dtype=np.uint64)
)


@settings(max_examples=200, deadline=None)
@given(listed=sorted_sets, queries=st.lists(st.integers(0, 10**15 + 1), max_size=60))
def test_membership_agrees_with_a_set(listed: np.ndarray, queries: list[int]) -> None:  # type: ignore[type-arg]
    found = member(listed, np.array(queries, dtype=np.uint64))
    reference = set(values(listed))
    assert found.tolist() == [q in reference for q in queries]


@pytest.mark.parametrize("queries", [1, 4095, 4096, 50_000])
def test_bulk_lookups_agree_with_isin_on_both_paths(queries: int) -> None:
    rng = np.random.default_rng(queries)
    listed = np.unique(rng.integers(0, 10**6, 100_000).astype(np.uint64))
    asked = rng.integers(0, 10**6 + 10, queries).astype(np.uint64)
    assert (member(listed, asked) == np.isin(asked, listed)).all()


@settings(max_examples=200, deadline=None)
@given(base=sorted_sets, additions=sorted_sets, removals=sorted_sets)
def test_a_delta_agrees_with_set_arithmetic(
    base: np.ndarray,  # type: ignore[type-arg]
    additions: np.ndarray,  # type: ignore[type-arg]
    removals: np.ndarray,  # type: ignore[type-arg]
) -> None:
    merged, added, removed = apply_delta(base, additions, removals)
    before, add, rem = set(values(base)), set(values(additions)), set(values(removals))
    after = (before | add) - rem
    assert values(merged) == sorted(after)
    assert (added, removed) == (len(after - before), len(before - after))


def import_us(cache: OppositionCache, lines: list[str], **kw: object) -> object:
    args: dict[str, object] = {
        "region": "US",
        "fmt": ListFormat.DNC,
        "source": "test",
        "fetched_at": FETCHED,
    }
    return cache.import_lines(lines, **{**args, **kw})  # type: ignore[arg-type]


def test_a_full_list_is_a_versioned_snapshot_with_its_metadata(cache: OppositionCache) -> None:
    report = cache.import_lines(
        ["202,4561111", "212,5550100", "bad"],
        region="us",
        fmt=ListFormat.DNC,
        source="ftc-full-2026-11",
        fetched_at=FETCHED,
    )
    meta = report.snapshot  # type: ignore[attr-defined]
    assert report.created and report.invalid_lines == [3]  # type: ignore[attr-defined]
    assert (meta.region, meta.source, meta.fetched_at, meta.max_age) == (
        "US",
        "ftc-full-2026-11",
        FETCHED,
        31 * DAY,
    )
    assert (meta.count, meta.added, meta.removed, meta.lines, meta.invalid) == (2, 2, 0, 3, 1)
    assert meta.version.startswith("US-") and meta.parent is None
    status = cache.status(phone("(202) 456-1111"), company_id=1)
    assert (status.version, status.listed, status.fetched_at) == (meta.version, True, FETCHED)
    assert not cache.status(phone("415 555 2671"), company_id=1).listed


@pytest.mark.parametrize(("region", "days"), [("US", 31), ("GB", 28), ("FR", 30)])
def test_maximum_age_defaults_to_the_legal_one(
    cache: OppositionCache, region: str, days: int
) -> None:
    report = cache.import_lines(
        ["+1 202 456 1111"], region=region, fmt=ListFormat.LINES, source="t", fetched_at=FETCHED
    )
    assert report.snapshot.max_age == days * DAY


def test_importing_the_same_snapshot_twice_changes_nothing(cache: OppositionCache) -> None:
    first = import_us(cache, ["202,4561111"])
    again = import_us(cache, ["202,4561111"])
    assert again.created is False  # type: ignore[attr-defined]
    assert again.snapshot.version == first.snapshot.version  # type: ignore[attr-defined]


def test_deltas_make_new_versions_on_top_of_the_current_one(cache: OppositionCache) -> None:
    base = import_us(cache, ["202,4561111", "212,5550100"]).snapshot  # type: ignore[attr-defined]
    changes = import_us(
        cache,
        ["212,5550100,D", "415,5552671,A"],
        mode=ImportMode.DELTA,
        fetched_at=FETCHED + 60,
    ).snapshot  # type: ignore[attr-defined]
    assert (changes.parent, changes.count, changes.added, changes.removed) == (
        base.version,
        2,
        1,
        1,
    )
    assert changes.max_age == base.max_age
    assert not cache.status(phone("212 555 0100"), company_id=1).listed
    assert cache.status(phone("415 555 2671"), company_id=1).listed
    removal = cache.import_lines(
        ["(202) 456-1111"],
        region="US",
        fmt=ListFormat.LINES,
        source="optouts",
        fetched_at=FETCHED + 120,
        mode=ImportMode.REMOVE,
    ).snapshot
    assert (removal.parent, removal.count, removal.removed) == (changes.version, 1, 1)
    status = cache.status(phone("202 456 1111"), company_id=1)
    assert (status.version, status.listed) == (removal.version, False)


@pytest.mark.parametrize(
    ("case", "kw"),
    [
        ("a delta needs a base", {"mode": ImportMode.DELTA}),
        ("no valid number", {"lines": ["bad", "worse"]}),
        ("no known maximum age", {"region": "CA"}),
        ("not a region", {"region": "USA"}),
        ("fetched in the future", {"fetched_at": NOW + DAY}),
    ],
)
def test_imports_that_cannot_be_applied_are_refused(
    cache: OppositionCache, case: str, kw: dict[str, object]
) -> None:
    kw = dict(kw)  # the parameter is shared by the SQLite and PostgreSQL runs
    lines = kw.pop("lines", ["202,4561111"])
    with pytest.raises(InvalidList):
        import_us(cache, lines, **kw)  # type: ignore[arg-type]
    assert cache.current() == [], case


def test_a_delta_older_than_its_base_is_refused(cache: OppositionCache) -> None:
    import_us(cache, ["202,4561111"])
    with pytest.raises(InvalidList):
        import_us(cache, ["212,5550100"], mode=ImportMode.DELTA, fetched_at=FETCHED - 1)


def test_company_lists_are_per_company_and_across_regions(cache: OppositionCache) -> None:
    cache.import_lines(
        ["06 12 34 56 78", "+1 202 456 1111"],
        region="FR",
        fmt=ListFormat.LINES,
        source="crm-optouts",
        fetched_at=FETCHED,
        company_id=7,
    )
    fr, us = phone("+33 6 12 34 56 78"), phone("+1 202 456 1111")
    mine, other = cache.status(fr, company_id=7), cache.status(fr, company_id=8)
    assert mine.company_listed and mine.company_version is not None
    assert mine.company_version.startswith("C7-")
    assert cache.status(us, company_id=7).company_listed
    assert (other.company_listed, other.company_version) == (False, None)
    assert mine.version is None  # no national list: the company list is not one
    report = cache.current()[0]
    assert (report.company_id, report.max_age) == (7, None)


def test_e_mail_addresses_are_on_no_list(cache: OppositionCache) -> None:
    import_us(cache, ["202,4561111"])
    status = cache.status(contacts.parse_email("a@example.org"), company_id=1)
    assert (status.version, status.listed, status.company_version) == (None, False, None)


def test_another_process_sees_an_import_after_its_refresh(
    db_engine: Engine, tmp_path: Path, cache: OppositionCache
) -> None:
    reader = OppositionCache(engine=db_engine, directory=tmp_path / "lists", refresh_seconds=0)
    assert reader.status(phone("202 456 1111"), company_id=1).version is None
    meta = import_us(cache, ["202,4561111"]).snapshot  # type: ignore[attr-defined]
    status = reader.status(phone("202 456 1111"), company_id=1)
    assert (status.version, status.listed) == (meta.version, True)


def test_bulk_lookups_are_vectorised(cache: OppositionCache) -> None:
    import_us(cache, ["202,4561111", "212,5550100"])
    queries = np.array([NYC, 1, WHITE_HOUSE, 14155552671], dtype=np.uint64)
    assert cache.contains_many(queries, region="US").tolist() == [True, False, True, False]
    with pytest.raises(ListUnavailable):
        cache.contains_many(queries, region="GB")


@pytest.mark.parametrize("damage", ["missing", "truncated", "altered"])
def test_a_damaged_snapshot_file_fails_closed(
    db_engine: Engine, tmp_path: Path, cache: OppositionCache, damage: str
) -> None:
    meta = import_us(cache, ["202,4561111", "212,5550100"]).snapshot  # type: ignore[attr-defined]
    path = tmp_path / "lists" / f"{meta.version}.npy"
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-8])
    else:
        data = bytearray(path.read_bytes())
        data[-1] ^= 1
        path.write_bytes(bytes(data))
    fresh = OppositionCache(engine=db_engine, directory=tmp_path / "lists")
    with pytest.raises(ListUnavailable):
        fresh.status(phone("202 456 1111"), company_id=1)


def test_a_file_import_takes_its_fetch_time_from_the_file(
    cache: OppositionCache, tmp_path: Path
) -> None:
    path = tmp_path / "tps.csv"
    path.write_text("name,number\nA,020 7946 0000\nB,nope\n")
    os.utime(path, (FETCHED, FETCHED))
    report = cache.import_file(path, region="GB", fmt=ListFormat.CSV, column="number")
    assert (report.snapshot.fetched_at, report.snapshot.source) == (FETCHED, "tps.csv")
    assert (report.snapshot.count, report.snapshot.invalid) == (1, 1)
    assert cache.status(phone("+44 20 7946 0000", "GB"), company_id=1).listed
