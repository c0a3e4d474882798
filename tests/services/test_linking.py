"""Proof of control of a contact: one-time codes, their limits, the senders, the attestation."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import select

from ledger.db.engine import transaction
from ledger.domain import contacts
from ledger.domain.errors import (
    InvalidAddress,
    InvalidContact,
    LinkCodeRejected,
    NoLinkChallenge,
    RateLimited,
    SenderUnavailable,
)
from ledger.runtime import Ledger
from ledger.services.linking import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    LinkChallenge,
    Linker,
    Message,
    OutboxSender,
    Status,
    WebhookSender,
    make_sender,
    mask,
    recent_outbox,
    sign_webhook,
    verify_and_attest,
)
from ledger.settings import Settings

SALT = b"test-salt"
ALICE = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
BOB = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
PHONE = "06 12 34 56 78"
T0 = 1_800_000_000


@pytest.fixture
def linker(db_engine: Engine) -> Linker:
    return Linker(
        engine=db_engine,
        salt=SALT,
        sender=OutboxSender(db_engine),
        default_region="FR",
        starts_per_contact_hour=3,
        starts_per_consumer_hour=4,
    )


def last_code(db_engine: Engine) -> str:
    match = re.search(r"\b(\d{6})\b", recent_outbox(db_engine, limit=1)[0].text)
    assert match is not None
    return match.group(1)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def test_a_code_sent_and_typed_back_yields_the_commitment(
    linker: Linker, db_engine: Engine
) -> None:
    started = linker.start(consumer=ALICE.lower(), contact=PHONE, now=T0)
    assert (started.expires_at, started.destination) == (T0 + 600, "+336******78")
    message = recent_outbox(db_engine)[0]
    assert (message.channel, message.destination) == ("sms", "+336******78")
    verified = linker.verify(
        consumer=ALICE, contact="+33612345678", code=last_code(db_engine), now=T0
    )
    expected = contacts.commitment(contacts.parse_phone(PHONE, default_region="FR"), SALT)
    assert (verified.consumer, verified.commitment) == (ALICE, expected)


def test_neither_the_code_nor_the_contact_is_stored_in_clear(
    linker: Linker, db_engine: Engine
) -> None:
    linker.start(consumer=ALICE, contact=PHONE, now=T0)
    code = last_code(db_engine)
    with transaction(db_engine) as session:
        row = session.exec(select(LinkChallenge)).one()
        stored = json.dumps(row.model_dump())
    assert code not in stored
    assert "612345678" not in stored
    assert "612345678" not in json.dumps(recent_outbox(db_engine)[0].model_dump())


def test_nothing_logs_the_contact_in_clear(
    linker: Linker, db_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    linker.start(consumer=ALICE, contact="alice.smith@example.org", now=T0)
    with pytest.raises(LinkCodeRejected):
        linker.verify(consumer=ALICE, contact="alice.smith@example.org", code="x", now=T0)
    linker.start(consumer=ALICE, contact=PHONE, now=T0)
    assert caplog.records  # the flow does log...
    assert "alice.smith" not in caplog.text and "612345678" not in caplog.text  # ...masked
    assert "a***@example.org" in caplog.text


def test_codes_are_six_random_digits(linker: Linker, db_engine: Engine) -> None:
    codes = set()
    for i in range(3):
        linker.start(consumer=ALICE, contact=f"06 12 34 56 7{i}", now=T0)
        codes.add(last_code(db_engine))
    assert all(len(c) == 6 and c.isdigit() for c in codes)
    assert len(codes) == 3  # 1 in 10^12 to fail by chance


def test_wrong_codes_count_and_the_last_one_kills_the_code(
    linker: Linker, db_engine: Engine
) -> None:
    linker.start(consumer=ALICE, contact=PHONE, now=T0)
    code = last_code(db_engine)
    for left in (4, 3, 2, 1):
        with pytest.raises(LinkCodeRejected) as rejected:
            linker.verify(consumer=ALICE, contact=PHONE, code=wrong(code), now=T0)
        assert rejected.value.fields["attempts_left"] == left
    with pytest.raises(NoLinkChallenge, match="too many wrong codes"):
        linker.verify(consumer=ALICE, contact=PHONE, code=wrong(code), now=T0)
    with pytest.raises(NoLinkChallenge):
        linker.verify(consumer=ALICE, contact=PHONE, code=code, now=T0)


@pytest.mark.parametrize(
    ("case", "consumer", "contact", "at", "reason"),
    [
        ("expired", ALICE, PHONE, T0 + 600, "expired"),
        ("another consumer", BOB, PHONE, T0, "none pending"),
        ("another contact", ALICE, "06 12 34 56 79", T0, "none pending"),
    ],
)
def test_a_code_only_proves_its_own_contact_consumer_and_time(
    linker: Linker, db_engine: Engine, case: str, consumer: str, contact: str, at: int, reason: str
) -> None:
    linker.start(consumer=ALICE, contact=PHONE, now=T0)
    with pytest.raises(NoLinkChallenge, match=reason):
        linker.verify(consumer=consumer, contact=contact, code=last_code(db_engine), now=at)


def test_a_new_code_replaces_the_old_one(linker: Linker, db_engine: Engine) -> None:
    linker.start(consumer=ALICE, contact=PHONE, now=T0)
    first = last_code(db_engine)
    linker.start(consumer=ALICE, contact=PHONE, now=T0 + 1)
    second = last_code(db_engine)
    if first != second:
        with pytest.raises(LinkCodeRejected):
            linker.verify(consumer=ALICE, contact=PHONE, code=first, now=T0 + 2)
    assert linker.verify(consumer=ALICE, contact=PHONE, code=second, now=T0 + 2)


def test_starts_are_limited_per_contact_per_rolling_hour(linker: Linker) -> None:
    for i in range(3):
        linker.start(consumer=ALICE if i % 2 else BOB, contact=PHONE, now=T0 + i)
    with pytest.raises(RateLimited) as limited:
        linker.start(consumer=ALICE, contact=PHONE, now=T0 + 10)
    assert limited.value.fields == {"scope": "contact", "limit": 3, "retry_after": 3590}
    linker.start(consumer=ALICE, contact=PHONE, now=T0 + 3600)  # the first one aged out


def test_starts_are_limited_per_consumer_per_rolling_hour(linker: Linker) -> None:
    for i in range(4):
        linker.start(consumer=ALICE, contact=f"06 12 34 56 7{i}", now=T0)
    with pytest.raises(RateLimited) as limited:
        linker.start(consumer=ALICE, contact="06 12 34 56 79", now=T0)
    assert limited.value.fields["scope"] == "consumer"
    linker.start(consumer=BOB, contact="06 12 34 56 79", now=T0)


@pytest.mark.parametrize(
    ("consumer", "contact", "error"),
    [
        ("0x1234", PHONE, InvalidAddress),
        ("not an address", PHONE, InvalidAddress),
        (ALICE, "+33 12", InvalidContact),
        (ALICE, "nobody@", InvalidContact),
    ],
)
def test_bad_input_is_refused_before_anything_is_sent(
    linker: Linker, db_engine: Engine, consumer: str, contact: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        linker.start(consumer=consumer, contact=contact)
    assert recent_outbox(db_engine) == []


def test_verify_and_attest_links_the_contact_on_chain(
    ledger: Ledger, consumer: LocalAccount
) -> None:
    started = ledger.linker.start(consumer=consumer.address, contact=PHONE)
    code = last_code(ledger.engine)
    linked = verify_and_attest(
        ledger.linker, ledger.relayer, consumer=consumer.address, contact=PHONE, code=code
    )
    commitment = contacts.commitment(
        contacts.parse_phone(PHONE, default_region="FR"), ledger.settings.contact_salt_bytes
    )
    assert linked.commitment == commitment and linked.block_number > 0
    head = ledger.chain.head().number
    assert ledger.chain.link(commitment, head).consumer == consumer.address
    with transaction(ledger.engine) as session:
        challenge = session.get(LinkChallenge, started.challenge_id)
        assert challenge is not None and challenge.status == Status.ATTESTED
    with pytest.raises(NoLinkChallenge):  # the code is used up
        verify_and_attest(
            ledger.linker, ledger.relayer, consumer=consumer.address, contact=PHONE, code=code
        )


def test_a_verified_code_can_be_submitted_again_until_its_link_is_attested(
    ledger: Ledger, consumer: LocalAccount
) -> None:
    # As after an attestation that failed (node down): verified, not yet attested.
    ledger.linker.start(consumer=consumer.address, contact=PHONE)
    code = last_code(ledger.engine)
    ledger.linker.verify(consumer=consumer.address, contact=PHONE, code=code)
    linked = verify_and_attest(
        ledger.linker, ledger.relayer, consumer=consumer.address, contact=PHONE, code=code
    )
    assert linked.consumer == consumer.address


# ----- the webhook sender, against a real local HTTP server -----


class Gateway:
    def __init__(self, status: int) -> None:
        self.status = status
        self.requests: list[tuple[dict[str, str], bytes]] = []


@pytest.fixture
def gateway() -> Iterator[tuple[Gateway, str]]:
    state = Gateway(204)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
            body = self.rfile.read(int(self.headers["content-length"]))
            state.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(state.status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass  # keep the test output (and any phone number) out of stderr

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/send"
    server.shutdown()
    server.server_close()
    thread.join()


def test_the_webhook_posts_a_signed_message(
    gateway: tuple[Gateway, str], db_engine: Engine
) -> None:
    state, url = gateway
    linker = Linker(
        engine=db_engine,
        salt=SALT,
        sender=WebhookSender(url, b"gateway-secret"),
        default_region="FR",
    )
    linker.start(consumer=ALICE, contact=PHONE)
    [(headers, body)] = state.requests
    sent = json.loads(body)
    assert (sent["channel"], sent["to"]) == ("sms", "+33612345678")
    assert re.fullmatch(r"\d{6}", sent["code"]) and sent["code"] in sent["text"]
    expected = hmac.new(
        b"gateway-secret",
        headers[TIMESTAMP_HEADER.lower()].encode() + b"." + body,
        hashlib.sha256,
    ).hexdigest()
    assert headers[SIGNATURE_HEADER.lower()] == f"sha256={expected}"
    assert sign_webhook(b"gateway-secret", headers[TIMESTAMP_HEADER.lower()], body) == expected
    verified = linker.verify(consumer=ALICE, contact=PHONE, code=sent["code"])
    assert verified.commitment.hex() == sent["reference"]


@pytest.mark.parametrize("failure", ["gateway error", "nobody listening"])
def test_a_failed_send_is_reported_and_its_code_cannot_be_used(
    gateway: tuple[Gateway, str], db_engine: Engine, failure: str
) -> None:
    state, url = gateway
    state.status = 502
    if failure == "nobody listening":
        url = "http://127.0.0.1:9/send"  # the discard port: connection refused
    linker = Linker(
        engine=db_engine, salt=SALT, sender=WebhookSender(url, b"s", timeout=2), default_region="FR"
    )
    with pytest.raises(SenderUnavailable):
        linker.start(consumer=ALICE, contact=PHONE)
    with transaction(db_engine) as session:
        assert session.exec(select(LinkChallenge.status)).one() == Status.UNSENT
    with pytest.raises(NoLinkChallenge):
        linker.verify(consumer=ALICE, contact=PHONE, code="000000")


def test_settings_choose_and_guard_the_sender(tmp_path: Path, db_engine: Engine) -> None:
    webhook = Settings(
        link_sender="webhook",  # type: ignore[arg-type]
        link_webhook_url="http://127.0.0.1:1/x",
        link_webhook_secret="k",  # type: ignore[arg-type]
    )
    assert isinstance(make_sender(webhook, db_engine), WebhookSender)
    assert isinstance(make_sender(Settings(), db_engine), OutboxSender)
    with pytest.raises(ValidationError):
        Settings(link_sender="webhook")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="outbox is for development"):
        Settings(
            environment="production",  # type: ignore[arg-type]
            operator_key="0x" + "12" * 32,  # type: ignore[arg-type]
            contact_salt="a real secret",  # type: ignore[arg-type]
            session_secret="another real secret",  # type: ignore[arg-type]
        )


def test_masks_keep_only_what_a_person_recognises() -> None:
    assert mask(contacts.parse_phone("+44 20 7946 0000", default_region="GB")) == "+442*******00"
    assert mask(contacts.parse_email("Bob@Example.ORG")) == "B***@example.org"
    message = Message(contacts.parse_email("b@example.org"), "00", "123456", 0)
    assert message.channel == "email" and "123456" in message.text
