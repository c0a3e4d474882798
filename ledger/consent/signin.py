"""Sign-in with the wallet (EIP-4361) and the short-lived consumer tokens it gives.

A consumer asks for a nonce, signs the EIP-4361 message with their wallet (``personal_sign``),
and gets a token valid for ``session_ttl`` seconds that lets them read their own data.
Nonces are single-use and expire. Tokens are HMAC-signed and carry their own id, the time they
were issued and the consumer's epoch at sign-in, so that a sign-out (by id or by time) and a
revoke-all (the epoch moves) can end them early: ``verify_token`` checks only what the token
itself proves; ``ledger.services.sessions`` checks it against those in the database.

The message is parsed line by line against the EIP's ABNF: every field in its place, nothing
unknown, nothing twice. The PyPI ``siwe`` package would do this, but it pins web3 < 8 and
eth-account < 0.14. Smart-contract wallets sign in through ERC-1271, as they relay.

Example:
    >>> message = parse(text)  # raises MalformedSignIn naming the first line that is wrong
    >>> token, consumer, expires = sign_in(engine, text=text, signature=sig, epoch_of=..., ...)
    >>> verify_token(token, secret).consumer == consumer
    True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol
from urllib.parse import urlsplit

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel, col

from ledger.db.engine import connect, transaction
from ledger.domain.errors import InvalidInput, Unauthorized

NONCE_TTL = timedelta(minutes=10)
# How far ahead of ours a wallet's clock may be when it writes Issued At and Not Before.
CLOCK_SKEW = timedelta(minutes=1)
# v2: address, epoch, issued-at (ms), expiry (s), id. The v1 tokens (address, expiry) carried
# nothing a sign-out or a revoke-all could name: they are refused as an unknown format.
_TOKEN_PREFIX = "qls2"
_TOKEN_FIELDS = 7
_TOKEN_ID_RE = re.compile(r"[0-9a-f]{32}")
# secp256k1's group order: an ECDSA signature (r, s) is also valid as (r, n - s). Like
# OpenZeppelin's ECDSA, which the contract uses for relays, only the low half of s is accepted.
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HEADER_END = " wants you to sign in with your Ethereum account:"
STATEMENT = "Sign in to quota-ledger to see your grants and who contacted you."


class AuthNonce(SQLModel, table=True):
    __tablename__ = "auth_nonce"

    nonce: str = Field(primary_key=True)
    created_at: datetime
    used_at: datetime | None = None


class InvalidSignIn(Unauthorized):
    code = "invalid_sign_in"

    def __init__(self, reason: str) -> None:
        super().__init__(f"sign-in refused: {reason}", reason=reason)


class MalformedSignIn(InvalidInput):
    """The text does not follow the EIP-4361 grammar."""

    code = "malformed_sign_in"

    def __init__(self, line: int, expected: str) -> None:
        super().__init__(
            f"not an EIP-4361 message: line {line} should be {expected}",
            line=line,
            expected=expected,
        )


class InvalidToken(Unauthorized):
    code = "invalid_token"

    def __init__(self, reason: str) -> None:
        super().__init__(f"consumer token refused: {reason}", reason=reason)


@dataclass(frozen=True, slots=True)
class ConsumerToken:
    """What a consumer token states, once its MAC and expiry are checked."""

    consumer: str  # checksummed address
    epoch: int  # the consumer's epoch (index) at sign-in: a revoke-all moves it
    issued_at_ms: int  # Unix milliseconds
    expires_at: int  # Unix seconds
    token_id: str  # 128 random bits, hex: what a sign-out names


class ContractWallets(Protocol):
    """The chain, as far as ERC-1271 sign-in needs it (``ledger.chain.client.Chain`` is one)."""

    def has_code(self, address: str) -> bool: ...

    def is_valid_erc1271(self, wallet: str, digest: bytes, signature: bytes) -> bool: ...


@dataclass(frozen=True, slots=True)
class SignInMessage:
    """An EIP-4361 message: every field the grammar allows, in its order."""

    domain: str
    address: str
    uri: str
    chain_id: int
    nonce: str
    issued_at: datetime
    expiration: datetime | None = None
    statement: str | None = STATEMENT
    not_before: datetime | None = None
    request_id: str | None = None
    resources: tuple[str, ...] | None = None
    scheme: str | None = None
    version: str = "1"

    def text(self) -> str:
        """The exact text the wallet signs."""
        origin = f"{self.scheme}://{self.domain}" if self.scheme else self.domain
        lines = [f"{origin}{_HEADER_END}", self.address, ""]
        if self.statement is not None:
            lines.append(self.statement)
        lines += [
            "",
            f"URI: {self.uri}",
            f"Version: {self.version}",
            f"Chain ID: {self.chain_id}",
            f"Nonce: {self.nonce}",
            f"Issued At: {_iso(self.issued_at)}",
        ]
        if self.expiration is not None:
            lines.append(f"Expiration Time: {_iso(self.expiration)}")
        if self.not_before is not None:
            lines.append(f"Not Before: {_iso(self.not_before)}")
        if self.request_id is not None:
            lines.append(f"Request ID: {self.request_id}")
        if self.resources is not None:
            lines += ["Resources:", *(f"- {resource}" for resource in self.resources)]
        return "\n".join(lines)


def new_nonce(engine: Engine) -> str:
    """A fresh single-use nonce (alphanumeric, as EIP-4361 requires)."""
    nonce = secrets.token_hex(12)
    with transaction(engine) as session:
        session.add(AuthNonce(nonce=nonce, created_at=datetime.now(UTC)))
    return nonce


# ----- the grammar (EIP-4361 "ABNF Message Format", with RFC 3986 and RFC 3339 terms) -----

_PCT = r"%[0-9A-Fa-f]{2}"
_UNRESERVED = r"A-Za-z0-9\-._~"
_SUB_DELIMS = r"!$&'()*+,;="
_SCHEME = r"[A-Za-z][A-Za-z0-9+\-.]*"
# authority = [ userinfo "@" ] host [ ":" port ]; host = IP-literal / IPv4address / reg-name
_AUTHORITY = (
    rf"(?:(?:[{_UNRESERVED}{_SUB_DELIMS}:]|{_PCT})*@)?"
    rf"(?:\[[0-9A-Fa-f:.]+\]|\[v[0-9A-Fa-f]+\.[{_UNRESERVED}{_SUB_DELIMS}:]+\]"
    rf"|(?:[{_UNRESERVED}{_SUB_DELIMS}]|{_PCT})*)"
    r"(?::[0-9]*)?"
)
# URI = scheme ":" hier-part [ "?" query ] [ "#" fragment ], by its character set: the
# service compares the URI with its own, so only its syntax matters here.
_URI = rf"{_SCHEME}:(?:[{_UNRESERVED}{_SUB_DELIMS}:/?#\[\]@]|{_PCT})*"
_DATE_TIME = (
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]"
    r"(?P<time>[0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.(?P<fraction>[0-9]+))?"
    r"(?P<offset>[Zz]|[+\-][0-9]{2}:[0-9]{2})"
)

_HEADER_RE = re.compile(rf"(?:(?P<scheme>{_SCHEME})://)?(?P<domain>{_AUTHORITY}){_HEADER_END}")
_ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}")
# statement = *( reserved / unreserved / " " )
_STATEMENT_RE = re.compile(rf"[{_UNRESERVED}{_SUB_DELIMS}:/?#\[\]@ ]*")
_URI_RE = re.compile(_URI)
_CHAIN_ID_RE = re.compile(r"[0-9]+")
_NONCE_RE = re.compile(r"[A-Za-z0-9]{8,}")
_DATE_TIME_RE = re.compile(_DATE_TIME)
# request-id = *pchar
_REQUEST_ID_RE = re.compile(rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:@]|{_PCT})*")
_VERSION_RE = re.compile("1")
_NOTHING_RE = re.compile("")


class _Lines:
    """A cursor over the message's lines that names the line a mismatch is on."""

    def __init__(self, text: str) -> None:
        self._lines = text.split("\n")
        self.number = 0  # of the line last taken, 1-based

    def more(self) -> bool:
        return self.number < len(self._lines)

    def next_starts(self, prefix: str) -> bool:
        return self.more() and self._lines[self.number].startswith(prefix)

    def next_is_empty(self) -> bool:
        return self.more() and self._lines[self.number] == ""

    def take(self, expected: str) -> str:
        if not self.more():
            raise MalformedSignIn(self.number + 1, expected)
        self.number += 1
        return self._lines[self.number - 1]

    def empty(self) -> None:
        if self.take("empty") != "":
            raise MalformedSignIn(self.number, "empty")

    def field(self, prefix: str, pattern: re.Pattern[str], expected: str) -> str:
        line = self.take(f"'{prefix}{expected}'")
        value = line.removeprefix(prefix)
        if not line.startswith(prefix) or pattern.fullmatch(value) is None:
            raise MalformedSignIn(self.number, f"'{prefix}{expected}'")
        return value

    def time(self, prefix: str) -> datetime:
        value = self.field(prefix, _DATE_TIME_RE, "<RFC 3339 date-time>")
        try:
            return _parse_time(value)
        except ValueError:
            raise MalformedSignIn(self.number, f"'{prefix}<RFC 3339 date-time>'") from None


def parse(text: str) -> SignInMessage:
    """Parses an EIP-4361 message, strictly by the EIP's grammar.

    Args:
        text: the message as signed: LF line ends, no trailing newline.

    Returns:
        Its fields.

    Raises:
        MalformedSignIn: the text is not an EIP-4361 message (the first wrong line is named).
    """
    lines = _Lines(text)
    header = _HEADER_RE.fullmatch(lines.take("the header"))
    if header is None:
        raise MalformedSignIn(1, f"'[scheme://]domain{_HEADER_END}'")
    address = lines.take("the address")
    # EIP-55 mixed-case checksum: a typo in the address cannot sign in as someone else.
    if _ADDRESS_RE.fullmatch(address) is None or to_checksum_address(address) != address:
        raise MalformedSignIn(2, "an EIP-55 checksummed address")
    lines.empty()
    # LF [ statement LF ] LF: no statement leaves two empty lines, an empty one three.
    statement: str | None = lines.take("a statement or empty")
    if statement == "" and not lines.next_is_empty():
        statement = None
    if statement is not None:
        if _STATEMENT_RE.fullmatch(statement) is None:
            raise MalformedSignIn(lines.number, "a statement of RFC 3986 reserved/unreserved")
        lines.empty()
    uri = lines.field("URI: ", _URI_RE, "<RFC 3986 URI>")
    version = lines.field("Version: ", _VERSION_RE, "1")
    chain_id = int(lines.field("Chain ID: ", _CHAIN_ID_RE, "<digits>"))
    nonce = lines.field("Nonce: ", _NONCE_RE, "<8 or more letters and digits>")
    issued_at = lines.time("Issued At: ")
    expiration = lines.time("Expiration Time: ") if lines.next_starts("Expiration Time:") else None
    not_before = lines.time("Not Before: ") if lines.next_starts("Not Before:") else None
    request_id = (
        lines.field("Request ID: ", _REQUEST_ID_RE, "<RFC 3986 pchars>")
        if lines.next_starts("Request ID:")
        else None
    )
    resources: tuple[str, ...] | None = None
    if lines.next_starts("Resources:"):
        lines.field("Resources:", _NOTHING_RE, "")
        found: list[str] = []
        while lines.more():
            found.append(lines.field("- ", _URI_RE, "<RFC 3986 URI>"))
        resources = tuple(found)
    if lines.more():
        raise MalformedSignIn(lines.number + 1, "absent: the message has ended")
    return SignInMessage(
        scheme=header["scheme"],
        domain=header["domain"],
        address=address,
        statement=statement,
        uri=uri,
        version=version,
        chain_id=chain_id,
        nonce=nonce,
        issued_at=issued_at,
        expiration=expiration,
        not_before=not_before,
        request_id=request_id,
        resources=resources,
    )


def sign_in(
    engine: Engine,
    *,
    text: str,
    signature: bytes,
    domain: str,
    uri: str,
    chain_id: int,
    secret: bytes,
    ttl: int,
    epoch_of: Callable[[str], int],
    wallets: ContractWallets | None = None,
    now: datetime | None = None,
) -> tuple[str, str, datetime]:
    """Verifies a signed sign-in message, uses up its nonce and issues a token.

    Args:
        engine: where the nonces are.
        text: the EIP-4361 message, as signed.
        signature: the EOA's 65-byte ``personal_sign`` signature, or a smart-contract wallet's.
        domain: this service's authority (host[:port]); the message's domain must be it.
        uri: this service's sign-in URI; the message's URI must be it, and a scheme in the
            message must be its scheme.
        chain_id: the chain the message must name (the one ``wallets`` reads).
        secret: the token's HMAC key.
        ttl: seconds the token lives.
        epoch_of: the consumer's current epoch, asked once the signature and nonce are good;
            the token carries it, so that a later revoke-all (a new epoch) ends the token.
        wallets: the chain, to ask a smart-contract wallet (ERC-1271); None: EOAs only.
        now: the current time (tests).

    Returns:
        (token, consumer address, expiry).

    Raises:
        MalformedSignIn: the text is not an EIP-4361 message.
        InvalidSignIn: wrong domain, URI or chain; not yet or no longer valid; unknown, used
            or expired nonce; a signature that is not the address's or is malleable.
    """
    at = now or datetime.now(UTC)
    message = parse(text)
    _check_fields(message, domain=domain, uri=uri, chain_id=chain_id, at=at)
    _check_signature(text, message.address, signature, wallets)
    _use_nonce(engine, message.nonce, at)
    epoch = epoch_of(message.address)
    expires = at + timedelta(seconds=ttl)
    token = issue_token(message.address, expires, secret, epoch=epoch, issued_at=at)
    return token, message.address, expires


def issue_token(
    address: str,
    expires: datetime,
    secret: bytes,
    *,
    epoch: int = 0,
    issued_at: datetime | None = None,
    token_id: str | None = None,
) -> str:
    """A signed token for ``address`` (``sign_in`` issues them; tests and tools too).

    Args:
        address: the consumer.
        expires: when the token stops working, whatever else happens.
        secret: the HMAC key.
        epoch: the consumer's epoch now (``sign_in`` reads it from the index).
        issued_at: when it is issued (default: now); a sign-out-everywhere ends every token
            issued before it.
        token_id: its id (default: 128 fresh random bits, hex).
    """
    issued_ms = int((issued_at or datetime.now(UTC)).timestamp() * 1000)
    fields = (
        _TOKEN_PREFIX,
        to_checksum_address(address),
        str(epoch),
        str(issued_ms),
        str(int(expires.timestamp())),
        token_id or secrets.token_hex(16),
    )
    body = ".".join(fields)
    return f"{body}.{_mac(body, secret)}"


def verify_token(token: str, secret: bytes, now: datetime | None = None) -> ConsumerToken:
    """What a token states, if this service signed it and it has not expired.

    Only the token itself is checked here: whether it was signed out, or its consumer revoked
    everything since, is in the database (``ledger.services.sessions.verify``).

    Raises:
        InvalidToken: of an unknown (or the old) format, forged or expired.
    """
    body, _, mac = token.rpartition(".")
    parts = body.split(".")
    if len(parts) != _TOKEN_FIELDS - 1 or parts[0] != _TOKEN_PREFIX:
        raise InvalidToken(f"unknown or old token format (expected {_TOKEN_PREFIX}): sign in again")
    # As bytes: compare_digest refuses str with non-ASCII, which a header may well carry.
    if not hmac.compare_digest(mac.encode(), _mac(body, secret).encode()):
        raise InvalidToken("bad signature")
    # Signed by us, so well formed unless the secret leaked; checked anyway, as input.
    _, address, epoch, issued_ms, expires, token_id = parts
    numbers = (epoch, issued_ms, expires)
    if not all(n.isascii() and n.isdigit() for n in numbers) or not _TOKEN_ID_RE.fullmatch(
        token_id
    ):
        raise InvalidToken("malformed")
    if int(expires) <= (now or datetime.now(UTC)).timestamp():
        raise InvalidToken("expired")
    return ConsumerToken(
        consumer=address,
        epoch=int(epoch),
        issued_at_ms=int(issued_ms),
        expires_at=int(expires),
        token_id=token_id,
    )


def _check_fields(
    message: SignInMessage, *, domain: str, uri: str, chain_id: int, at: datetime
) -> None:
    if message.domain != domain:
        raise InvalidSignIn(f"message is for {message.domain}, not {domain}")
    if message.scheme is not None and message.scheme != urlsplit(uri).scheme:
        raise InvalidSignIn(f"message is for a {message.scheme}:// origin, not {uri}")
    if message.uri != uri:
        raise InvalidSignIn(f"message is for the URI {message.uri}, not {uri}")
    if message.chain_id != chain_id:
        raise InvalidSignIn(f"message is for chain {message.chain_id}, not {chain_id}")
    if message.issued_at > at + CLOCK_SKEW:
        raise InvalidSignIn(f"message is issued in the future ({_iso(message.issued_at)})")
    # Its nonce is at most NONCE_TTL old, so an honest message cannot be older than that.
    if message.issued_at < at - NONCE_TTL - CLOCK_SKEW:
        raise InvalidSignIn(f"message is stale (issued at {_iso(message.issued_at)})")
    if message.expiration is not None and message.expiration <= at:
        raise InvalidSignIn("message expired")
    if message.not_before is not None and message.not_before > at + CLOCK_SKEW:
        raise InvalidSignIn(f"message is not valid before {_iso(message.not_before)}")


def _check_signature(
    text: str, address: str, signature: bytes, wallets: ContractWallets | None
) -> None:
    """The EOA's low-s signature, else (if the address holds code) the wallet's ERC-1271 yes."""
    malleable = False
    if len(signature) == 65:
        s, v = int.from_bytes(signature[32:64], "big"), signature[64]
        # As OpenZeppelin's ECDSA.tryRecover: v is 27 or 28 and s in the lower half.
        malleable = s > _SECP256K1_N // 2 or v not in (27, 28)
        if not malleable and _recover(text, signature) == address:
            return
    # Not the EOA's signature: it may still be a smart-contract wallet's (ERC-1271), asked on
    # the chain the message names (the caller checked it is ``wallets``' chain).
    if wallets is not None and wallets.has_code(address):
        signable = encode_defunct(text=text)
        digest = keccak(b"\x19" + signable.version + signable.header + signable.body)
        if wallets.is_valid_erc1271(address, digest, signature):
            return
    if malleable:
        raise InvalidSignIn("malleable signature (high s or v not 27/28)")
    raise InvalidSignIn("signature is not the address's")


def _recover(text: str, signature: bytes) -> str | None:
    try:
        return str(Account.recover_message(encode_defunct(text=text), signature=signature))
    except Exception:  # eth-keys raises several types for malformed signatures
        return None


def _use_nonce(engine: Engine, nonce: str, at: datetime) -> None:
    # One conditional UPDATE: of two sign-ins racing with one nonce, the database lets exactly
    # one change the row (the other's WHERE no longer matches once the first commits).
    with connect(engine) as conn:
        used = conn.execute(
            update(AuthNonce)
            .where(
                col(AuthNonce.nonce) == nonce,
                col(AuthNonce.used_at).is_(None),
                col(AuthNonce.created_at) >= at - NONCE_TTL,
            )
            .values(used_at=at)
        )
        if used.rowcount == 1:
            return
        known = conn.execute(
            select(col(AuthNonce.used_at)).where(col(AuthNonce.nonce) == nonce)
        ).one_or_none()
    if known is None or known.used_at is not None:
        raise InvalidSignIn("unknown or already used nonce")
    raise InvalidSignIn("nonce expired")


def _mac(body: str, secret: bytes) -> str:
    digest = hmac.new(secret, body.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(value: str) -> datetime:
    match = _DATE_TIME_RE.fullmatch(value)
    if match is None:
        raise ValueError(f"not an RFC 3339 date-time: {value!r}")
    fraction = (match["fraction"] or "")[:6].ljust(6, "0")  # datetime keeps microseconds
    offset = "+00:00" if match["offset"] in ("Z", "z") else match["offset"]
    return datetime.fromisoformat(f"{match['date']}T{match['time']}.{fraction}{offset}")
