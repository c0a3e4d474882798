"""The database schema: every table module, and the migrations that build it.

The schema is created and upgraded by Alembic (``ledger/migrations``) when an engine is made,
under a lock, so that several API processes starting together migrate once.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_PG_LOCK_KEY = 0x71756F7461_01  # advisory lock held while migrating


def import_models() -> None:
    """Registers every table class with SQLModel's metadata."""
    from ledger import (  # noqa: F401
        apikeys,
        deployment,
        idempotency,
        index_tables,
        linking,
        opposition,
        relayer,
        sessions,
        usage_log,
    )


def config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade(engine: Engine) -> None:
    """Brings the database to the newest schema (a no-op when it is there)."""
    cfg = config()
    # SQLite's BEGIN IMMEDIATE (see storage) and PostgreSQL's advisory lock make concurrent
    # starts wait for one another instead of racing to create the same tables.
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")
