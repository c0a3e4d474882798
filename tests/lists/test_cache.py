"""The cache: membership of a contact or of many numbers, refreshes, damaged files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy.engine import Engine

from ledger.domain import contacts
from ledger.domain.errors import ListUnavailable
from ledger.lists.cache import OppositionCache
from tests.lists.list_helpers import NYC, WHITE_HOUSE, import_us, phone


def test_e_mail_addresses_are_on_no_list(cache: OppositionCache) -> None:
    import_us(cache, ["202,4561111"])
    status = cache.status(contacts.parse_email("a@example.org"), company_id=1)
    assert (status.version, status.listed, status.company_version) == (None, False, None)


def test_another_process_sees_an_import_after_its_refresh(
    db_engine: Engine, tmp_path: Path, cache: OppositionCache
) -> None:
    reader = OppositionCache(engine=db_engine, directory=tmp_path / "lists", refresh_seconds=0)
    assert reader.status(phone("202 456 1111"), company_id=1).version is None
    meta = import_us(cache, ["202,4561111"]).snapshot
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
    meta = import_us(cache, ["202,4561111", "212,5550100"]).snapshot
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
