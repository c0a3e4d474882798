"""The append-only, hash-chained usage log: appending, reading, and outcomes.

The database refuses UPDATE and DELETE on the table (triggers created by the initial
migration, ``ledger/db/migrations``); this module only inserts. Hashes are ``hashing``, the
writer lock ``locks``, the rolling-window reads ``windows``; the re-hash is ``ledger.audit.verify``,
and the running service's own check of each append's head ``ledger.audit.integrity`` (``watch``).
"""

from __future__ import annotations

from collections.abc import Callable
from weakref import WeakKeyDictionary

from sqlalchemy import func, insert
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, col, select

from ledger.db.prepared import Prepared
from ledger.domain.errors import Conflict, NotFound
from ledger.usage.entries import EntryKind, Outcome, Receipt, UsageEntry, UsageEntryBase
from ledger.usage.hashing import GENESIS_HASH, canonical, leaf_hash
from ledger.usage.locks import connection_of, lock

# Every check-and-record runs these: compiled once, run on the DBAPI cursor (db.prepared).
_HEAD = Prepared(
    select(UsageEntry.seq, UsageEntry.entry_hash).order_by(col(UsageEntry.seq).desc()).limit(1)
)
_INSERT = Prepared(insert(UsageEntry))

# Told (head seq, head hash, new seq, new hash) by each append, before it inserts: the head it
# read under the writer lock, and what it is about to write. Raising refuses the append.
AppendHook = Callable[[int, str, int, str], None]
_hooks: WeakKeyDictionary[Engine, AppendHook] = WeakKeyDictionary()


def watch(engine: Engine, hook: AppendHook | None) -> None:
    """Has every append to ``engine`` in this process call ``hook`` (None: stop)."""
    if hook is None:
        _hooks.pop(engine, None)
    else:
        _hooks[engine] = hook


def append(db: Session | Connection, entry: UsageEntryBase) -> Receipt:
    """Appends ``entry`` after the current head of the log.

    Call inside the caller's transaction (an ORM session or a ``storage.connect`` connection)
    after ``lock`` so that reading the head and inserting are atomic with whatever the caller
    counted.
    """
    conn = connection_of(db)
    lock(conn)
    head = _HEAD.first(conn)
    seq, prev_hash = (1, GENESIS_HASH) if head is None else (int(head[0]) + 1, str(head[1]))
    fields = entry.model_dump()
    entry_hash = leaf_hash(canonical(fields, seq=seq, prev_hash=prev_hash))
    hook = _hooks.get(conn.engine)
    if hook is not None:
        hook(seq - 1, prev_hash, seq, entry_hash)
    _INSERT.execute(conn, **fields, seq=seq, prev_hash=prev_hash, entry_hash=entry_hash)
    return Receipt(seq=seq, entry_hash=entry_hash)


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
    if contact.decision != EntryKind.ALLOWED:
        raise Conflict(f"entry {seq} is not an allowed contact", seq=seq)
    existing = session.exec(
        select(UsageEntry.seq).where(
            UsageEntry.refers_to == seq, UsageEntry.decision == EntryKind.OUTCOME
        )
    ).first()
    if existing is not None:
        raise Conflict(f"entry {seq} already has an outcome (entry {existing})", seq=seq)
    # The outcome entry is about the same contact, company, consumer and grant as the contact.
    about = UsageEntryBase.model_validate(contact, from_attributes=True)
    outcome_entry = about.model_copy(
        update={
            "at": at,
            "decision": EntryKind.OUTCOME.value,
            "reasons": "[]",
            "outcome": outcome.value,
            "refers_to": seq,
        }
    )
    return append(session, outcome_entry)


def size(session: Session) -> int:
    return int(session.exec(select(func.count()).select_from(UsageEntry)).one())
