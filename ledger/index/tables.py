"""The event index's tables: current state and full history of every ledger entity.

Each entity (company, grant, consumer, link, anchor) has two tables. The current-state table
holds one row per key with the position (block, log index, transaction) of its last change;
the history table holds the entity's whole state after every change, keyed by key and
position, so the state at any indexed block is the newest history row at or before it.
``LogRow`` keeps every log of the contract (decoded, as JSON): it is the raw history and the
idempotency key (transaction hash, log index). ``BlockRow`` keeps the hashes of recent blocks
for reorg detection, and ``CheckpointRow`` says how far the index goes; the indexer writes the
checkpoint in the same transaction as the rows it covers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Index, Table
from sqlmodel import Field, SQLModel

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
ZERO_HASH = "00" * 32


# ----- companies -----


class CompanyFields(SQLModel):
    admin: str
    name: str  # kept only in the CompanyRegistered event on chain
    status: int  # CompanyStatus


class CompanyRow(CompanyFields, table=True):
    __tablename__ = "ix_company"

    company_id: int = Field(
        sa_type=BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    block_number: int = Field(sa_type=BigInteger)
    log_index: int
    tx_hash: str


class CompanyHistoryRow(CompanyFields, table=True):
    __tablename__ = "ix_company_history"

    company_id: int = Field(
        sa_type=BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    block_number: int = Field(sa_type=BigInteger, primary_key=True, index=True)
    log_index: int = Field(primary_key=True)
    tx_hash: str


# ----- grants -----


class GrantFields(SQLModel):
    # uint32 and uint40 on chain: BIGINT, since PostgreSQL's INTEGER is signed 32-bit.
    max_contacts: int = Field(sa_type=BigInteger)  # 0 once revoked
    period: int = Field(sa_type=BigInteger)
    valid_from: int = Field(sa_type=BigInteger)
    valid_until: int = Field(sa_type=BigInteger)
    hours_mask: int
    days_mask: int
    notice_hash: str  # hex, as in the GrantSet event
    version: int = Field(sa_type=BigInteger)
    epoch: int = Field(sa_type=BigInteger)  # consumer epoch when set


class GrantRow(GrantFields, table=True):
    __tablename__ = "ix_grant"

    consumer: str = Field(primary_key=True)
    company_id: int = Field(sa_type=BigInteger, primary_key=True)
    channel: int = Field(primary_key=True)
    block_number: int = Field(sa_type=BigInteger)
    log_index: int
    tx_hash: str


class GrantHistoryRow(GrantFields, table=True):
    __tablename__ = "ix_grant_history"

    consumer: str = Field(primary_key=True)
    company_id: int = Field(sa_type=BigInteger, primary_key=True)
    channel: int = Field(primary_key=True)
    block_number: int = Field(sa_type=BigInteger, primary_key=True, index=True)
    log_index: int = Field(primary_key=True)
    tx_hash: str


# ----- consumers -----


class ConsumerFields(SQLModel):
    epoch: int = Field(sa_type=BigInteger)  # moved by revoke-all
    cap_max: int = Field(sa_type=BigInteger)
    cap_period: int = Field(sa_type=BigInteger)
    link_count: int = Field(sa_type=BigInteger)


class ConsumerRow(ConsumerFields, table=True):
    __tablename__ = "ix_consumer"

    consumer: str = Field(primary_key=True)
    block_number: int = Field(sa_type=BigInteger)
    log_index: int
    tx_hash: str


class ConsumerHistoryRow(ConsumerFields, table=True):
    __tablename__ = "ix_consumer_history"

    consumer: str = Field(primary_key=True)
    block_number: int = Field(sa_type=BigInteger, primary_key=True, index=True)
    log_index: int = Field(primary_key=True)
    tx_hash: str


# ----- contact links -----


class LinkFields(SQLModel):
    consumer: str | None  # None once unlinked
    previous_consumer: str | None  # who held the contact before this change
    linked_at: int = Field(sa_type=BigInteger)  # block timestamp of the attestation


class LinkRow(LinkFields, table=True):
    __tablename__ = "ix_link"

    commitment: str = Field(primary_key=True)  # hex
    block_number: int = Field(sa_type=BigInteger)
    log_index: int
    tx_hash: str


class LinkHistoryRow(LinkFields, table=True):
    __tablename__ = "ix_link_history"

    commitment: str = Field(primary_key=True)
    block_number: int = Field(sa_type=BigInteger, primary_key=True, index=True)
    log_index: int = Field(primary_key=True)
    tx_hash: str


# ----- usage-log anchors -----


class AnchorFields(SQLModel):
    root: str  # hex
    tree_size: int = Field(sa_type=BigInteger)
    anchored_at: int = Field(sa_type=BigInteger)


class AnchorRow(AnchorFields, table=True):
    __tablename__ = "ix_anchor"

    log_id: int = Field(
        sa_type=BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    block_number: int = Field(sa_type=BigInteger)
    log_index: int
    tx_hash: str


class AnchorHistoryRow(AnchorFields, table=True):
    __tablename__ = "ix_anchor_history"

    log_id: int = Field(
        sa_type=BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    block_number: int = Field(sa_type=BigInteger, primary_key=True, index=True)
    log_index: int = Field(primary_key=True)
    tx_hash: str


# ----- raw logs, recent blocks, checkpoint -----


class LogRow(SQLModel, table=True):
    """One log of the ledger contract, decoded: the raw history and the idempotency key."""

    __tablename__ = "ix_log"
    __table_args__ = (Index("ix_log_position", "block_number", "log_index"),)

    tx_hash: str = Field(primary_key=True)
    log_index: int = Field(primary_key=True)
    block_number: int = Field(sa_type=BigInteger)
    block_hash: str
    event: str
    args: str  # JSON: the event's arguments (bytes as hex)


class BlockRow(SQLModel, table=True):
    """A recent indexed block: compared with the chain on every poll to notice reorgs."""

    __tablename__ = "ix_block"

    number: int = Field(
        sa_type=BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    hash: str
    parent_hash: str
    timestamp: int = Field(sa_type=BigInteger)


class CheckpointRow(SQLModel, table=True):
    """How far the index goes: every event up to and including ``block_number`` is in it."""

    __tablename__ = "ix_checkpoint"

    id: int = Field(default=1, primary_key=True)
    contract: str  # the ledger contract followed; another one means starting over
    start_block: int = Field(sa_type=BigInteger)  # the contract's deployment block
    block_number: int = Field(sa_type=BigInteger)
    block_hash: str
    block_timestamp: int = Field(sa_type=BigInteger)
    # Unix seconds (wall clock) when the index last matched the chain head: the lag in seconds
    # is measured from here while the index is behind.
    synced_at: float


# ----- the entities, described once for the generic fold, rollback and reads -----


@dataclass(frozen=True)
class Entity:
    """One kind of ledger state: its two tables, key columns, state columns and empty state."""

    name: str
    current: type[SQLModel]
    history: type[SQLModel]
    key: tuple[str, ...]
    fields: tuple[str, ...]
    empty: dict[str, Any]

    @property
    def current_table(self) -> Table:
        table: Table = self.current.__table__  # type: ignore[attr-defined]
        return table

    @property
    def history_table(self) -> Table:
        table: Table = self.history.__table__  # type: ignore[attr-defined]
        return table


COMPANY = Entity(
    "company",
    CompanyRow,
    CompanyHistoryRow,
    ("company_id",),
    ("admin", "name", "status"),
    {"admin": ZERO_ADDRESS, "name": "", "status": 0},
)
GRANT = Entity(
    "grant",
    GrantRow,
    GrantHistoryRow,
    ("consumer", "company_id", "channel"),
    (
        "max_contacts",
        "period",
        "valid_from",
        "valid_until",
        "hours_mask",
        "days_mask",
        "notice_hash",
        "version",
        "epoch",
    ),
    {
        "max_contacts": 0,
        "period": 0,
        "valid_from": 0,
        "valid_until": 0,
        "hours_mask": 0,
        "days_mask": 0,
        "notice_hash": ZERO_HASH,
        "version": 0,
        "epoch": 0,
    },
)
CONSUMER = Entity(
    "consumer",
    ConsumerRow,
    ConsumerHistoryRow,
    ("consumer",),
    ("epoch", "cap_max", "cap_period", "link_count"),
    {"epoch": 0, "cap_max": 0, "cap_period": 0, "link_count": 0},
)
LINK = Entity(
    "link",
    LinkRow,
    LinkHistoryRow,
    ("commitment",),
    ("consumer", "previous_consumer", "linked_at"),
    {"consumer": None, "previous_consumer": None, "linked_at": 0},
)
ANCHOR = Entity(
    "anchor",
    AnchorRow,
    AnchorHistoryRow,
    ("log_id",),
    ("root", "tree_size", "anchored_at"),
    {"root": ZERO_HASH, "tree_size": 0, "anchored_at": 0},
)
ENTITIES: tuple[Entity, ...] = (COMPANY, GRANT, CONSUMER, LINK, ANCHOR)
POSITION = ("block_number", "log_index", "tx_hash")
