"""Sign-in with the wallet (EIP-4361) and the short-lived consumer tokens it gives.

A consumer asks for a nonce, signs the EIP-4361 message with their wallet (``personal_sign``),
and gets a token valid for ``session_ttl`` seconds that lets them read their own data.
Nonces are single-use and expire; tokens are HMAC-signed, so verifying one needs no database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils.address import is_address, to_checksum_address
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel

from ledger.db.engine import transaction
from ledger.domain.errors import InvalidInput, Unauthorized

NONCE_TTL = timedelta(minutes=10)
_TOKEN_PREFIX = "qls1"


class AuthNonce(SQLModel, table=True):
    __tablename__ = "auth_nonce"

    nonce: str = Field(primary_key=True)
    created_at: datetime
    used_at: datetime | None = None


class InvalidSignIn(Unauthorized):
    code = "invalid_sign_in"

    def __init__(self, reason: str) -> None:
        super().__init__(f"sign-in refused: {reason}", reason=reason)


class InvalidToken(Unauthorized):
    code = "invalid_token"

    def __init__(self, reason: str) -> None:
        super().__init__(f"consumer token refused: {reason}", reason=reason)


@dataclass(frozen=True, slots=True)
class SignInMessage:
    """The fields of an EIP-4361 message that this service checks."""

    domain: str
    address: str
    uri: str
    chain_id: int
    nonce: str
    issued_at: datetime
    expiration: datetime | None
    statement: str = "Sign in to quota-ledger to see your grants and who contacted you."

    def text(self) -> str:
        """The exact text the wallet signs."""
        lines = [
            f"{self.domain} wants you to sign in with your Ethereum account:",
            self.address,
            "",
            self.statement,
            "",
            f"URI: {self.uri}",
            "Version: 1",
            f"Chain ID: {self.chain_id}",
            f"Nonce: {self.nonce}",
            f"Issued At: {_iso(self.issued_at)}",
        ]
        if self.expiration is not None:
            lines.append(f"Expiration Time: {_iso(self.expiration)}")
        return "\n".join(lines)


def new_nonce(engine: Engine) -> str:
    """A fresh single-use nonce (alphanumeric, as EIP-4361 requires)."""
    nonce = secrets.token_hex(12)
    with transaction(engine) as session:
        session.add(AuthNonce(nonce=nonce, created_at=datetime.now(UTC)))
    return nonce


_HEADER = re.compile(r"^(?P<domain>\S+) wants you to sign in with your Ethereum account:$")
_FIELD = re.compile(r"^(?P<key>[A-Za-z ]+): (?P<value>.+)$")


def parse(text: str) -> SignInMessage:
    """Parses an EIP-4361 message.

    Raises:
        InvalidInput: the text is not a sign-in message.
    """
    lines = text.split("\n")
    header = _HEADER.match(lines[0]) if lines else None
    if header is None or len(lines) < 3 or not is_address(lines[1]):
        raise InvalidInput("not an EIP-4361 sign-in message")
    fields: dict[str, str] = {}
    for line in lines[2:]:
        match = _FIELD.match(line)
        if match:
            fields[match["key"]] = match["value"]
    try:
        return SignInMessage(
            domain=header["domain"],
            address=to_checksum_address(lines[1]),
            uri=fields["URI"],
            chain_id=int(fields["Chain ID"]),
            nonce=fields["Nonce"],
            issued_at=_parse_time(fields["Issued At"]),
            expiration=_parse_time(fields["Expiration Time"])
            if "Expiration Time" in fields
            else None,
        )
    except (KeyError, ValueError) as exc:
        raise InvalidInput(f"sign-in message lacks or garbles a field ({exc})") from exc


def sign_in(
    engine: Engine,
    *,
    text: str,
    signature: bytes,
    domain: str,
    chain_id: int,
    secret: bytes,
    ttl: int,
    now: datetime | None = None,
) -> tuple[str, str, datetime]:
    """Verifies a signed sign-in message and issues a token.

    Returns:
        (token, consumer address, expiry).

    Raises:
        InvalidInput: the message is malformed.
        InvalidSignIn: wrong domain or chain, expired, unknown or used nonce, bad signature.
    """
    at = now or datetime.now(UTC)
    message = parse(text)
    if message.domain != domain:
        raise InvalidSignIn(f"message is for {message.domain}, not {domain}")
    if message.chain_id != chain_id:
        raise InvalidSignIn(f"message is for chain {message.chain_id}")
    if message.expiration is not None and message.expiration <= at:
        raise InvalidSignIn("message expired")
    try:
        signer = Account.recover_message(encode_defunct(text=text), signature=signature)
    except Exception as exc:  # eth-keys raises several types for malformed signatures
        raise InvalidSignIn("malformed signature") from exc
    if signer != message.address:
        raise InvalidSignIn("signature is not the address's")
    _use_nonce(engine, message.nonce, at)
    expires = at + timedelta(seconds=ttl)
    return issue_token(message.address, expires, secret), message.address, expires


def issue_token(address: str, expires: datetime, secret: bytes) -> str:
    body = f"{to_checksum_address(address)}.{int(expires.timestamp())}"
    return f"{_TOKEN_PREFIX}.{body}.{_mac(body, secret)}"


def verify_token(token: str, secret: bytes, now: datetime | None = None) -> str:
    """The consumer address a token stands for.

    Raises:
        InvalidToken: malformed, forged or expired.
    """
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != _TOKEN_PREFIX:
        raise InvalidToken("malformed")
    body = f"{parts[1]}.{parts[2]}"
    if not hmac.compare_digest(parts[3], _mac(body, secret)):
        raise InvalidToken("bad signature")
    if not parts[2].isdigit() or int(parts[2]) <= (now or datetime.now(UTC)).timestamp():
        raise InvalidToken("expired")
    return parts[1]


def _use_nonce(engine: Engine, nonce: str, at: datetime) -> None:
    with transaction(engine) as session:
        record = session.get(AuthNonce, nonce)
        if record is None or record.used_at is not None:
            raise InvalidSignIn("unknown or already used nonce")
        created = record.created_at.replace(tzinfo=record.created_at.tzinfo or UTC)
        if at - created > NONCE_TTL:
            raise InvalidSignIn("nonce expired")
        record.used_at = at
        session.add(record)


def _mac(body: str, secret: bytes) -> str:
    digest = hmac.new(secret, body.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("time without zone")
    return parsed
