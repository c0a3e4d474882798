"""Idempotency keys: a retried request never records twice, whenever the first one died.

A key is stored with its answer in the transaction that records the request's usage entry
(``Checker.check(on_record=...)``), so a crash at any moment leaves both or neither: a retry
gets the stored answer and its receipt, or runs afresh and records once. No key is ever held
by a request in flight. Two requests with one key both run; the log's writer lock orders
them, the second finds the key taken when it stores it (the primary key refuses the row), so
its own entry rolls back with it and it answers the first one's answer. A request that
records nothing stores its answer on its own.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel, select

from ledger.db.engine import connect, transaction
from ledger.domain.errors import Conflict

# Stores a key and its answer on the caller's connection, inside the transaction that records.
Seal = Callable[[Connection, dict[str, Any]], None]


class IdempotentRequest(SQLModel, table=True):
    __tablename__ = "idempotent_request"

    company_id: int = Field(sa_type=BigInteger, primary_key=True)
    key: str = Field(primary_key=True, max_length=200)
    fingerprint: str
    # JSON. Always written with the row; NULL only in rows of releases that claimed a key
    # before recording (a claim whose request may have died: its outcome is unknown).
    response: str | None = None
    created_at: datetime


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"

    def __init__(self, reason: str) -> None:
        super().__init__(f"idempotency key conflict: {reason}", reason=reason)


def fingerprint(body: Any) -> str:
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def run_once(
    engine: Engine,
    *,
    company_id: int,
    key: str,
    body: Any,
    records: bool,
    run: Callable[[Seal], dict[str, Any]],
) -> tuple[dict[str, Any], bool]:
    """Runs ``run`` unless ``key`` already has an answer for this company; replays it if so.

    Args:
        engine: the database of the usage log.
        company_id: the company the key belongs to.
        key: the client's idempotency key.
        body: the request, whose fingerprint the key is bound to.
        records: the request asks to record. Its answer is then kept only if ``run`` sealed it
            with its record: an answer that recorded nothing (the database was unavailable)
            is not kept, so that a retry with the key can still record.
        run: does the work. Given ``seal``, it calls ``seal(conn, answer)`` inside the
            transaction that records, before commit, and returns the same answer.

    Returns:
        (answer, replayed).

    Raises:
        IdempotencyConflict: the key was used with another body, or its only trace is a claim
            without an answer left by an earlier release.
    """
    digest = fingerprint(body)
    stored = _stored(engine, company_id, key, digest)
    if stored is not None:
        return stored, True
    sealed = False

    def seal(conn: Connection, answer: dict[str, Any]) -> None:
        nonlocal sealed
        conn.execute(insert(IdempotentRequest), [_row(company_id, key, digest, answer)])
        sealed = True

    try:
        answer = run(seal)
        if not sealed and not records:
            with transaction(engine) as session:
                session.add(IdempotentRequest(**_row(company_id, key, digest, answer)))
    except IntegrityError:
        # Another request with this key committed first; whatever this one wrote rolled back.
        stored = _stored(engine, company_id, key, digest)
        if stored is None:
            raise
        return stored, True
    return answer, False


def _stored(engine: Engine, company_id: int, key: str, digest: str) -> dict[str, Any] | None:
    with connect(engine, read_only=True) as conn:
        row = conn.execute(
            select(IdempotentRequest.fingerprint, IdempotentRequest.response).where(
                IdempotentRequest.company_id == company_id, IdempotentRequest.key == key
            )
        ).first()
    if row is None:
        return None
    if row.fingerprint != digest:
        raise IdempotencyConflict("the key was used with a different request")
    if row.response is None:
        raise IdempotencyConflict(
            "the key was claimed by an earlier release and has no answer: use a new key"
        )
    answer: dict[str, Any] = json.loads(row.response)
    return answer


def _row(company_id: int, key: str, digest: str, answer: dict[str, Any]) -> dict[str, Any]:
    return {
        "company_id": company_id,
        "key": key,
        "fingerprint": digest,
        "response": json.dumps(answer),
        "created_at": datetime.now(UTC),
    }
