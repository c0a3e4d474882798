"""Usage-log entries: what is recorded for each contact asked about, and the receipt of one.

An entry holds the contact's commitment, never the contact itself; ``kind`` says whether it
records an allowed contact, a refusal, or the reported outcome of an earlier contact.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import BigInteger, Index
from sqlmodel import Field, SQLModel

TABLE = "usage_entry"


class EntryKind(StrEnum):
    """The ``decision`` column: what an entry records."""

    ALLOWED = "allowed"
    REFUSED = "refused"
    OUTCOME = "outcome"  # not a decision: the reported outcome of the entry ``refers_to``


class Outcome(StrEnum):
    ANSWERED = "answered"
    NO_ANSWER = "no_answer"
    REFUSED_BY_CONSUMER = "refused_by_consumer"


class UsageEntryBase(SQLModel):
    at: int = Field(
        sa_type=BigInteger, index=True
    )  # unix seconds of the contact (attempts count, answered or not)
    company_id: int = Field(sa_type=BigInteger)
    contact: str  # hex commitment of the contact, never the contact itself
    channel: int
    consumer: str | None = None
    grant_version: int | None = None
    block_number: int | None = Field(default=None, sa_type=BigInteger)
    list_version: str | None = None  # opposition-list snapshots read: national, then company
    decision: str
    reasons: str  # JSON list of reason codes
    outcome: str | None = None
    refers_to: int | None = Field(default=None, sa_type=BigInteger)  # seq of the contact entry
    # Since migration 0002; hashed only when set, so entries written before keep their hashes.
    rules: str | None = None  # JSON list of the ids of the rules of law applied
    basis: str | None = None  # JSON: the legal basis ({"kind": ...} and a declaration's facts)


class UsageEntry(UsageEntryBase, table=True):
    __tablename__ = TABLE
    __table_args__ = (
        Index("ix_usage_window", "consumer", "company_id", "channel", "at"),
        Index("ix_usage_consumer_at", "consumer", "at"),
        Index("ix_usage_contact", "contact", "company_id", "channel", "at"),
    )

    seq: int = Field(sa_type=BigInteger, primary_key=True)
    prev_hash: str
    entry_hash: str


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a company keeps for each recorded contact."""

    seq: int
    entry_hash: str
