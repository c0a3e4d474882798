"""API keys: who is calling, in which role, for which company.

A key is shown once, at creation: ``qlk_<id>_<secret>``. Only the SHA-256 of the secret is
stored (the secret is 256 random bits, so a fast hash is enough), compared in constant time.
Keys are revocable; a revoked key is refused from the next request on.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import BigInteger
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel, col, select

from ledger.db.engine import transaction
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


def authenticate(engine: Engine, token: str) -> Principal:
    """The principal of a presented token.

    Raises:
        InvalidApiKey: the token is malformed, unknown or revoked.
    """
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        raise InvalidApiKey()
    with transaction(engine) as session:
        record = session.get(ApiKey, parts[1])
    if record is None or record.revoked_at is not None:
        raise InvalidApiKey()
    if not hmac.compare_digest(record.secret_hash, _hash(parts[2])):
        raise InvalidApiKey()
    return Principal(key_id=record.id, role=Role(record.role), company_id=record.company_id)


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
        return record


def list_keys(engine: Engine, *, company_id: int | None = None) -> list[ApiKey]:
    with transaction(engine) as session:
        query = select(ApiKey).order_by(col(ApiKey.created_at))
        if company_id is not None:
            query = query.where(ApiKey.company_id == company_id)
        return list(session.exec(query).all())


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
