"""Consumer sessions: the tokens of a wallet sign-in, and the three things that end them early.

A consumer token (``ledger.consent.signin``) is HMAC-signed and lives ``session_ttl`` seconds.
It carries its id, when it was issued and its consumer's epoch at sign-in, so that it can be
ended before it expires, in every API process at once, since all of them read one database:

- **sign-out**: its id goes into ``revoked_token`` with its expiry; the row is deleted once
  the token has expired anyway (``purge``, run on every sign-out).
- **sign-out everywhere**: ``consumer_sign_out`` keeps, per consumer, the time before which
  every token of theirs was issued, until the last of those tokens has expired.
- **revoke-all**: the consumer's epoch moves on chain and the event index records it
  (``ix_consumer.epoch``); a token of another epoch is refused. Nothing is written for it.

``verify`` reads all three, and the index's checkpoint, in one statement of primary-key
lookups, on a read-only snapshot: one round trip per consumer request. It fails closed: a
database that cannot be read, or an index that holds nothing yet, refuses the token (503).

A revoke-all ends the tokens once the index holds it: a relay through this API waits for that
before answering; one relayed elsewhere is seen within the index's lag.

Example:
    >>> token, consumer, expires = sign_in(engine=engine, text=text, signature=sig, ...)
    >>> claims = verify(engine=engine, token=token, secret=secret)
    >>> sign_out(engine=engine, token=claims)
    >>> verify(engine=engine, token=token, secret=secret)  # raises InvalidToken
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, bindparam, delete, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel, col

from ledger.consent import signin
from ledger.consent.signin import ConsumerToken, ContractWallets, InvalidToken
from ledger.db.engine import connect
from ledger.db.prepared import Prepared
from ledger.domain.errors import Unavailable
from ledger.index.tables import CheckpointRow, ConsumerRow, table_of


class RevokedToken(SQLModel, table=True):
    """A signed-out token, kept until it would have expired."""

    __tablename__ = "revoked_token"

    token_id: str = Field(primary_key=True)
    consumer: str
    expires_at: int = Field(sa_type=BigInteger, index=True)  # Unix seconds


class ConsumerSignOut(SQLModel, table=True):
    """A consumer's sign-out everywhere: tokens issued before ``before_ms`` are refused."""

    __tablename__ = "consumer_sign_out"

    consumer: str = Field(primary_key=True)
    before_ms: int = Field(sa_type=BigInteger)  # Unix milliseconds
    # When the last token issued before ``before_ms`` has expired: the row is useless after.
    expires_at: int = Field(sa_type=BigInteger, index=True)  # Unix seconds


class TokenCheckUnavailable(Unavailable):
    code = "token_check_unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__(f"consumer tokens cannot be checked: {detail}", cause=detail)


_REVOKED = table_of(RevokedToken)
_SIGN_OUT = table_of(ConsumerSignOut)
_CONSUMER = table_of(ConsumerRow)
_CHECKPOINT = table_of(CheckpointRow)

_EPOCH = select(_CONSUMER.c.epoch).where(_CONSUMER.c.consumer == bindparam("consumer"))
_INDEXED = select(_CHECKPOINT.c.block_number).where(_CHECKPOINT.c.id == 1)
# Every consumer request runs this: four primary-key lookups, one statement, one round trip.
_CHECK = Prepared(
    select(
        select(_REVOKED.c.token_id)
        .where(_REVOKED.c.token_id == bindparam("token_id"))
        .scalar_subquery(),
        select(_SIGN_OUT.c.before_ms)
        .where(_SIGN_OUT.c.consumer == bindparam("consumer"))
        .scalar_subquery(),
        _EPOCH.scalar_subquery(),
        _INDEXED.scalar_subquery(),
    )
)
_CURRENT_EPOCH = Prepared(select(_EPOCH.scalar_subquery(), _INDEXED.scalar_subquery()))


def sign_in(
    *,
    engine: Engine,
    text: str,
    signature: bytes,
    domain: str,
    uri: str,
    chain_id: int,
    secret: bytes,
    ttl: int,
    wallets: ContractWallets | None = None,
    now: datetime | None = None,
) -> tuple[str, str, datetime]:
    """Verifies a signed sign-in message and issues a token bound to the consumer's epoch.

    Args are those of ``signin.sign_in``; the epoch is the index's.

    Returns:
        (token, consumer address, expiry).

    Raises:
        MalformedSignIn, InvalidSignIn: as ``signin.sign_in``.
        TokenCheckUnavailable: the index holds nothing yet.
        DatabaseUnavailable: the database cannot be read.
    """
    return signin.sign_in(
        engine,
        text=text,
        signature=signature,
        domain=domain,
        uri=uri,
        chain_id=chain_id,
        secret=secret,
        ttl=ttl,
        epoch_of=lambda consumer: current_epoch(engine=engine, consumer=consumer),
        wallets=wallets,
        now=now,
    )


def current_epoch(*, engine: Engine, consumer: str) -> int:
    """The consumer's epoch as the event index holds it (0 before any revoke-all).

    Raises:
        TokenCheckUnavailable: the index holds nothing yet.
        DatabaseUnavailable: the database cannot be read.
    """
    with connect(engine, read_only=True) as conn:
        row = _CURRENT_EPOCH.first(conn, consumer=consumer)
    epoch, indexed = row if row is not None else (None, None)
    if indexed is None:
        raise TokenCheckUnavailable("the event index holds nothing yet")
    return int(epoch or 0)


def verify(
    *, engine: Engine, token: str, secret: bytes, now: datetime | None = None
) -> ConsumerToken:
    """What a consumer token states, if it is still good: signed, unexpired, not signed out,
    and of its consumer's current epoch.

    Args:
        engine: the database the API processes share.
        token: the bearer token.
        secret: the tokens' HMAC key.
        now: the current time (tests).

    Returns:
        The token's claims.

    Raises:
        InvalidToken: unknown format, forged, expired, signed out, or of an older epoch.
        TokenCheckUnavailable: the index holds nothing yet.
        DatabaseUnavailable: the database cannot be read.
    """
    claims = signin.verify_token(token, secret, now)  # no database for garbage or forgeries
    with connect(engine, read_only=True) as conn:
        row = _CHECK.first(conn, token_id=claims.token_id, consumer=claims.consumer)
    if row is None:  # one row always, whatever the tables hold
        raise TokenCheckUnavailable("the revocation check returned nothing")
    revoked, before_ms, epoch, indexed = row
    if indexed is None:
        raise TokenCheckUnavailable("the event index holds nothing yet")
    if revoked is not None:
        raise InvalidToken("signed out")
    if before_ms is not None and claims.issued_at_ms <= before_ms:
        raise InvalidToken("signed out everywhere")
    current = int(epoch or 0)
    if current != claims.epoch:
        raise InvalidToken(
            f"issued in epoch {claims.epoch}, the consumer's epoch is now {current} "
            "(revoke-all): sign in again"
        )
    return claims


def sign_out(*, engine: Engine, token: ConsumerToken, now: datetime | None = None) -> None:
    """Ends one token in every process (and deletes the revocations that have expired).

    Raises:
        DatabaseUnavailable: the database cannot be written; the token still works.
    """
    at = _seconds(now)
    try:
        with connect(engine) as conn:
            _purge(conn, at)
            conn.execute(
                _REVOKED.insert().values(
                    token_id=token.token_id, consumer=token.consumer, expires_at=token.expires_at
                )
            )
    except IntegrityError:
        pass  # signed out already, by a concurrent request with the same token


def sign_out_everywhere(
    *, engine: Engine, consumer: str, ttl: int, now: datetime | None = None
) -> None:
    """Ends every token the consumer holds now, in every process; later sign-ins work.

    Args:
        engine: the database the API processes share.
        consumer: the consumer's address, as in their tokens.
        ttl: the longest a token lives (``session_ttl``): the record is kept that long.
        now: the current time (tests).

    Raises:
        DatabaseUnavailable: the database cannot be written; the tokens still work.
    """
    at = now or datetime.now(UTC)
    before_ms = int(at.timestamp() * 1000)
    expires_at = int(at.timestamp()) + ttl + 1

    def record() -> None:
        with connect(engine) as conn:
            _purge(conn, int(at.timestamp()))
            moved = conn.execute(
                update(ConsumerSignOut)
                .where(col(ConsumerSignOut.consumer) == consumer)
                .values(before_ms=before_ms, expires_at=expires_at)
            )
            if moved.rowcount == 0:
                conn.execute(
                    _SIGN_OUT.insert().values(
                        consumer=consumer, before_ms=before_ms, expires_at=expires_at
                    )
                )

    try:
        record()
    except IntegrityError:
        record()  # a concurrent first sign-out everywhere inserted the row: now it is there


def purge(*, engine: Engine, now: datetime | None = None) -> int:
    """Deletes the sign-outs of tokens that have expired anyway; returns how many.

    Raises:
        DatabaseUnavailable: the database cannot be written.
    """
    with connect(engine) as conn:
        return _purge(conn, _seconds(now))


def _purge(conn: Connection, at: int) -> int:
    tokens = conn.execute(delete(RevokedToken).where(col(RevokedToken.expires_at) <= at))
    everywhere = conn.execute(delete(ConsumerSignOut).where(col(ConsumerSignOut.expires_at) <= at))
    return int(tokens.rowcount) + int(everywhere.rowcount)


def _seconds(now: datetime | None) -> int:
    return int((now or datetime.now(UTC)).timestamp())
