"""Wallet sign-in (EIP-4361) and consumer tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from sqlalchemy.engine import Engine

from ledger.consent import signin
from ledger.consent.signin import InvalidSignIn, InvalidToken, SignInMessage
from ledger.domain.errors import InvalidInput
from ledger.schema import migrated_engine

DOMAIN = "127.0.0.1:8000"
SECRET = b"s" * 32
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return migrated_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")


def message(account: LocalAccount, nonce: str, **kw: object) -> SignInMessage:
    fields: dict[str, object] = {
        "domain": DOMAIN,
        "address": account.address,
        "uri": f"http://{DOMAIN}",
        "chain_id": 31337,
        "nonce": nonce,
        "issued_at": NOW,
        "expiration": NOW + timedelta(minutes=5),
        **kw,
    }
    return SignInMessage(**fields)  # type: ignore[arg-type]


def signed(account: LocalAccount, text: str) -> bytes:
    return bytes(account.sign_message(encode_defunct(text=text)).signature)


def sign_in(engine: Engine, text: str, signature: bytes) -> tuple[str, str, datetime]:
    return signin.sign_in(
        engine,
        text=text,
        signature=signature,
        domain=DOMAIN,
        chain_id=31337,
        secret=SECRET,
        ttl=900,
        now=NOW,
    )


def test_a_signed_message_gives_a_token_for_its_address(engine: Engine) -> None:
    account = Account.create()
    text = message(account, signin.new_nonce(engine)).text()
    token, address, expires = sign_in(engine, text, signed(account, text))
    assert address == account.address
    assert expires == NOW + timedelta(seconds=900)
    assert signin.verify_token(token, SECRET, now=NOW) == account.address


def test_the_message_text_round_trips_through_the_parser(engine: Engine) -> None:
    original = message(Account.create(), "abc123")
    assert signin.parse(original.text()) == original


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"domain": "evil.example"}, "evil.example"),
        ({"chain_id": 1}, "chain 1"),
        ({"expiration": NOW - timedelta(seconds=1)}, "expired"),
    ],
)
def test_messages_for_elsewhere_or_expired_are_refused(
    engine: Engine, change: dict[str, object], reason: str
) -> None:
    account = Account.create()
    text = message(account, signin.new_nonce(engine), **change).text()
    with pytest.raises(InvalidSignIn, match=reason):
        sign_in(engine, text, signed(account, text))


def test_a_nonce_works_once(engine: Engine) -> None:
    account = Account.create()
    text = message(account, signin.new_nonce(engine)).text()
    sign_in(engine, text, signed(account, text))
    with pytest.raises(InvalidSignIn, match="nonce"):
        sign_in(engine, text, signed(account, text))


def test_an_invented_nonce_is_refused(engine: Engine) -> None:
    account = Account.create()
    text = message(account, "deadbeef").text()
    with pytest.raises(InvalidSignIn, match="nonce"):
        sign_in(engine, text, signed(account, text))


def test_another_accounts_signature_is_refused(engine: Engine) -> None:
    account = Account.create()
    text = message(account, signin.new_nonce(engine)).text()
    with pytest.raises(InvalidSignIn, match="not the address"):
        sign_in(engine, text, signed(Account.create(), text))


def test_garbage_is_invalid_input(engine: Engine) -> None:
    with pytest.raises(InvalidInput):
        sign_in(engine, "hello", b"\x00" * 65)


def test_tokens_expire_and_cannot_be_forged() -> None:
    address = Account.create().address
    token = signin.issue_token(address, NOW + timedelta(minutes=15), SECRET)
    assert signin.verify_token(token, SECRET, now=NOW) == address
    with pytest.raises(InvalidToken, match="expired"):
        signin.verify_token(token, SECRET, now=NOW + timedelta(minutes=16))
    with pytest.raises(InvalidToken, match="bad signature"):
        signin.verify_token(token, b"other secret", now=NOW)
    other = Account.create().address
    forged = token.replace(address, other)
    with pytest.raises(InvalidToken, match="bad signature"):
        signin.verify_token(forged, SECRET, now=NOW)
