"""Wallet sign-in (EIP-4361) and consumer tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from sqlalchemy.engine import Engine

from ledger.consent import signin
from ledger.consent.signin import (
    ContractWallets,
    InvalidSignIn,
    InvalidToken,
    MalformedSignIn,
    SignInMessage,
)
from ledger.domain.errors import InvalidInput
from ledger.runtime import Ledger
from ledger.schema import migrated_engine
from tests.erc1271 import deploy_wallet

DOMAIN = "127.0.0.1:8000"
URI = f"http://{DOMAIN}"
SECRET = b"s" * 32
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

# The EIP's own examples (ERC-4361, "Examples"): implicit scheme, explicit port, explicit scheme.
EIP_EXAMPLE = """\
example.com wants you to sign in with your Ethereum account:
0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2

I accept the ExampleOrg Terms of Service: https://example.com/tos

URI: https://example.com/login
Version: 1
Chain ID: 1
Nonce: 32891756
Issued At: 2021-09-30T16:25:24Z
Resources:
- ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/
- https://example.com/my-web2-claim.json"""
EIP_EXAMPLE_PORT = EIP_EXAMPLE.replace("example.com wants", "example.com:3388 wants")
EIP_EXAMPLE_SCHEME = EIP_EXAMPLE.replace("example.com wants", "https://example.com wants")


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return migrated_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")


def message(account: LocalAccount | str, nonce: str, **kw: object) -> SignInMessage:
    fields: dict[str, object] = {
        "domain": DOMAIN,
        "address": account if isinstance(account, str) else account.address,
        "uri": URI,
        "chain_id": 31337,
        "nonce": nonce,
        "issued_at": NOW,
        "expiration": NOW + timedelta(minutes=5),
        **kw,
    }
    return SignInMessage(**fields)  # type: ignore[arg-type]


def signed(account: LocalAccount, text: str) -> bytes:
    return bytes(account.sign_message(encode_defunct(text=text)).signature)


def sign_in(
    engine: Engine,
    text: str,
    signature: bytes,
    *,
    chain_id: int = 31337,
    wallets: ContractWallets | None = None,
) -> tuple[str, str, datetime]:
    return signin.sign_in(
        engine,
        text=text,
        signature=signature,
        domain=DOMAIN,
        uri=URI,
        chain_id=chain_id,
        secret=SECRET,
        ttl=900,
        epoch_of=lambda _consumer: 0,
        wallets=wallets,
        now=NOW,
    )


# ----- the grammar -----


def test_the_eips_examples_parse() -> None:
    parsed = signin.parse(EIP_EXAMPLE)
    assert parsed == SignInMessage(
        domain="example.com",
        address="0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",
        statement="I accept the ExampleOrg Terms of Service: https://example.com/tos",
        uri="https://example.com/login",
        chain_id=1,
        nonce="32891756",
        issued_at=datetime(2021, 9, 30, 16, 25, 24, tzinfo=UTC),
        resources=(
            "ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/",
            "https://example.com/my-web2-claim.json",
        ),
    )
    assert signin.parse(EIP_EXAMPLE_PORT).domain == "example.com:3388"
    with_scheme = signin.parse(EIP_EXAMPLE_SCHEME)
    assert (with_scheme.scheme, with_scheme.domain) == ("https", "example.com")
    for text in (EIP_EXAMPLE, EIP_EXAMPLE_PORT, EIP_EXAMPLE_SCHEME):
        assert signin.parse(text).text() == text


@pytest.mark.parametrize(
    "original",
    [
        message(Account.create(), "abc12345"),
        message(Account.create(), "abc12345", statement=None, expiration=None),
        message(Account.create(), "abc12345", statement=""),
        message(
            Account.create(),
            "abc12345",
            scheme="http",
            not_before=NOW - timedelta(minutes=1),
            request_id="req-42",
            resources=(),
        ),
        message(Account.create(), "abc12345", issued_at=NOW + timedelta(microseconds=250)),
    ],
    ids=["house", "no-statement-no-expiry", "empty-statement", "every-field", "fraction"],
)
def test_the_message_text_round_trips_through_the_parser(original: SignInMessage) -> None:
    assert signin.parse(original.text()) == original


def test_no_statement_leaves_two_empty_lines_as_the_grammar_says() -> None:
    text = message(Account.create(), "abc12345", statement=None).text()
    assert "\n\n\nURI: " in text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2021-09-30T16:25:24.5Z", datetime(2021, 9, 30, 16, 25, 24, 500000, tzinfo=UTC)),
        ("2021-09-30t16:25:24z", datetime(2021, 9, 30, 16, 25, 24, tzinfo=UTC)),
        ("2021-09-30T18:25:24.123456789+02:00", datetime(2021, 9, 30, 16, 25, 24, 123456, UTC)),
    ],
)
def test_issued_at_takes_any_rfc3339_date_time(value: str, expected: datetime) -> None:
    text = EIP_EXAMPLE.replace("2021-09-30T16:25:24Z", value)
    assert signin.parse(text).issued_at == expected


def _lines(text: str) -> list[str]:
    return text.split("\n")


def _swap(i: int, j: int) -> Callable[[str], str]:
    def swap(text: str) -> str:
        lines = _lines(text)
        lines[i - 1], lines[j - 1] = lines[j - 1], lines[i - 1]
        return "\n".join(lines)

    return swap


def _drop(i: int) -> Callable[[str], str]:
    return lambda text: "\n".join(line for n, line in enumerate(_lines(text), 1) if n != i)


def _insert_after(i: int, *new: str) -> Callable[[str], str]:
    return lambda text: "\n".join([*_lines(text)[:i], *new, *_lines(text)[i:]])


def _sub(old: str, new: str) -> Callable[[str], str]:
    return lambda text: text.replace(old, new)


# Each malformed variant of the EIP's first example, and the line the parser must name.
# Lines: 1 header, 2 address, 3 empty, 4 statement, 5 empty, 6 URI, 7 Version, 8 Chain ID,
# 9 Nonce, 10 Issued At, 11 Resources:, 12-13 resources.
MALFORMED: list[tuple[str, Callable[[str], str], int]] = [
    ("version 2", _sub("Version: 1", "Version: 2"), 7),
    ("version 1.0", _sub("Version: 1", "Version: 1.0"), 7),
    ("URI after Version", _swap(6, 7), 6),
    ("Chain ID before Version", _swap(7, 8), 7),
    ("Nonce after Issued At", _swap(9, 10), 9),
    (
        "Not Before before Expiration Time",
        _insert_after(
            10, "Not Before: 2021-09-30T16:25:24Z", "Expiration Time: 2021-10-30T16:25:24Z"
        ),
        12,
    ),
    ("Resources before Issued At", _swap(10, 11), 10),
    ("no URI", _drop(6), 6),
    ("no Version", _drop(7), 7),
    ("no Chain ID", _drop(8), 8),
    ("no Nonce", _drop(9), 9),
    ("no Issued At", _drop(10), 10),
    ("two Nonces", _insert_after(9, "Nonce: 32891757"), 10),
    ("unknown field", _insert_after(10, "Foo: bar"), 11),
    ("lower-case field name", _sub("URI: ", "uri: "), 6),
    ("no space after the colon", _sub("Chain ID: 1", "Chain ID:1"), 8),
    ("nonce of 7 characters", _sub("Nonce: 32891756", "Nonce: 3289175"), 9),
    ("nonce not alphanumeric", _sub("Nonce: 32891756", "Nonce: 3289-1756"), 9),
    ("chain id in hex", _sub("Chain ID: 1", "Chain ID: 0x1"), 8),
    ("URI not a URI", _sub("URI: https://example.com/login", "URI: example com"), 6),
    ("Issued At without zone", _sub("16:25:24Z", "16:25:24"), 10),
    ("Issued At on February 30", _sub("2021-09-30T", "2021-02-30T"), 10),
    ("Issued At as a date", _sub("2021-09-30T16:25:24Z", "2021-09-30"), 10),
    (
        "address not EIP-55",
        _sub(
            "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",
            "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2",
        ),
        2,
    ),
    ("address too short", _sub("0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2", "0xC02aaA39"), 2),
    ("header reworded", _sub("sign in with your", "log in with your"), 1),
    ("header without colon", _sub("Ethereum account:", "Ethereum account"), 1),
    ("a space in the domain", _sub("example.com wants", "example .com wants"), 1),
    ("no empty line after the address", _drop(3), 3),
    ("no empty line after the statement", _drop(5), 5),
    ("no statement and one empty line", lambda t: "\n".join(_lines(t)[:3] + _lines(t)[5:]), 5),
    ("statement over two lines", _insert_after(4, "and more"), 5),
    ("statement with a quote", _sub("I accept", 'I "accept"'), 4),
    ("Resources: with a value", _sub("Resources:", "Resources: all"), 11),
    ("resource without its dash", _sub("- https://example.com/my", "https://example.com/my"), 13),
    ("resource not a URI", _sub("- https://example.com/my-web2-claim.json", "- a b"), 13),
    ("trailing newline", lambda t: t + "\n", 14),
    ("CRLF line ends", _sub("\n", "\r\n"), 1),
    ("empty", lambda t: "", 1),
]


@pytest.mark.parametrize(
    ("change", "line"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_text_off_the_grammar_is_refused_at_its_first_wrong_line(
    change: Callable[[str], str], line: int
) -> None:
    with pytest.raises(MalformedSignIn) as refused:
        signin.parse(change(EIP_EXAMPLE))
    assert refused.value.fields["line"] == line


# ----- the checks against this service -----


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"domain": "evil.example"}, "evil.example"),
        ({"uri": "https://evil.example/login"}, "URI https://evil.example/login"),
        ({"uri": f"{URI}/elsewhere"}, "URI"),
        ({"scheme": "https"}, "https://"),
        ({"chain_id": 1}, "chain 1"),
        ({"issued_at": NOW + timedelta(days=30)}, "future"),
        ({"issued_at": NOW + timedelta(minutes=2)}, "future"),
        ({"issued_at": NOW - timedelta(days=1)}, "stale"),
        ({"not_before": NOW + timedelta(hours=1)}, "not valid before"),
        ({"expiration": NOW - timedelta(seconds=1)}, "expired"),
        ({"expiration": NOW}, "expired"),
    ],
)
def test_messages_for_elsewhere_or_outside_their_time_are_refused(
    engine: Engine, change: dict[str, object], reason: str
) -> None:
    account = Account.create()
    text = message(account, signin.new_nonce(engine), **change).text()
    with pytest.raises(InvalidSignIn, match=reason):
        sign_in(engine, text, signed(account, text))


@pytest.mark.parametrize(
    "change",
    [
        {"issued_at": NOW + timedelta(seconds=30)},  # the wallet's clock is a little ahead
        {"not_before": NOW + timedelta(seconds=30)},
        {"not_before": NOW - timedelta(minutes=5)},
        {"scheme": "http"},
        {"statement": None},
    ],
)
def test_messages_within_their_time_and_for_here_are_accepted(
    engine: Engine, change: dict[str, object]
) -> None:
    account = Account.create()
    text = message(account, signin.new_nonce(engine), **change).text()
    assert sign_in(engine, text, signed(account, text))[1] == account.address


def test_a_signed_message_off_the_grammar_gives_no_token(engine: Engine) -> None:
    account = Account.create()
    nonce = signin.new_nonce(engine)
    wrong_version = message(account, nonce, version="2").text()
    with pytest.raises(MalformedSignIn, match="Version: 1"):
        sign_in(engine, wrong_version, signed(account, wrong_version))
    out_of_order = _swap(6, 7)(message(account, nonce).text())
    with pytest.raises(MalformedSignIn, match="line 6"):
        sign_in(engine, out_of_order, signed(account, out_of_order))
    # Neither used the nonce up.
    text = message(account, nonce).text()
    assert sign_in(engine, text, signed(account, text))[1] == account.address


def test_a_signed_message_gives_a_token_for_its_address(engine: Engine) -> None:
    account = Account.create()
    text = message(account, signin.new_nonce(engine)).text()
    token, address, expires = sign_in(engine, text, signed(account, text))
    assert address == account.address
    assert expires == NOW + timedelta(seconds=900)
    claims = signin.verify_token(token, SECRET, now=NOW)
    assert claims.consumer == account.address
    assert claims.issued_at_ms == int(NOW.timestamp() * 1000)
    assert claims.expires_at == int(expires.timestamp())


# ----- nonces -----


def test_a_nonce_works_once(engine: Engine) -> None:
    account = Account.create()
    text = message(account, signin.new_nonce(engine)).text()
    sign_in(engine, text, signed(account, text))
    with pytest.raises(InvalidSignIn, match="already used nonce"):
        sign_in(engine, text, signed(account, text))


def test_an_invented_nonce_is_refused(engine: Engine) -> None:
    account = Account.create()
    text = message(account, "deadbeef").text()
    with pytest.raises(InvalidSignIn, match="unknown"):
        sign_in(engine, text, signed(account, text))


def test_an_old_nonce_is_refused(engine: Engine) -> None:
    account = Account.create()
    nonce = signin.new_nonce(engine)
    later = datetime.now(UTC) + signin.NONCE_TTL + timedelta(seconds=1)
    text = message(account, nonce, issued_at=later, expiration=None).text()
    with pytest.raises(InvalidSignIn, match="nonce expired"):
        signin.sign_in(
            engine,
            text=text,
            signature=signed(account, text),
            domain=DOMAIN,
            uri=URI,
            chain_id=31337,
            secret=SECRET,
            ttl=900,
            epoch_of=lambda _consumer: 0,
            now=later,
        )


def _race(engine: Engine, text: str, signature: bytes, racers: int) -> list[str]:
    """Signs in ``racers`` times at once with one message; the tokens and refusals, as text."""
    start = threading.Barrier(racers)
    outcomes: list[str] = []

    def sign_in_once() -> None:
        start.wait()
        try:
            outcomes.append(sign_in(engine, text, signature)[0])
        except InvalidSignIn as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=sign_in_once) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_concurrent_sign_ins_with_one_nonce_give_one_token(db_engine: Engine) -> None:
    # Five rounds: a read-then-write nonce check gave two tokens in about 3 rounds of 4 here.
    account = Account.create()
    for _ in range(5):
        text = message(account, signin.new_nonce(db_engine)).text()
        outcomes = _race(db_engine, text, signed(account, text), racers=8)
        tokens = [o for o in outcomes if o.startswith("qls2.")]
        assert len(tokens) == 1
        assert sorted(outcomes) == sorted(
            tokens + ["sign-in refused: unknown or already used nonce"] * 7
        )


# ----- signatures -----


def test_another_accounts_signature_is_refused(engine: Engine) -> None:
    account = Account.create()
    text = message(account, signin.new_nonce(engine)).text()
    with pytest.raises(InvalidSignIn, match="not the address"):
        sign_in(engine, text, signed(Account.create(), text))


def _high_s(signature: bytes) -> bytes:
    # The same signature's twin: (r, n - s) with the other parity recovers the same address.
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    return r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])


def test_a_malleable_signature_is_refused_though_it_recovers_the_address(
    engine: Engine,
) -> None:
    account = Account.create()
    text = message(account, signin.new_nonce(engine)).text()
    low = signed(account, text)
    high = _high_s(low)
    # eth-account alone would accept it: the refusal is ours, as OpenZeppelin's ECDSA.
    assert Account.recover_message(encode_defunct(text=text), signature=high) == account.address
    with pytest.raises(InvalidSignIn, match="malleable"):
        sign_in(engine, text, high)
    with pytest.raises(InvalidSignIn, match="malleable"):
        sign_in(engine, text, low[:64] + bytes([low[64] - 27]))  # v as 0/1
    assert sign_in(engine, text, low)[1] == account.address


def test_garbage_is_invalid_input(engine: Engine) -> None:
    with pytest.raises(InvalidInput):
        sign_in(engine, "hello", b"\x00" * 65)


def test_an_erc1271_wallet_signs_in_through_its_owner(ledger: Ledger) -> None:
    owner: LocalAccount = Account.create()
    wallet = deploy_wallet(ledger.chain.w3, owner.address)
    chain_id = ledger.chain.chain_id
    text = message(wallet, signin.new_nonce(ledger.engine), chain_id=chain_id).text()
    with pytest.raises(InvalidSignIn, match="not the address"):
        sign_in(
            ledger.engine,
            text,
            signed(Account.create(), text),
            chain_id=chain_id,
            wallets=ledger.chain,
        )
    with pytest.raises(InvalidSignIn, match="not the address"):  # EOAs only without a chain
        sign_in(ledger.engine, text, signed(owner, text), chain_id=chain_id)
    token, address, _ = sign_in(
        ledger.engine, text, signed(owner, text), chain_id=chain_id, wallets=ledger.chain
    )
    assert address == wallet
    assert signin.verify_token(token, SECRET, now=NOW).consumer == wallet


def test_an_eoa_is_not_asked_as_a_wallet(ledger: Ledger) -> None:
    account = Account.create()
    chain_id = ledger.chain.chain_id
    text = message(account, signin.new_nonce(ledger.engine), chain_id=chain_id).text()
    with pytest.raises(InvalidSignIn, match="not the address"):
        sign_in(
            ledger.engine,
            text,
            signed(Account.create(), text),
            chain_id=chain_id,
            wallets=ledger.chain,
        )


# ----- tokens -----


def test_tokens_expire_and_cannot_be_forged() -> None:
    address = Account.create().address
    token = signin.issue_token(address, NOW + timedelta(minutes=15), SECRET)
    assert signin.verify_token(token, SECRET, now=NOW).consumer == address
    with pytest.raises(InvalidToken, match="expired"):
        signin.verify_token(token, SECRET, now=NOW + timedelta(minutes=16))
    with pytest.raises(InvalidToken, match="bad signature"):
        signin.verify_token(token, b"other secret", now=NOW)
    other = Account.create().address
    forged = token.replace(address, other)
    with pytest.raises(InvalidToken, match="bad signature"):
        signin.verify_token(forged, SECRET, now=NOW)


def test_a_token_carries_the_epoch_it_was_issued_in_and_an_id_of_its_own(engine: Engine) -> None:
    account = Account.create()
    asked: list[str] = []

    def epoch_of(consumer: str) -> int:
        asked.append(consumer)
        return 3

    tokens = []
    for _ in range(2):
        text = message(account, signin.new_nonce(engine)).text()
        tokens.append(
            signin.sign_in(
                engine,
                text=text,
                signature=signed(account, text),
                domain=DOMAIN,
                uri=URI,
                chain_id=31337,
                secret=SECRET,
                ttl=900,
                epoch_of=epoch_of,
                now=NOW,
            )[0]
        )
    first, second = (signin.verify_token(t, SECRET, now=NOW) for t in tokens)
    assert asked == [account.address] * 2
    assert first.epoch == second.epoch == 3
    assert first.token_id != second.token_id


def test_the_epoch_is_not_asked_for_a_refused_sign_in(engine: Engine) -> None:
    account = Account.create()
    text = message(account, signin.new_nonce(engine)).text()

    def epoch_of(consumer: str) -> int:
        raise AssertionError(f"asked the epoch of {consumer} for a refused sign-in")

    with pytest.raises(InvalidSignIn, match="not the address"):
        signin.sign_in(
            engine,
            text=text,
            signature=signed(Account.create(), text),
            domain=DOMAIN,
            uri=URI,
            chain_id=31337,
            secret=SECRET,
            ttl=900,
            epoch_of=epoch_of,
            now=NOW,
        )


def _v1_token(address: str, expires: datetime, secret: bytes) -> str:
    """A token as the first format signed them: address and expiry, nothing to revoke by."""
    body = f"{address}.{int(expires.timestamp())}"
    mac = base64.urlsafe_b64encode(hmac.new(secret, body.encode(), hashlib.sha256).digest())
    return f"qls1.{body}.{mac.decode().rstrip('=')}"


@pytest.mark.parametrize(
    "token",
    [
        _v1_token("0x" + "ab" * 20, NOW + timedelta(minutes=15), SECRET),
        "qls1.x.y.z",
        "qls3.a.b.c.d.e.f",
        "qls2.a.b.c.d.e",  # a field short
        "",
        "qls2",
    ],
    ids=["v1 signed by us", "v1 garbage", "v3", "short", "empty", "prefix only"],
)
def test_a_token_of_an_unknown_or_old_format_is_refused(token: str) -> None:
    with pytest.raises(InvalidToken, match="unknown or old token format"):
        signin.verify_token(token, SECRET, now=NOW)


def test_a_token_with_a_malformed_field_is_refused_even_if_signed() -> None:
    address = Account.create().address
    with pytest.raises(InvalidToken, match="malformed"):
        signin.verify_token(
            signin.issue_token(address, NOW + timedelta(minutes=1), SECRET, token_id="x" * 32),
            SECRET,
            now=NOW,
        )


def test_a_token_with_non_ascii_characters_is_refused_not_an_error() -> None:
    token = signin.issue_token(Account.create().address, NOW + timedelta(minutes=1), SECRET)
    with pytest.raises(InvalidToken, match="bad signature"):
        signin.verify_token(token[:-1] + "é", SECRET, now=NOW)
