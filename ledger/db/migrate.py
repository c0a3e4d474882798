"""Running the Alembic migrations (``ledger/db/migrations``) on an engine, under a lock.

The tables are declared by the modules that own them; ``ledger.schema`` collects their metadata
and hands it over here, so this room imports none of them.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_PG_LOCK_KEY = 0x71756F7461_01  # advisory lock held while migrating


def config(metadata: MetaData) -> Config:
    """The Alembic configuration: the migrations folder and the models' metadata."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["target_metadata"] = metadata
    return cfg


def upgrade(engine: Engine, metadata: MetaData) -> None:
    """Brings the database to the newest schema (a no-op when it is there)."""
    cfg = config(metadata)
    # SQLite's BEGIN IMMEDIATE (see engine) and PostgreSQL's advisory lock make concurrent
    # starts wait for one another instead of racing to create the same tables.
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")
