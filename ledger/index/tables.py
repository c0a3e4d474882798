"""The event index's tables: current state and full history of every ledger entity.

Each entity (company, grant, consumer, link, anchor) has two tables. The current-state table
holds one row per key with the position (block, log index, transaction) of its last change;
the history table holds the entity's whole state after every change, keyed by key and
position, so the state at any indexed block is the newest history row at or before it.
Both tables of an entity come from one class of state and key columns: ``CurrentPosition``
or ``HistoryPosition`` adds the position, as a plain column or as part of the primary key.
``LogRow`` keeps every log of the contract (decoded, as JSON): it is the raw history and the
idempotency key (transaction hash, log index). ``BlockRow`` keeps the hashes of recent blocks
for reorg detection, and ``CheckpointRow`` says how far the index goes; the indexer writes the
checkpoint in the same transaction as the rows it covers.

Example:
    >>> class ThingColumns(SQLModel):
    ...     size: int
    ...     thing_id: int = Field(primary_key=True)
    >>> class ThingRow(CurrentPosition, ThingColumns, table=True):
    ...     __tablename__ = "ix_thing"
    >>> class ThingHistoryRow(HistoryPosition, ThingColumns, table=True):
    ...     __tablename__ = "ix_thing_history"
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BigInteger, Index, Table
from sqlmodel import Field, SQLModel

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
ZERO_HASH = "00" * 32
MAX_DB_ID = 1 << 63  # ids at or above do not fit BIGINT; the API cannot name them either


# ----- the position of a change -----
#
# The position classes come first among a table's bases: pydantic orders the columns from
# the last base to the first, so the position columns follow the state and the key, as in
# the initial migration.


class CurrentPosition(SQLModel):
    """Where the current row last changed."""

    block_number: int = Field(sa_type=BigInteger)
    log_index: int
    tx_hash: str


class HistoryPosition(SQLModel):
    """Where the history row's change happened: part of its key, and indexed for rollbacks."""

    block_number: int = Field(sa_type=BigInteger, primary_key=True, index=True)
    log_index: int = Field(primary_key=True)
    tx_hash: str


# ----- companies -----


class CompanyColumns(SQLModel):
    admin: str
    name: str  # kept only in the CompanyRegistered event on chain
    status: int  # CompanyStatus
    # Ids are chosen on chain: the database must never number them itself.
    company_id: int = Field(
        sa_type=BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )


class CompanyRow(CurrentPosition, CompanyColumns, table=True):
    __tablename__ = "ix_company"


class CompanyHistoryRow(HistoryPosition, CompanyColumns, table=True):
    __tablename__ = "ix_company_history"


# ----- grants -----


class GrantColumns(SQLModel):
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
    consumer: str = Field(primary_key=True)
    company_id: int = Field(sa_type=BigInteger, primary_key=True)
    channel: int = Field(primary_key=True)


class GrantRow(CurrentPosition, GrantColumns, table=True):
    __tablename__ = "ix_grant"


class GrantHistoryRow(HistoryPosition, GrantColumns, table=True):
    __tablename__ = "ix_grant_history"


# ----- consumers -----


class ConsumerColumns(SQLModel):
    epoch: int = Field(sa_type=BigInteger)  # moved by revoke-all
    cap_max: int = Field(sa_type=BigInteger)
    cap_period: int = Field(sa_type=BigInteger)
    link_count: int = Field(sa_type=BigInteger)
    consumer: str = Field(primary_key=True)


class ConsumerRow(CurrentPosition, ConsumerColumns, table=True):
    __tablename__ = "ix_consumer"


class ConsumerHistoryRow(HistoryPosition, ConsumerColumns, table=True):
    __tablename__ = "ix_consumer_history"


# ----- contact links -----


class LinkColumns(SQLModel):
    consumer: str | None  # None once unlinked
    previous_consumer: str | None  # who held the contact before this change
    linked_at: int = Field(sa_type=BigInteger)  # block timestamp of the attestation
    commitment: str = Field(primary_key=True)  # hex


class LinkRow(CurrentPosition, LinkColumns, table=True):
    __tablename__ = "ix_link"


class LinkHistoryRow(HistoryPosition, LinkColumns, table=True):
    __tablename__ = "ix_link_history"


# ----- usage-log anchors -----


class AnchorColumns(SQLModel):
    root: str  # hex
    tree_size: int = Field(sa_type=BigInteger)
    anchored_at: int = Field(sa_type=BigInteger)
    log_id: int = Field(
        sa_type=BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )


class AnchorRow(CurrentPosition, AnchorColumns, table=True):
    __tablename__ = "ix_anchor"


class AnchorHistoryRow(HistoryPosition, AnchorColumns, table=True):
    __tablename__ = "ix_anchor_history"


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


def table_of(model: type[SQLModel]) -> Table:
    """The SQLAlchemy table of a ``table=True`` model, for Core statements."""
    table: Table = model.__table__  # type: ignore[attr-defined]
    return table


# ----- the entities, described once for the generic fold, rollback and reads -----


POSITION = ("block_number", "log_index", "tx_hash")


@dataclass(frozen=True)
class Entity:
    """One kind of ledger state: its two tables and its empty state.

    The key is the current table's primary key, and the state columns are those of ``empty``
    (in its order), so a column added to the tables without an empty value fails at import.
    """

    name: str
    current: type[SQLModel]
    history: type[SQLModel]
    empty: dict[str, Any]
    key: tuple[str, ...] = field(init=False)
    fields: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        key = tuple(column.name for column in self.current_table.primary_key)
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "fields", tuple(self.empty))
        state = [c.name for c in self.current_table.columns if c.name not in {*key, *POSITION}]
        if set(state) != set(self.fields):
            raise TypeError(f"{self.name}: empty state {self.fields} for columns {state}")

    @property
    def current_table(self) -> Table:
        return table_of(self.current)

    @property
    def history_table(self) -> Table:
        return table_of(self.history)


COMPANY = Entity(
    "company",
    CompanyRow,
    CompanyHistoryRow,
    {"admin": ZERO_ADDRESS, "name": "", "status": 0},
)
GRANT = Entity(
    "grant",
    GrantRow,
    GrantHistoryRow,
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
    {"epoch": 0, "cap_max": 0, "cap_period": 0, "link_count": 0},
)
LINK = Entity(
    "link",
    LinkRow,
    LinkHistoryRow,
    {"consumer": None, "previous_consumer": None, "linked_at": 0},
)
ANCHOR = Entity(
    "anchor",
    AnchorRow,
    AnchorHistoryRow,
    {"root": ZERO_HASH, "tree_size": 0, "anchored_at": 0},
)
ENTITIES: tuple[Entity, ...] = (COMPANY, GRANT, CONSUMER, LINK, ANCHOR)
