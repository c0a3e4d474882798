"""Imports: versioned snapshots and their metadata, deltas, company lists, refusals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ledger.domain.errors import InvalidList
from ledger.lists.cache import OppositionCache
from ledger.lists.formats import ImportMode, ListFormat
from ledger.lists.importer import DAY, ListImport, import_file, import_lines
from tests.lists.list_helpers import FETCHED, NOW, import_us, phone


def test_a_full_list_is_a_versioned_snapshot_with_its_metadata(cache: OppositionCache) -> None:
    report = import_lines(
        ["202,4561111", "212,5550100", "bad"],
        ListImport(region="us", fmt=ListFormat.DNC),
        cache=cache,
        source="ftc-full-2026-11",
        fetched_at=FETCHED,
    )
    meta = report.snapshot
    assert report.created and report.invalid_lines == [3]
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
    spec = ListImport(region=region, fmt=ListFormat.LINES)
    report = import_lines(["+1 202 456 1111"], spec, cache=cache, source="t", fetched_at=FETCHED)
    assert report.snapshot.max_age == days * DAY


def test_importing_the_same_snapshot_twice_changes_nothing(cache: OppositionCache) -> None:
    first = import_us(cache, ["202,4561111"])
    again = import_us(cache, ["202,4561111"])
    assert again.created is False
    assert again.snapshot.version == first.snapshot.version


def test_deltas_make_new_versions_on_top_of_the_current_one(cache: OppositionCache) -> None:
    base = import_us(cache, ["202,4561111", "212,5550100"]).snapshot
    changes = import_us(
        cache,
        ["212,5550100,D", "415,5552671,A"],
        mode=ImportMode.DELTA,
        fetched_at=FETCHED + 60,
    ).snapshot
    assert (changes.parent, changes.count, changes.added, changes.removed) == (
        base.version,
        2,
        1,
        1,
    )
    assert changes.max_age == base.max_age
    assert not cache.status(phone("212 555 0100"), company_id=1).listed
    assert cache.status(phone("415 555 2671"), company_id=1).listed
    removal = import_lines(
        ["(202) 456-1111"],
        ListImport(region="US", fmt=ListFormat.LINES, mode=ImportMode.REMOVE),
        cache=cache,
        source="optouts",
        fetched_at=FETCHED + 120,
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
    import_lines(
        ["06 12 34 56 78", "+1 202 456 1111"],
        ListImport(region="FR", fmt=ListFormat.LINES, company_id=7),
        cache=cache,
        source="crm-optouts",
        fetched_at=FETCHED,
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


def test_a_file_import_takes_its_fetch_time_from_the_file(
    cache: OppositionCache, tmp_path: Path
) -> None:
    path = tmp_path / "tps.csv"
    path.write_text("name,number\nA,020 7946 0000\nB,nope\n")
    os.utime(path, (FETCHED, FETCHED))
    spec = ListImport(region="GB", fmt=ListFormat.CSV, column="number")
    report = import_file(path, spec, cache=cache)
    assert (report.snapshot.fetched_at, report.snapshot.source) == (FETCHED, "tps.csv")
    assert (report.snapshot.count, report.snapshot.invalid) == (1, 1)
    assert cache.status(phone("+44 20 7946 0000", "GB"), company_id=1).listed
