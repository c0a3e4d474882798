"""Wallet sign-in over HTTP: a message for this service, valid now, signed by its address."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient

from api.main import create_app
from ledger.consent import signin
from ledger.runtime import Ledger
from ledger.settings import Settings
from tests.erc1271 import deploy_wallet


def challenge_message(client: TestClient, address: str, **change: Any) -> str:
    """The message the nonce endpoint asks for, with ``change`` applied."""
    challenge = client.post("/v1/auth/nonce").json()
    now = datetime.now(UTC)
    fields: dict[str, Any] = {
        "domain": challenge["domain"],
        "address": address,
        "uri": challenge["uri"],
        "chain_id": challenge["chain_id"],
        "nonce": challenge["nonce"],
        "issued_at": now,
        "expiration": now + timedelta(minutes=5),
        **change,
    }
    return signin.SignInMessage(**fields).text()


def post_signed(client: TestClient, signer: LocalAccount, text: str) -> Any:
    signature = bytes(signer.sign_message(encode_defunct(text=text)).signature)
    return client.post(
        "/v1/auth/token", json={"message": text, "signature": "0x" + signature.hex()}
    )


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"uri": "https://evil.example/login"}, "URI https://evil.example/login"),
        ({"issued_at": datetime.now(UTC) + timedelta(days=30)}, "future"),
        ({"not_before": datetime.now(UTC) + timedelta(days=1)}, "not valid before"),
    ],
)
def test_a_message_for_another_site_or_time_gets_no_token(
    client: TestClient, consumer: LocalAccount, change: dict[str, Any], detail: str
) -> None:
    response = post_signed(client, consumer, challenge_message(client, consumer.address, **change))
    assert response.status_code == 401
    assert response.json()["type"].endswith("invalid_sign_in")
    assert detail in response.json()["detail"]


def test_a_message_off_the_grammar_is_422(client: TestClient, consumer: LocalAccount) -> None:
    text = challenge_message(client, consumer.address, version="2")
    response = post_signed(client, consumer, text)
    assert response.status_code == 422
    assert response.json()["type"].endswith("malformed_sign_in")


def test_an_erc1271_wallet_signs_in_over_http(client: TestClient, ledger: Ledger) -> None:
    owner: LocalAccount = Account.create()
    wallet = deploy_wallet(ledger.chain.w3, owner.address)
    response = post_signed(client, owner, challenge_message(client, wallet))
    assert response.status_code == 200, response.text
    assert response.json()["consumer"] == wallet


@pytest.fixture
def https_client(settings: Settings) -> Iterator[TestClient]:
    configured = settings.model_copy(
        update={"sign_in_domain": "ledger.example", "sign_in_uri": "https://ledger.example/"}
    )
    opened = Ledger.open(configured)
    with TestClient(create_app(opened)) as test_client:
        yield test_client
    opened.engine.dispose()


def test_the_configured_uri_is_handed_out_and_required(
    https_client: TestClient, consumer: LocalAccount
) -> None:
    challenge = https_client.post("/v1/auth/nonce").json()
    assert (challenge["domain"], challenge["uri"]) == ("ledger.example", "https://ledger.example/")
    wrong = challenge_message(https_client, consumer.address, uri="http://ledger.example/")
    assert post_signed(https_client, consumer, wrong).status_code == 401
    right = challenge_message(https_client, consumer.address, scheme="https")
    assert post_signed(https_client, consumer, right).status_code == 200
