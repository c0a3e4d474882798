"""Idempotency keys: a retried request never records twice.

The first request with a key claims it (a row whose primary key is the company and the key)
before doing any work, and stores its answer when done. A retry gets the stored answer; a
retry while the first is still running, or with a different body, is a conflict.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel

from ledger.db.engine import transaction
from ledger.domain.errors import Conflict


class IdempotentRequest(SQLModel, table=True):
    __tablename__ = "idempotent_request"

    company_id: int = Field(sa_type=BigInteger, primary_key=True)
    key: str = Field(primary_key=True, max_length=200)
    fingerprint: str
    response: str | None = None  # JSON, once the first request finished
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
    run: Callable[[], dict[str, Any]],
) -> tuple[dict[str, Any], bool]:
    """Runs ``run`` the first time ``key`` is seen for this company; replays its answer after.

    Returns:
        (answer, replayed).

    Raises:
        IdempotencyConflict: the key was used with another body, or its first request has
            not finished (or died before answering: the key stays spent, use a new one).
    """
    digest = fingerprint(body)
    try:
        with transaction(engine) as session:
            session.add(
                IdempotentRequest(
                    company_id=company_id, key=key, fingerprint=digest, created_at=datetime.now(UTC)
                )
            )
    except IntegrityError:
        with transaction(engine) as session:
            seen = session.get(IdempotentRequest, (company_id, key))
        if seen is None or seen.fingerprint != digest:
            raise IdempotencyConflict("the key was used with a different request") from None
        if seen.response is None:
            raise IdempotencyConflict("the first request with this key has not finished") from None
        answer: dict[str, Any] = json.loads(seen.response)
        return answer, True
    try:
        answer = run()
    except Exception:
        # Nothing was recorded: free the key so that the client can retry with it.
        with transaction(engine) as session:
            claimed = session.get(IdempotentRequest, (company_id, key))
            if claimed is not None:
                session.delete(claimed)
        raise
    with transaction(engine) as session:
        claimed = session.get(IdempotentRequest, (company_id, key))
        assert claimed is not None
        claimed.response = json.dumps(answer)
        session.add(claimed)
    return answer, False
