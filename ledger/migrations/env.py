"""Alembic environment: runs on the connection ``ledger.schema.upgrade`` hands over."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from ledger.schema import import_models

import_models()
connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
