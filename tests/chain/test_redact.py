"""Secrets in node URLs never reach an error text or a log line."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest

from ledger.chain.anvil import DEMO_ACCOUNTS
from ledger.chain.client import Chain
from ledger.chain.redact import RedactSecrets, install_log_redaction, redact
from ledger.domain.errors import ChainUnavailable

KEY = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://host:8545/?apikey=s3cr3t", "http://host:8545/?apikey=***"),
        ("http://user:pa55@host/", "http://***@host/"),
        ("http://user:p/ss@host/x", "http://***@host/x"),  # an unescaped "/" in the password
        (f"https://mainnet.infura.io/v3/{KEY}", "https://mainnet.infura.io/v3/***"),
        (
            "https://eth-mainnet.g.alchemy.com/v2/AbCdEf_123-xyzXYZ0987",
            "https://eth-mainnet.g.alchemy.com/v2/***",
        ),
        ("https://rpc.ankr.com/eth/" + "ab" * 32, "https://rpc.ankr.com/eth/***"),
        ("wss://node/ws?key=a&b=c#frag", "wss://node/ws?key=***&b=***#***"),
        ("https://node/?token", "https://node/?***"),
        # urllib3 quotes the path alone
        (
            f"Max retries exceeded with url: /v3/{KEY}?apikey=x (Caused by X)",
            "Max retries exceeded with url: /v3/***?apikey=*** (Caused by X)",
        ),
        # sentence punctuation stays outside the URL
        ("failed at http://h/?k=v: refused.", "failed at http://h/?k=***: refused."),
        # left alone: no secret in them
        ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
        ("https://mainnet.infura.io/v3", "https://mainnet.infura.io/v3"),
        ("database /var/lib/quota-ledger/ledger.sqlite3 locked", None),
        ("ledger index is 3 blocks / 12 s behind the chain", None),
    ],
)
def test_redact_masks_userinfo_query_values_fragments_and_path_tokens(
    text: str, expected: str | None
) -> None:
    assert redact(text) == (text if expected is None else expected)


def test_redact_is_idempotent() -> None:
    text = f"http://u:p@h/v3/{KEY}?apikey=x"
    assert redact(redact(text)) == redact(text)


@pytest.fixture
def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/?apikey=SECRETQUERYVALUE",
        "http://user:SECRETPASSWORD@127.0.0.1:{port}/",
        "https://127.0.0.1:{port}/v3/SECRET0123456789abcdef0123456789",
        "http://127.0.0.1:{port}/SECRETTOKENabcdefghijklmnopqrstuvwxyz",
        "ws://127.0.0.1:{port}/ws/SECRETTOKENabcdefghijklmnop?key=SECRETWS",
    ],
)
def test_the_chain_client_error_never_quotes_the_secret(url: str, dead_port: int) -> None:
    chain = Chain.connect(url.format(port=dead_port), operator_key=DEMO_ACCOUNTS[0][1])
    with pytest.raises(ChainUnavailable) as refused:
        chain.head()
    assert "SECRET" not in refused.value.message
    assert "SECRET" not in str(refused.value.fields)
    assert str(dead_port) in refused.value.message  # still says which node


def test_an_unsupported_url_is_refused_without_quoting_its_secret() -> None:
    with pytest.raises(ValueError) as refused:
        Chain.connect("ftp://u:SECRET@h/?k=SECRET", operator_key=DEMO_ACCOUNTS[0][1])
    assert "SECRET" not in str(refused.value)


@pytest.fixture
def redacting() -> Iterator[None]:
    uninstall = install_log_redaction()
    yield
    uninstall()


def test_the_log_redaction_masks_messages_arguments_and_tracebacks(
    redacting: None, caplog: pytest.LogCaptureFixture
) -> None:
    log = logging.getLogger("tests.redact")
    url = f"https://u:SECRETPW@x.infura.io/v3/{KEY}?apikey=SECRETQ"
    log.warning("node %s failed", url)
    try:
        raise ConnectionError(f"cannot reach {url}")
    except ConnectionError:
        log.exception("unexpected error")
    text = caplog.text
    assert "SECRET" not in text and KEY not in text
    assert "x.infura.io/v3/***" in text and "ConnectionError" in text


def test_the_filter_alone_masks_a_record() -> None:
    record = logging.LogRecord(
        "t", logging.ERROR, __file__, 1, "at %s", ("http://h/?k=SECRET",), None
    )
    assert RedactSecrets().filter(record)
    assert record.getMessage() == "at http://h/?k=***"
