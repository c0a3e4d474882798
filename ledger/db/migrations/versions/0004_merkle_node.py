"""merkle node: stored hashes of the usage log's completed Merkle subtrees

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "merkle_node",
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx"),
    )
    _guard_merkle_nodes()


# A stored node is written once; rewriting one would let proofs disagree with the log quietly.
_SQLITE_GUARD = (
    "CREATE TRIGGER merkle_node_no_{op_lower} BEFORE {op} ON merkle_node "
    "BEGIN SELECT RAISE(ABORT, 'merkle nodes are append-only'); END"
)
_PG_FUNCTION = (
    "CREATE OR REPLACE FUNCTION merkle_node_append_only() RETURNS trigger AS $$ "
    "BEGIN RAISE EXCEPTION 'merkle nodes are append-only'; END $$ LANGUAGE plpgsql"
)
_PG_TRIGGER = (
    "CREATE TRIGGER merkle_node_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON merkle_node "
    "FOR EACH STATEMENT EXECUTE FUNCTION merkle_node_append_only()"
)


def _guard_merkle_nodes() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for kind in ("UPDATE", "DELETE"):
            op.execute(_SQLITE_GUARD.format(op=kind, op_lower=kind.lower()))
    elif dialect == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute(_PG_TRIGGER)
    else:
        raise NotImplementedError(f"no append-only guard for {dialect}: refusing to migrate")


def downgrade() -> None:
    op.drop_table("merkle_node")  # its triggers go with it
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS merkle_node_append_only()")
