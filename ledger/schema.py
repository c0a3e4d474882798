"""The database schema: every table module, gathered for the migrations.

Migrating is a step of start-up (``runtime``, ``quota-ledger migrate``), never a side effect of
making an engine; several processes starting together migrate once (``db.migrate`` locks).
"""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from ledger.db import migrate
from ledger.db.engine import make_engine


def metadata() -> MetaData:
    """Every table, registered by importing the modules that declare them."""
    from ledger.audit import tree  # noqa: F401
    from ledger.chain import deployment, relayer  # noqa: F401
    from ledger.consent import signin  # noqa: F401
    from ledger.index import tables  # noqa: F401
    from ledger.lists import store  # noqa: F401
    from ledger.services import apikeys, linking, sessions  # noqa: F401
    from ledger.usage import entries, idempotency  # noqa: F401

    return SQLModel.metadata


def upgrade(engine: Engine) -> None:
    """Brings the database to the newest schema (a no-op when it is there)."""
    migrate.upgrade(engine, metadata())


def migrated_engine(url: str) -> Engine:
    """An engine on ``url`` with the schema brought up to date: what every entry point opens."""
    engine = make_engine(url)
    upgrade(engine)
    return engine
