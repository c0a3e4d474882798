"""API keys: who is calling, in which role, for which company.

A key is shown once, at creation: ``qlk_<id>_<secret>``. Only the SHA-256 of the secret is
stored (the secret is 256 random bits, so a fast hash is enough), compared in constant time.
Keys are revocable: a revoked key is refused from the next request on by the process that
revoked it, and by every other process within the ``max_age`` of its key cache.

Every request authenticates, so each process keeps what it last read of each key in memory
for ``max_age`` seconds (``QL_API_KEY_CACHE_SECONDS``): a request then reads no database, and
a read, when it has to happen, is a read-only snapshot that never takes SQLite's write lock.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import BigInteger
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel, col, select

from ledger.db.engine import connect, transaction
from ledger.domain.errors import NotFound, Unauthorized

PREFIX = "qlk"


class Role(StrEnum):
    COMPANY = "company"  # checks and reads for one company
    REGULATOR = "regulator"  # company registry, log export
    OPERATOR = "operator"  # opposition lists, keys, health details


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"

    id: str = Field(primary_key=True)  # public part of the key, safe to log
    role: str
    company_id: int | None = Field(default=None, sa_type=BigInteger, index=True)
    label: str = ""
    secret_hash: str
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    key_id: str
    role: Role
    company_id: int | None = None


class InvalidApiKey(Unauthorized):
    code = "invalid_api_key"

    def __init__(self) -> None:
        super().__init__("missing, malformed, unknown or revoked API key")


def create_key(
    engine: Engine, *, role: Role, company_id: int | None = None, label: str = ""
) -> tuple[str, ApiKey]:
    """Creates a key; returns the full token (show it once, it is not stored) and the record.

    Raises:
        ValueError: a company key without a company, or a company on another role's key.
    """
    if (role is Role.COMPANY) != (company_id is not None):
        raise ValueError("company keys, and only they, name a company")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    record = ApiKey(
        id=key_id,
        role=role.value,
        company_id=company_id,
        label=label,
        secret_hash=_hash(secret),
        created_at=datetime.now(UTC),
    )
    with transaction(engine) as session:
        session.add(record)
    return f"{PREFIX}_{key_id}_{secret}", record


@dataclass(frozen=True, slots=True)
class _Seen:
    """A key as last read: its hash and principal (None once revoked), and when it was read."""

    secret_hash: str
    principal: Principal | None
    at: float  # time.monotonic() of the read


# What each process last read of each key, per database. Unknown key ids are not kept (a flood
# of made-up ids would fill it); the bound caps what known ids can take.
_SEEN: weakref.WeakKeyDictionary[Engine, dict[str, _Seen]] = weakref.WeakKeyDictionary()
_MAX_SEEN = 10_000


def authenticate(engine: Engine, token: str, *, max_age: float = 0.0) -> Principal:
    """The principal of a presented token.

    Args:
        engine: the database holding the keys.
        token: the presented ``qlk_<id>_<secret>``.
        max_age: seconds for which what this process last read of the key stands in for a
            read (0: always read). A key revoked by another process is still accepted here
            for at most that long.

    Raises:
        InvalidApiKey: the token is malformed, unknown or revoked.
        DatabaseUnavailable: the key had to be read and the database cannot be.
    """
    principal = cached(engine, token, max_age=max_age)
    if principal is not None:
        return principal
    key_id, secret = _parts(token)
    seen = _read(engine, key_id)
    return _verify(seen, secret)


def cached(engine: Engine, token: str, *, max_age: float) -> Principal | None:
    """``authenticate`` from what this process read less than ``max_age`` seconds ago, or
    None when that would need a database read (never blocks: callable from an event loop).

    Raises:
        InvalidApiKey: the token is malformed, or its key known here as revoked or another.
    """
    key_id, secret = _parts(token)
    seen = _SEEN.get(engine, {}).get(key_id)
    if seen is None or time.monotonic() - seen.at >= max_age:
        return None
    return _verify(seen, secret)


def _parts(token: str) -> tuple[str, str]:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        raise InvalidApiKey()
    return parts[1], parts[2]


def _read(engine: Engine, key_id: str) -> _Seen:
    table = ApiKey.__table__  # type: ignore[attr-defined]
    query = table.select().where(table.c.id == key_id)
    with connect(engine, read_only=True) as conn:
        row = conn.execute(query).first()
    if row is None:
        raise InvalidApiKey()
    principal = (
        None
        if row.revoked_at is not None
        else Principal(key_id=row.id, role=Role(row.role), company_id=row.company_id)
    )
    seen = _Seen(row.secret_hash, principal, time.monotonic())
    known = _SEEN.setdefault(engine, {})
    if len(known) >= _MAX_SEEN:
        known.clear()
    known[key_id] = seen
    return seen


def _verify(seen: _Seen, secret: str) -> Principal:
    if seen.principal is None or not hmac.compare_digest(seen.secret_hash, _hash(secret)):
        raise InvalidApiKey()
    return seen.principal


def revoke_key(engine: Engine, key_id: str) -> ApiKey:
    """Revokes a key (idempotent).

    Raises:
        NotFound: no such key.
    """
    with transaction(engine) as session:
        record = session.get(ApiKey, key_id)
        if record is None:
            raise NotFound(f"no API key {key_id}", key_id=key_id)
        if record.revoked_at is None:
            record.revoked_at = datetime.now(UTC)
            session.add(record)
    # This process refuses it from the next request on; the others once their copy expires.
    _SEEN.get(engine, {}).pop(key_id, None)
    return record


def list_keys(engine: Engine, *, company_id: int | None = None) -> list[ApiKey]:
    with transaction(engine) as session:
        query = select(ApiKey).order_by(col(ApiKey.created_at))
        if company_id is not None:
            query = query.where(ApiKey.company_id == company_id)
        return list(session.exec(query).all())


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
