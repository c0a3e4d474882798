"""In process: with the node's URL carrying a key and the node down or frozen, the key is in no
health body, no problem document and no log record (as `serve` and `up` log)."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from ledger.chain.client import Chain
from ledger.chain.redact import install_log_redaction
from ledger.domain.errors import ChainUnavailable
from ledger.runtime import Ledger
from tests.helpers import NOTICE

HEX_KEY = "5ec7e75ec7e75ec7e75ec7e75ec7e7aa"
SECRETS = ("SECRETPASSWORD", "SECRETAPIKEY", HEX_KEY, "SECRETPATHTOKEN")
URLS = [
    "http://127.0.0.1:{port}/?apikey=SECRETAPIKEY",
    "http://user:SECRETPASSWORD@127.0.0.1:{port}/",
    "https://127.0.0.1:{port}/v3/" + HEX_KEY,
    "http://127.0.0.1:{port}/SECRETPATHTOKENabcdefghijklmnop",
]


@pytest.fixture(params=["dead", "frozen"])
def port(request: pytest.FixtureRequest) -> Iterator[int]:
    """Where nothing listens, or a listener that never answers (a frozen node)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        if request.param == "frozen":
            s.listen(64)
            yield int(s.getsockname()[1])
            return
        found = int(s.getsockname()[1])
    yield found


@pytest.fixture
def redacting() -> Iterator[None]:
    uninstall = install_log_redaction()
    yield
    uninstall()


def on_node(ledger: Ledger, url: str) -> Chain:
    """The ledger, now talking to the node at ``url`` (its chain id and contract known)."""
    chain = Chain.connect(url, operator_key=ledger.chain.operator.key.hex(), timeout=0.5)
    chain.use(ledger.chain.address)
    chain._chain_id = ledger.chain.chain_id  # as after a start: asked once, then remembered
    ledger.chain = ledger.state.chain = ledger.relayer.chain = chain
    return chain


@pytest.mark.parametrize("url", URLS)
def test_the_key_is_in_no_body_and_no_log_line(
    ledger: Ledger,
    company: int,
    url: str,
    port: int,
    redacting: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    on_node(ledger, url.format(port=port))
    bodies = []
    with TestClient(create_app(ledger)) as client:
        deadline = time.monotonic() + 10
        while (health := client.get("/v1/health")).status_code != 503:
            assert time.monotonic() < deadline, health.text
            time.sleep(0.05)
        bodies.append(health.text)
        assert "node unreachable" in health.json()["detail"]
        draft = {
            "consumer": ledger.chain.operator.address,
            "company_id": company,
            "channel": "sms",
            "max_contacts": 4,
            "period": 86400,
            "notice_hash": NOTICE,
            "deadline": int(time.time()) + 3600,
        }
        for _ in range(2):  # the first reaches the node, the next finds the circuit open
            refused = client.post("/v1/grants/typed-data", json=draft)
            assert refused.status_code == 503, refused.text
            assert refused.json()["type"].endswith("chain_unavailable")
            bodies.append(refused.text)
    text = caplog.text
    assert "chain_unavailable" in text
    for body in [*bodies, text]:
        assert not [s for s in SECRETS if s in body], body


def test_the_problem_handler_masks_a_url_whoever_raised_it(ledger: Ledger) -> None:
    def raw(*_: object) -> int:
        raise ChainUnavailable("http://user:SECRETPASSWORD@node/?apikey=SECRETAPIKEY is down")

    ledger.chain.grant_version = raw  # type: ignore[method-assign]
    draft = {
        "consumer": ledger.chain.operator.address,
        "company_id": 1,
        "channel": "sms",
        "max_contacts": 4,
        "period": 86400,
        "notice_hash": NOTICE,
        "deadline": int(time.time()) + 3600,
    }
    with TestClient(create_app(ledger)) as client:
        refused = client.post("/v1/grants/typed-data", json=draft)
    assert refused.status_code == 503
    assert "http://***@node/?apikey=***" in refused.json()["detail"]
    assert "SECRET" not in refused.text
