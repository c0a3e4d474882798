"""A consumer token ended through one API process is refused by another sharing its database.

`quota-ledger up` (anvil + API) and a second API process, `quota-ledger serve`, on the same node
and SQLite file: a sign-out through the first is refused by the second from its next request,
and a revoke-all relayed through the first ends the consumer's tokens in the second, with no
restart and nothing kept in either process's memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from ledger.chain.anvil import anvil_binary
from ledger.consent import messages, signin
from tests.stack import Stack

PROBLEM = "https://quota-ledger.dev/problems/"

try:
    anvil_binary()
except Exception as exc:  # pragma: no cover - only without `npm ci`
    pytest.skip(f"anvil not installed: {exc}", allow_module_level=True)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[tuple[Stack, Stack]]:
    """`up`, then `serve` on its node and its database."""
    for name in ("up", "serve"):
        (tmp_path / name).mkdir()
    up = Stack(tmp_path / "up")
    serve = Stack(
        tmp_path / "serve",
        command="serve",
        env={
            "QL_CHAIN": "rpc",
            "QL_RPC_URL": f"http://127.0.0.1:{up.env['QL_ANVIL_PORT']}",
            "QL_DATABASE_URL": f"sqlite:///{(tmp_path / 'up' / 'ledger.sqlite3').resolve()}",
        },
    )
    try:
        up.start()
        serve.start()
        yield up, serve
    finally:
        serve.stop()
        up.stop()


def sign_in(api: str, account: LocalAccount) -> dict[str, str]:
    """Signs in through ``api`` as a wallet does; the Authorization header of the token."""
    challenge = httpx.post(f"{api}/v1/auth/nonce", timeout=30).json()
    now = datetime.now(UTC)
    text = signin.SignInMessage(
        domain=challenge["domain"],
        address=account.address,
        uri=challenge["uri"],
        chain_id=challenge["chain_id"],
        nonce=challenge["nonce"],
        issued_at=now,
        expiration=now + timedelta(minutes=5),
    ).text()
    signature = bytes(account.sign_message(encode_defunct(text=text)).signature)
    response = httpx.post(
        f"{api}/v1/auth/token",
        json={"message": text, "signature": "0x" + signature.hex()},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def my_grants(api: str, auth: dict[str, str]) -> httpx.Response:
    return httpx.get(f"{api}/v1/me/grants", headers=auth, timeout=30)


def revoke_all(api: str, account: LocalAccount) -> None:
    """Relays the consumer's revoke-all through ``api``."""
    nonce = int(
        httpx.get(f"{api}/v1/consumers/{account.address}/nonce", timeout=30).json()["nonce"]
    )
    domain = httpx.get(f"{api}/v1/ledger", timeout=30).json()["domain"]
    deadline = int(datetime.now(UTC).timestamp()) + 3600
    doc = messages.revoke_all(account.address, nonce=nonce, epoch=0, deadline=deadline)
    typed = doc.typed_data(messages.Domain(domain["chain_id"], domain["verifying_contract"]))
    body = {
        "consumer": account.address,
        "nonce": nonce,
        "epoch": 0,
        "deadline": deadline,
        "signature": "0x" + messages.sign(typed, account.key).hex(),
    }
    relayed = httpx.post(f"{api}/v1/revocations/all", json=body, timeout=60)
    assert relayed.status_code == 201, relayed.text


def assert_refused(response: httpx.Response, detail: str) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["type"] == PROBLEM + "invalid_token"
    assert detail in response.json()["detail"]


def test_a_token_ended_through_one_process_is_refused_by_the_other(
    processes: tuple[Stack, Stack],
) -> None:
    up, serve = processes
    account: LocalAccount = Account.create()
    laptop, phone = sign_in(up.url, account), sign_in(serve.url, account)
    for api in (up.url, serve.url):
        assert my_grants(api, laptop).status_code == 200
        assert my_grants(api, phone).status_code == 200

    # Sign-out through `up`: `serve` refuses the token at once; the consumer's other one works.
    assert httpx.post(f"{up.url}/v1/auth/sign-out", headers=laptop, timeout=30).status_code == 204
    assert_refused(my_grants(serve.url, laptop), "signed out")
    assert my_grants(serve.url, phone).status_code == 200

    # Revoke-all relayed through `up` (it answers once the shared index holds the new epoch):
    # `serve` refuses the token it issued itself, with nothing written for the tokens.
    revoke_all(up.url, account)
    assert_refused(my_grants(serve.url, phone), "the consumer's epoch is now 1")
    assert my_grants(serve.url, sign_in(serve.url, account)).status_code == 200
