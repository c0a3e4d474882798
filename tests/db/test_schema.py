"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect

from ledger import schema
from ledger.db import migrate
from ledger.db.engine import make_engine
from tests.servers import postgres_url


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'schema.sqlite3'}"
    else:
        yield from postgres_url()


def test_migrations_match_the_models_and_rerun_as_a_no_op(url: str) -> None:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            assert inspect(connection).get_table_names() == []  # making an engine migrates nothing
        schema.upgrade(engine)
        cfg = migrate.config(schema.metadata())
        with engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.check(cfg)  # raises when the models and the migrations disagree
        schema.upgrade(engine)  # a second start changes nothing
        tables = set(inspect(engine).get_table_names())
        assert {
            "usage_entry",
            "api_key",
            "ix_grant",
            "opposition_list",
            "alembic_version",
        } <= tables
    finally:
        engine.dispose()
