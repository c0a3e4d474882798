"""Sign-in nonces kept bounded: expired ones are deleted when a new one is asked for, and no
more than a set number are kept at once, so that anonymous callers cannot fill the table.

A nonce lives ``signin.NONCE_TTL``; once past it, used or not, it can never sign anyone in, so
deleting it changes no answer (an unknown nonce is refused like an expired one).

Example:
    >>> issue_nonce(engine=engine, max_kept=10_000)
    '5f0c...'
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, func
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from ledger.consent import signin
from ledger.consent.signin import NONCE_TTL, AuthNonce
from ledger.db.engine import transaction
from ledger.domain.errors import TooManyRequests


class TooManyNonces(TooManyRequests):
    code = "too_many_sign_in_nonces"

    def __init__(self, kept: int, retry_after: int) -> None:
        super().__init__(
            f"{kept} sign-in nonces are outstanding, the most kept: retry in {retry_after} s",
            kept=kept,
            retry_after=retry_after,
        )


def issue_nonce(*, engine: Engine, max_kept: int, now: datetime | None = None) -> str:
    """Deletes expired nonces and issues a fresh one.

    Args:
        engine: the ledger's database.
        max_kept: the most nonces kept at once (issued within ``NONCE_TTL``, used or not).
        now: the current time (UTC).

    Returns:
        The new nonce.

    Raises:
        TooManyNonces: ``max_kept`` nonces are already kept; nothing was written.
    """
    at = now or datetime.now(UTC)
    with transaction(engine) as session:
        session.execute(delete(AuthNonce).where(col(AuthNonce.created_at) < at - NONCE_TTL))
        kept, oldest = session.execute(
            select(func.count(), func.min(AuthNonce.created_at)).select_from(AuthNonce)
        ).one()
    if kept >= max_kept:
        frees_at = _utc(oldest) + NONCE_TTL
        raise TooManyNonces(kept, max(1, int((frees_at - at).total_seconds()) + 1))
    return signin.new_nonce(engine)


def kept(engine: Engine) -> int:
    """How many nonces the table holds."""
    with transaction(engine) as session:
        return int(session.execute(select(func.count()).select_from(AuthNonce)).scalar_one())


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
