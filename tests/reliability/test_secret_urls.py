"""A node URL with a key in it (hosted JSON-RPC providers put keys in URLs) never shows in the
anonymous health, in a 503 problem or in the server's log: not when the node is down at start,
not when it freezes under a running `serve`, not when nothing listens on its port any more."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ledger.chain.anvil import DEMO_ACCOUNTS
from tests.helpers import NOTICE
from tests.reliability.frozen import anvil_pid, frozen
from tests.stack import CLI, Stack, free_port

CONSUMER = DEMO_ACCOUNTS[0][0]
HEX_KEY = "5ec7e75ec7e75ec7e75ec7e75ec7e7aa"  # an Infura-style 32-hex project key
SECRETS = ("SECRETPASSWORD", "SECRETAPIKEY", HEX_KEY, "SECRETPATHTOKEN")
URLS = [
    "http://127.0.0.1:{port}/?apikey=SECRETAPIKEY",
    "http://user:SECRETPASSWORD@127.0.0.1:{port}/",
    "https://127.0.0.1:{port}/v3/" + HEX_KEY,
    "http://127.0.0.1:{port}/SECRETPATHTOKENabcdefghijklmnop",
]
DRAFT = {
    "consumer": CONSUMER,
    "company_id": 1,
    "channel": "sms",
    "max_contacts": 4,
    "period": 86400,
    "notice_hash": NOTICE,
    "deadline": 0,
}


def assert_no_secret(text: str) -> None:
    leaked = [s for s in SECRETS if s in text]
    assert not leaked, f"{leaked} in:\n{text}"


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: a frozen node."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield int(listener.getsockname()[1])


def serve_env(data_dir: Path, rpc_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "QL_CHAIN": "rpc",
        "QL_RPC_URL": rpc_url,
        "QL_DATA_DIR": str(data_dir),
        "QL_API_PORT": str(free_port()),
        "COLUMNS": "1000",  # rich would wrap a long line, and a secret with it, past a grep
        **extra,
    }


@pytest.mark.parametrize("url", URLS)
def test_serve_refusing_to_start_on_a_dead_node_does_not_print_the_key(
    tmp_path: Path, url: str
) -> None:
    dead = free_port()  # closed again: nothing listens there
    done = subprocess.run(
        [*CLI, "serve"],
        env=serve_env(tmp_path, url.format(port=dead)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "EVM node unavailable" in output, output
    assert_no_secret(output)


def test_serve_refusing_to_start_on_a_frozen_node_does_not_print_the_key(
    tmp_path: Path, silent_port: int
) -> None:
    url = f"http://user:SECRETPASSWORD@127.0.0.1:{silent_port}/v3/{HEX_KEY}?apikey=SECRETAPIKEY"
    done = subprocess.run(
        [*CLI, "serve"],
        env=serve_env(tmp_path, url, QL_RPC_TIMEOUT="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "timed out" in output, output
    assert_no_secret(output)


def until_degraded(api: httpx.Client, within: float) -> list[str]:
    """Health bodies, asked every 100 ms until one is 503 (degraded)."""
    bodies, deadline = [], time.monotonic() + within
    while True:
        response = api.get("/v1/health")
        bodies.append(response.text)
        if response.status_code == 503:
            return bodies
        assert time.monotonic() < deadline, bodies[-1]
        time.sleep(0.1)


def test_a_running_serve_never_shows_the_key_when_its_node_freezes_or_goes(
    tmp_path: Path,
) -> None:
    stack = Stack(tmp_path / "up")
    (tmp_path / "up").mkdir()
    stack.start()
    serve: subprocess.Popen[bytes] | None = None
    log = tmp_path / "serve.log"
    try:
        address = httpx.get(f"{stack.url}/v1/ledger").json()["domain"]["verifying_contract"]
        port = stack.env["QL_ANVIL_PORT"]
        # anvil answers on "/" whatever the userinfo and the query: a hosted node's URL shape.
        url = f"http://user:SECRETPASSWORD@127.0.0.1:{port}/?apikey=SECRETAPIKEY"
        env = serve_env(tmp_path / "serve", url, QL_CONTRACT_ADDRESS=address)
        api_url = f"http://127.0.0.1:{env['QL_API_PORT']}"
        with log.open("ab") as out:
            serve = subprocess.Popen([*CLI, "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
        seen: list[str] = []
        with httpx.Client(base_url=api_url, timeout=30) as api:
            deadline = time.monotonic() + 60
            while True:
                assert serve.poll() is None, log.read_text()
                try:
                    if api.get("/v1/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            draft = {**DRAFT, "deadline": int(time.time()) + 3600}

            with frozen(anvil_pid(stack)):
                seen += until_degraded(api, within=30)
                refused = api.post("/v1/grants/typed-data", json=draft)
                assert refused.status_code == 503, refused.text
                seen.append(refused.text)
                nonce = api.get(f"/v1/consumers/{CONSUMER}/nonce")
                assert nonce.status_code == 503, nonce.text
                seen.append(nonce.text)

            stack.stop()  # and with it anvil: now nothing listens on the node's port
            time.sleep(1.0)
            seen += until_degraded(api, within=30)
            for _ in range(3):
                refused = api.post("/v1/grants/typed-data", json=draft)
                assert refused.status_code == 503, refused.text
                seen.append(refused.text)
                time.sleep(0.5)
        serve.send_signal(signal.SIGTERM)
        serve.wait(30)
    finally:
        if serve is not None and serve.poll() is None:
            serve.kill()
        stack.stop()
    text = log.read_text()
    assert "http://***@127.0.0.1" in text  # the announced node, masked
    assert "circuit open" in text  # the failures were logged...
    assert "Connection refused" in text or "ConnectionError" in text
    assert any("chain_unavailable" in body for body in seen)
    assert any("node unreachable" in body for body in seen)
    for body in seen:
        assert_no_secret(body)
    assert_no_secret(text)  # ...without the key
