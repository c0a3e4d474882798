"""Many contacts' list statuses at once answer what ``status`` answers for each."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine

from ledger.domain import contacts
from ledger.domain.errors import ListUnavailable
from ledger.lists.cache import OppositionCache
from ledger.lists.formats import ListFormat
from ledger.lists.importer import ListImport, import_lines
from tests.lists.list_helpers import FETCHED, import_us, phone

MANY = [
    phone("202 456 1111"),  # on the US list
    phone("212 555 0100"),  # on the company's list too
    phone("415 555 2671"),
    phone("06 12 34 56 78", "FR"),  # a region without a list
    contacts.parse_email("a@example.org"),
]


def _one_by_one(cache: OppositionCache) -> list[object]:
    out: list[object] = []
    for contact in MANY:
        try:
            out.append(cache.status(contact, company_id=1))
        except ListUnavailable as exc:
            out.append(("unavailable", exc.message))
    return out


def _at_once(cache: OppositionCache) -> list[object]:
    return [
        ("unavailable", s.message) if isinstance(s, ListUnavailable) else s
        for s in cache.statuses(MANY, company_id=1)
    ]


def test_statuses_answer_as_status_does(cache: OppositionCache) -> None:
    import_us(cache, ["202,4561111", "212,5550100"])
    crm = ListImport(region="US", fmt=ListFormat.DNC, company_id=1)
    import_lines(["212,5550100"], crm, cache=cache, source="crm", fetched_at=FETCHED)
    answers = _at_once(cache)
    assert answers == _one_by_one(cache)
    assert [getattr(a, "listed", None) for a in answers] == [True, True, False, False, False]
    assert [getattr(a, "company_listed", None) for a in answers][:3] == [False, True, False]


def test_a_damaged_list_fails_closed_for_its_own_contacts_only(
    db_engine: Engine, tmp_path: Path, cache: OppositionCache
) -> None:
    meta = import_us(cache, ["202,4561111"]).snapshot
    (tmp_path / "lists" / f"{meta.version}.npy").unlink()
    fresh = OppositionCache(engine=db_engine, directory=tmp_path / "lists")
    answers = _at_once(fresh)
    assert answers == _one_by_one(fresh)
    assert [isinstance(a, tuple) for a in answers] == [True, True, True, False, False]
