from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from ledger.lists.cache import OppositionCache


@pytest.fixture
def cache(db_engine: Engine, tmp_path: Path) -> OppositionCache:
    return OppositionCache(engine=db_engine, directory=tmp_path / "lists", refresh_seconds=3600)
