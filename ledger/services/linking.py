"""Proof of control of a contact point before the operator attests its link (DESIGN rule 3).

``start`` sends a six-digit one-time code to the phone number or address; ``verify`` checks it
and returns the salted commitment the operator attests on chain. Codes are kept only as an
HMAC under a key derived from the contact salt (a leaked table does not give them away: six
digits are too few to survive a plain hash), compared in constant time, expire, allow a few
attempts, and the number of codes per contact and per consumer is limited per rolling hour.
The contact itself is stored and logged only as its commitment or masked.

Example:
    >>> linker = Linker(engine=engine, salt=salt, sender=OutboxSender(engine), default_region="FR")
    >>> linker.start(consumer=address, contact="+33 6 12 34 56 78")
    >>> verify_and_attest(linker, relayer, consumer=address, contact="+33 6 12 34 56 78",
    ...                   code="123456")
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Protocol

import httpx
from eth_utils.address import is_address, to_checksum_address
from sqlalchemy import BigInteger, func
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Field, Session, SQLModel, col, select

from ledger.chain.relayer import Relayer
from ledger.db.engine import transaction
from ledger.domain import contacts
from ledger.domain.errors import (
    InvalidAddress,
    LedgerError,
    LinkCodeRejected,
    NoLinkChallenge,
    RateLimited,
    SenderUnavailable,
)
from ledger.settings import LinkSender, Settings

log = logging.getLogger(__name__)

HOUR = 3600
CODE_DIGITS = 6
SIGNATURE_HEADER = "X-Quota-Ledger-Signature"
TIMESTAMP_HEADER = "X-Quota-Ledger-Timestamp"


class Status:
    PENDING = "pending"  # sent, waiting for the code
    VERIFIED = "verified"  # code proven; attestation not confirmed yet (retry allowed)
    ATTESTED = "attested"  # linked on chain: done
    SUPERSEDED = "superseded"  # a newer code was sent for the same consumer and contact
    EXHAUSTED = "exhausted"  # too many wrong codes
    UNSENT = "unsent"  # the sender failed


class LinkChallenge(SQLModel, table=True):
    """One code sent: never the code, never the contact in clear."""

    __tablename__ = "link_challenge"

    id: int | None = Field(default=None, primary_key=True)
    consumer: str = Field(index=True)  # checksum address
    contact: str = Field(index=True)  # hex commitment of the contact
    nonce: str  # per-code random hex, so equal codes never hash alike
    code_hash: str
    created_at: int = Field(sa_type=BigInteger, index=True)
    expires_at: int = Field(sa_type=BigInteger)
    attempts: int = 0
    status: str = Status.PENDING


class OutboxMessage(SQLModel, table=True):
    """A message the development outbox "sent": read it with ``quota-ledger outbox``."""

    __tablename__ = "outbox_message"

    id: int | None = Field(default=None, primary_key=True)
    created_at: int = Field(sa_type=BigInteger, index=True)
    channel: str  # sms or email
    destination: str  # masked: the outbox is read on screens and in logs
    contact: str  # hex commitment, to match a message with its contact
    text: str


@dataclass(frozen=True, slots=True)
class Message:
    """What a sender delivers: the real destination is only in ``contact``."""

    contact: contacts.Contact
    commitment: str
    code: str
    expires_at: int

    @property
    def channel(self) -> str:
        return "email" if self.contact.kind is contacts.ContactKind.EMAIL else "sms"

    @property
    def text(self) -> str:
        return (
            f"Your quota-ledger code is {self.code}. It proves this "
            f"{'address' if self.channel == 'email' else 'number'} is yours; "
            "never share it."
        )


class Sender(Protocol):
    """Delivers one-time codes (an SMS or e-mail gateway, or the development outbox)."""

    def send(self, message: Message) -> None:
        """Raises ``SenderUnavailable`` when the message could not be handed over."""
        ...


@dataclass(frozen=True, slots=True)
class Started:
    challenge_id: int
    expires_at: int
    destination: str  # masked


@dataclass(frozen=True, slots=True)
class Verified:
    challenge_id: int
    consumer: str
    commitment: bytes


@dataclass(frozen=True, slots=True)
class Linked:
    consumer: str
    commitment: bytes
    tx_hash: str
    block_number: int


class Linker:
    """Sends one-time codes and checks them.

    Example:
        >>> linker = Linker(engine=engine, salt=b"...", sender=sender, default_region="FR")
        >>> started = linker.start(consumer="0x7099...", contact="06 12 34 56 78")
        >>> linker.verify(consumer="0x7099...", contact="06 12 34 56 78", code="042137")
    """

    def __init__(
        self,
        *,
        engine: Engine,
        salt: bytes,
        sender: Sender,
        default_region: str,
        code_ttl: int = 600,
        max_attempts: int = 5,
        starts_per_contact_hour: int = 3,
        starts_per_consumer_hour: int = 10,
    ) -> None:
        self.engine = engine
        self.salt = salt
        self.sender = sender
        self.default_region = default_region
        self.code_ttl = code_ttl
        self.max_attempts = max_attempts
        self.starts_per_contact_hour = starts_per_contact_hour
        self.starts_per_consumer_hour = starts_per_consumer_hour
        # Domain-separated from the commitments taken under the same salt.
        self._code_key = hmac.new(salt, b"quota-ledger/link-code", hashlib.sha256).digest()

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine) -> Linker:
        return cls(
            engine=engine,
            salt=settings.contact_salt_bytes,
            sender=make_sender(settings, engine),
            default_region=settings.default_region,
            code_ttl=settings.link_code_ttl,
            max_attempts=settings.link_max_attempts,
            starts_per_contact_hour=settings.link_starts_per_contact_hour,
            starts_per_consumer_hour=settings.link_starts_per_consumer_hour,
        )

    def start(self, *, consumer: str, contact: str, now: int | None = None) -> Started:
        """Sends a new one-time code to ``contact`` for ``consumer``; older codes stop working.

        Args:
            consumer: the account that wants to link the contact.
            contact: a phone number in any usual format, or an e-mail address.
            now: unix time (default: the current time).

        Returns:
            The challenge id, when the code expires and the masked destination.

        Raises:
            InvalidAddress, InvalidContact: the input cannot be used.
            RateLimited: too many codes for this contact or consumer in the last hour.
            SenderUnavailable: the code could not be sent (try again later).
        """
        account = _account(consumer)
        parsed = contacts.parse_contact(contact, default_region=self.default_region)
        commitment = contacts.commitment(parsed, self.salt).hex()
        at = int(time.time()) if now is None else now
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        nonce = secrets.token_hex(16)
        with transaction(self.engine) as session:
            by_contact = col(LinkChallenge.contact) == commitment
            self._check_rate(session, "contact", by_contact, self.starts_per_contact_hour, at)
            by_consumer = col(LinkChallenge.consumer) == account
            self._check_rate(session, "consumer", by_consumer, self.starts_per_consumer_hour, at)
            for old in session.exec(
                select(LinkChallenge).where(
                    LinkChallenge.consumer == account,
                    LinkChallenge.contact == commitment,
                    col(LinkChallenge.status).in_([Status.PENDING, Status.VERIFIED]),
                )
            ):
                old.status = Status.SUPERSEDED
                session.add(old)
            challenge = LinkChallenge(
                consumer=account,
                contact=commitment,
                nonce=nonce,
                code_hash=self._hash(nonce, code),
                created_at=at,
                expires_at=at + self.code_ttl,
            )
            session.add(challenge)
            session.flush()
            assert challenge.id is not None
            challenge_id = challenge.id
        # Sent outside the transaction: a slow gateway must not hold the database's write lock.
        try:
            self.sender.send(Message(parsed, commitment, code, at + self.code_ttl))
        except SenderUnavailable:
            self._set_status(challenge_id, Status.UNSENT)
            raise
        log.info("link code %d sent to %s for %s", challenge_id, mask(parsed), account)
        return Started(challenge_id, at + self.code_ttl, mask(parsed))

    def verify(self, *, consumer: str, contact: str, code: str, now: int | None = None) -> Verified:
        """Checks ``code`` against the newest code sent to ``contact`` for ``consumer``.

        A verified code can be verified again until it expires, so that an attestation that
        failed (node down) can be retried without a new code.

        Returns:
            The challenge and the commitment the operator attests on chain.

        Raises:
            InvalidAddress, InvalidContact: the input cannot be used.
            NoLinkChallenge: no code was sent, it expired, or its attempts are used up.
            LinkCodeRejected: wrong code (the attempt is counted).
        """
        account = _account(consumer)
        parsed = contacts.parse_contact(contact, default_region=self.default_region)
        commitment = contacts.commitment(parsed, self.salt)
        at = int(time.time()) if now is None else now
        failure: LedgerError | None = None
        with transaction(self.engine) as session:
            challenge = session.exec(
                select(LinkChallenge)
                .where(
                    LinkChallenge.consumer == account,
                    LinkChallenge.contact == commitment.hex(),
                    col(LinkChallenge.status).in_([Status.PENDING, Status.VERIFIED]),
                )
                .order_by(col(LinkChallenge.id).desc())
                .limit(1)
                .with_for_update()  # PostgreSQL: concurrent guesses count one by one
            ).first()
            if challenge is None:
                failure = NoLinkChallenge("none pending")
            elif at >= challenge.expires_at:
                failure = NoLinkChallenge("expired")
            else:
                challenge.attempts += 1
                candidate = self._hash(challenge.nonce, code.strip())
                if hmac.compare_digest(candidate, challenge.code_hash):
                    challenge.status = Status.VERIFIED
                elif challenge.attempts >= self.max_attempts:
                    challenge.status = Status.EXHAUSTED
                    failure = NoLinkChallenge("too many wrong codes")
                else:
                    failure = LinkCodeRejected(self.max_attempts - challenge.attempts)
                session.add(challenge)
            challenge_id = None if challenge is None else challenge.id
        # Raised after the commit: a wrong code must count even though the call fails.
        if failure is not None:
            log.info("link code check failed for %s: %s", account, failure.code)
            raise failure
        assert challenge_id is not None
        return Verified(challenge_id, account, commitment)

    def attested(self, challenge_id: int) -> None:
        """Marks a verified code as used up by its on-chain attestation."""
        self._set_status(challenge_id, Status.ATTESTED)

    def _check_rate(
        self, session: Session, scope: str, which: ColumnElement[bool], limit: int, at: int
    ) -> None:
        count, oldest = session.exec(
            select(func.count(), func.min(LinkChallenge.created_at)).where(
                which, LinkChallenge.created_at > at - HOUR
            )
        ).one()
        if count >= limit:
            raise RateLimited(scope, limit, max(int(oldest) + HOUR - at, 1))

    def _set_status(self, challenge_id: int, status: str) -> None:
        with transaction(self.engine) as session:
            challenge = session.get(LinkChallenge, challenge_id)
            if challenge is not None:
                challenge.status = status
                session.add(challenge)

    def _hash(self, nonce: str, code: str) -> str:
        return hmac.new(self._code_key, f"{nonce}:{code}".encode(), hashlib.sha256).hexdigest()


def verify_and_attest(
    linker: Linker, relayer: Relayer, *, consumer: str, contact: str, code: str
) -> Linked:
    """Verifies the code and has the operator attest the link on chain: one call for the
    API and the CLI.

    Raises:
        everything ``Linker.verify`` and ``Relayer.attest_link`` raise; after a failed
        attestation the same code can be submitted again until it expires.
    """
    verified = linker.verify(consumer=consumer, contact=contact, code=code)
    receipt = relayer.attest_link(verified.consumer, verified.commitment)
    linker.attested(verified.challenge_id)
    return Linked(
        verified.consumer,
        verified.commitment,
        bytes(receipt["transactionHash"]).hex(),
        int(receipt["blockNumber"]),
    )


class OutboxSender:
    """Development sender: the message goes into a table that ``quota-ledger outbox`` lists."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def send(self, message: Message) -> None:
        with transaction(self.engine) as session:
            session.add(
                OutboxMessage(
                    created_at=int(time.time()),
                    channel=message.channel,
                    destination=mask(message.contact),
                    contact=message.commitment,
                    text=message.text,
                )
            )


def recent_outbox(engine: Engine, *, limit: int = 20) -> list[OutboxMessage]:
    """The newest outbox messages, newest first."""
    with transaction(engine) as session:
        query = select(OutboxMessage).order_by(col(OutboxMessage.id).desc()).limit(limit)
        return list(session.exec(query).all())


class WebhookSender:
    """Posts each message as JSON to an SMS / e-mail gateway, signed with HMAC-SHA-256.

    The gateway checks ``X-Quota-Ledger-Signature: sha256=<hex>`` over
    ``"<timestamp>.<body>"`` with the shared secret and refuses old timestamps (replays).
    """

    def __init__(self, url: str, secret: bytes, *, timeout: float = 10.0) -> None:
        self.url = url
        self.secret = secret
        self.timeout = timeout

    def send(self, message: Message) -> None:
        body = json.dumps(
            {
                "channel": message.channel,
                "to": message.contact.value,
                "text": message.text,
                "code": message.code,
                "expires_at": message.expires_at,
                "reference": message.commitment,
            },
            separators=(",", ":"),
        ).encode()
        stamp = str(int(time.time()))
        headers = {
            "content-type": "application/json",
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: "sha256=" + sign_webhook(self.secret, stamp, body),
        }
        try:
            response = httpx.post(self.url, content=body, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise SenderUnavailable(type(exc).__name__) from exc
        if response.status_code >= 300:
            raise SenderUnavailable(f"gateway answered {response.status_code}")


def sign_webhook(secret: bytes, timestamp: str, body: bytes) -> str:
    """Hex HMAC-SHA-256 of ``"<timestamp>.<body>"``: what the gateway recomputes."""
    return hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def make_sender(settings: Settings, engine: Engine) -> Sender:
    """The sender the settings name."""
    if settings.link_sender is LinkSender.WEBHOOK:
        assert settings.link_webhook_url and settings.link_webhook_secret  # settings checked
        return WebhookSender(
            settings.link_webhook_url,
            settings.link_webhook_secret.get_secret_value().encode(),
            timeout=settings.link_webhook_timeout,
        )
    return OutboxSender(engine)


def mask(contact: contacts.Contact) -> str:
    """A contact as logs and screens may show it: ``+336******78``, ``j***@example.org``."""
    if contact.kind is contacts.ContactKind.EMAIL:
        local, domain = contact.value.rsplit("@", 1)
        return f"{local[0]}***@{domain}"
    value = contact.value
    return value[:4] + "*" * max(len(value) - 6, 1) + value[-2:]


def _account(consumer: str) -> str:
    if not is_address(consumer):
        raise InvalidAddress(consumer)
    return str(to_checksum_address(consumer))
