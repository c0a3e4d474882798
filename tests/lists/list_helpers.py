"""Numbers and an import shared by the opposition-list tests."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ledger.domain import contacts
from ledger.lists.cache import OppositionCache
from ledger.lists.formats import ListFormat
from ledger.lists.importer import DAY, ImportReport, ListImport, import_lines

NOW = int(time.time())
FETCHED = NOW - DAY
WHITE_HOUSE = 12024561111
NYC = 12125550100


def phone(raw: str, region: str = "US") -> contacts.Contact:
    return contacts.parse_phone(raw, default_region=region)


def values(numbers: np.ndarray) -> list[int]:  # type: ignore[type-arg]
    return [int(n) for n in numbers]


def import_us(
    cache: OppositionCache, lines: list[str], *, fetched_at: int = FETCHED, **spec: Any
) -> ImportReport:
    """Imports DNC lines as the US list, ``spec`` overriding any field of the import."""
    wanted = ListImport(**{"region": "US", "fmt": ListFormat.DNC, **spec})
    return import_lines(lines, wanted, cache=cache, source="test", fetched_at=fetched_at)
