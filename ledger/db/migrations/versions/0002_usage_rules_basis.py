"""usage log: rules of law applied, legal basis, per-contact index

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE ADD COLUMN (no batch copy): a copied table would lose the append-only
    # triggers of 0001.
    op.add_column(
        "usage_entry", sa.Column("rules", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
    )
    op.add_column(
        "usage_entry", sa.Column("basis", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
    )
    op.create_index(
        "ix_usage_contact", "usage_entry", ["contact", "company_id", "channel", "at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_usage_contact", table_name="usage_entry")
    op.drop_column("usage_entry", "basis")
    op.drop_column("usage_entry", "rules")
