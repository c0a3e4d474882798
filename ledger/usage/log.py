"""The append-only, hash-chained usage log.

Each entry's hash is the RFC 9162 leaf hash ``SHA-256(0x00 || canonical entry)`` where the
canonical entry includes the previous entry's hash, so an edited, deleted or inserted entry
breaks the chain, and the audit work can build Merkle proofs over the same leaf hashes.
The database refuses UPDATE and DELETE on the table (triggers created by the initial
migration, ``ledger/migrations``); this module only inserts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Index, bindparam, func, insert
from sqlalchemy.engine import Connection
from sqlmodel import Field, Session, SQLModel, col, select

from ledger.db.prepared import Prepared
from ledger.domain.errors import Conflict, NotFound

GENESIS_HASH = "00" * 32
TABLE = "usage_entry"
_PG_LOCK_KEY = 0x71756F7461  # "quota": the advisory lock of the usage log


class Decision:
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


class UsageEntry(UsageEntryBase, table=True):
    __tablename__ = TABLE
    __table_args__ = (
        Index("ix_usage_window", "consumer", "company_id", "channel", "at"),
        Index("ix_usage_consumer_at", "consumer", "at"),
    )

    seq: int = Field(sa_type=BigInteger, primary_key=True)
    prev_hash: str
    entry_hash: str


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a company keeps for each recorded contact."""

    seq: int
    entry_hash: str


def leaf_bytes(entry: UsageEntryBase, *, seq: int, prev_hash: str) -> bytes:
    """The canonical serialisation hashed into the chain (stable key order, no spaces)."""
    return _canonical(entry.model_dump(), seq=seq, prev_hash=prev_hash)


def _canonical(fields: dict[str, Any], *, seq: int, prev_hash: str) -> bytes:
    body: dict[str, Any] = {"seq": seq, "prev_hash": prev_hash, **fields}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def leaf_hash(data: bytes) -> str:
    """RFC 9162 section 2.1.1 leaf hash."""
    return hashlib.sha256(b"\x00" + data).hexdigest()


def _window(*, by_company: bool, by_channel: bool) -> Prepared:
    query = select(UsageEntry.at).where(
        col(UsageEntry.consumer) == bindparam("consumer"),
        col(UsageEntry.decision) == Decision.ALLOWED,
        col(UsageEntry.at) > bindparam("since"),
    )
    if by_company:
        query = query.where(col(UsageEntry.company_id) == bindparam("company_id"))
    if by_channel:
        query = query.where(col(UsageEntry.channel) == bindparam("channel"))
    return Prepared(query.order_by(col(UsageEntry.at)))


# Every check-and-record runs these: compiled once, run on the DBAPI cursor (storage.Prepared).
_HEAD = Prepared(
    select(UsageEntry.seq, UsageEntry.entry_hash).order_by(col(UsageEntry.seq).desc()).limit(1)
)
_INSERT = Prepared(insert(UsageEntry))
_WINDOWS = {
    (by_company, by_channel): _window(by_company=by_company, by_channel=by_channel)
    for by_company in (False, True)
    for by_channel in (False, True)
}


def _connection(db: Session | Connection) -> Connection:
    if isinstance(db, Session):
        db.flush()  # the prepared statements bypass the ORM: pending objects must be written
        return db.connection()
    return db


def lock(db: Session | Connection) -> None:
    """Serialises writers of the log for the rest of the transaction.

    Every append extends one global hash chain, and a check-and-record must count and append
    with no other writer in between. SQLite's immediate transactions already hold the write
    lock; PostgreSQL takes a transaction-scoped advisory lock (released at commit or rollback).
    """
    conn = _connection(db)
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")


def append(db: Session | Connection, entry: UsageEntryBase) -> Receipt:
    """Appends ``entry`` after the current head of the log.

    Call inside the caller's transaction (an ORM session or a ``storage.connect`` connection)
    after ``lock`` so that reading the head and inserting are atomic with whatever the caller
    counted.
    """
    conn = _connection(db)
    lock(conn)
    head = _HEAD.first(conn)
    seq, prev_hash = (1, GENESIS_HASH) if head is None else (int(head[0]) + 1, str(head[1]))
    fields = entry.model_dump()
    entry_hash = leaf_hash(_canonical(fields, seq=seq, prev_hash=prev_hash))
    _INSERT.execute(conn, **fields, seq=seq, prev_hash=prev_hash, entry_hash=entry_hash)
    return Receipt(seq=seq, entry_hash=entry_hash)


def allowed_times(
    db: Session | Connection,
    *,
    consumer: str,
    since: int,
    company_id: int | None = None,
    channel: int | None = None,
) -> list[int]:
    """Times of allowed contacts with ``at > since``, oldest first.

    With ``company_id`` and ``channel`` this is one grant's rolling window; without, the
    consumer's global cap window.
    """
    query = _WINDOWS[company_id is not None, channel is not None]
    rows = query.rows(
        _connection(db), consumer=consumer, since=since, company_id=company_id, channel=channel
    )
    return [int(at) for (at,) in rows]


def entry(session: Session, seq: int) -> UsageEntry | None:
    return session.get(UsageEntry, seq)


def entries(
    session: Session,
    *,
    company_id: int | None = None,
    consumer: str | None = None,
    channel: int | None = None,
    decision: str | None = None,
    since: int | None = None,
    until: int | None = None,
    after_seq: int = 0,
    limit: int = 100,
) -> list[UsageEntry]:
    """Entries in ``seq`` order after ``after_seq`` (keyset pagination), filtered."""
    query = select(UsageEntry).where(UsageEntry.seq > after_seq)
    if decision is not None:
        query = query.where(UsageEntry.decision == decision)
    if company_id is not None:
        query = query.where(UsageEntry.company_id == company_id)
    if consumer is not None:
        query = query.where(UsageEntry.consumer == consumer)
    if channel is not None:
        query = query.where(UsageEntry.channel == channel)
    if since is not None:
        query = query.where(UsageEntry.at >= since)
    if until is not None:
        query = query.where(UsageEntry.at < until)
    return list(session.exec(query.order_by(col(UsageEntry.seq)).limit(limit)).all())


def record_outcome(
    session: Session, *, company_id: int, seq: int, outcome: Outcome, at: int
) -> Receipt:
    """Appends the outcome of a recorded contact (the log is never edited, so it is a new entry).

    Raises:
        NotFound: no contact entry ``seq`` of this company.
        Conflict: the entry is not an allowed contact, or already has an outcome.
    """
    lock(session)
    contact = session.get(UsageEntry, seq)
    if contact is None or contact.company_id != company_id:
        raise NotFound(f"no recorded contact {seq} of this company", seq=seq)
    if contact.decision != Decision.ALLOWED:
        raise Conflict(f"entry {seq} is not an allowed contact", seq=seq)
    existing = session.exec(
        select(UsageEntry.seq).where(
            UsageEntry.refers_to == seq, UsageEntry.decision == Decision.OUTCOME
        )
    ).first()
    if existing is not None:
        raise Conflict(f"entry {seq} already has an outcome (entry {existing})", seq=seq)
    return append(
        session,
        UsageEntryBase(
            at=at,
            company_id=company_id,
            contact=contact.contact,
            channel=contact.channel,
            consumer=contact.consumer,
            grant_version=contact.grant_version,
            block_number=contact.block_number,
            list_version=contact.list_version,
            decision=Decision.OUTCOME,
            reasons="[]",
            outcome=outcome.value,
            refers_to=seq,
        ),
    )


def size(session: Session) -> int:
    return int(session.exec(select(func.count()).select_from(UsageEntry)).one())


def verify_chain(session: Session) -> int | None:
    """Recomputes every hash; returns the first bad ``seq``, or None when the log is intact."""
    expected_prev, expected_seq = GENESIS_HASH, 1
    for row in session.exec(select(UsageEntry).order_by(col(UsageEntry.seq))):
        base = UsageEntryBase.model_validate(row, from_attributes=True)
        recomputed = leaf_hash(leaf_bytes(base, seq=row.seq, prev_hash=row.prev_hash))
        if (
            row.seq != expected_seq
            or row.prev_hash != expected_prev
            or row.entry_hash != recomputed
        ):
            return expected_seq
        expected_prev, expected_seq = row.entry_hash, row.seq + 1
    return None
