"""Ending consumer tokens over HTTP: sign-out, sign-out everywhere, revoke-all, and failing closed.

A second app on its own engine over the same database stands for another API process (the
real processes are in tests/reliability/test_sign_out.py).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.main import create_app
from ledger.consent import messages
from ledger.runtime import Ledger
from ledger.schema import migrated_engine
from tests.api.test_api_signin import challenge_message, post_signed
from tests.helpers import soon

PROBLEM = "https://quota-ledger.dev/problems/"


def signed_in(client: TestClient, account: LocalAccount) -> dict[str, str]:
    """Signs in over HTTP as ``account``; its Authorization header."""
    response = post_signed(client, account, challenge_message(client, account.address))
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def refused(client: TestClient, auth: dict[str, str], detail: str) -> None:
    response = client.get("/v1/me/grants", headers=auth)
    assert response.status_code == 401, response.text
    assert response.json()["type"] == PROBLEM + "invalid_token"
    assert detail in response.json()["detail"]


def works(client: TestClient, auth: dict[str, str]) -> bool:
    return client.get("/v1/me/grants", headers=auth).status_code == 200


@pytest.fixture
def second(ledger: Ledger) -> Iterator[TestClient]:
    """Another app, with its own engine (its own connections) over the same database."""
    other = copy.copy(ledger)
    other.engine = migrated_engine(ledger.settings.sqlalchemy_url)
    try:
        with TestClient(create_app(other)) as client:
            yield client
    finally:
        other.engine.dispose()


def test_a_signed_out_token_is_refused_by_every_app_and_the_consumers_others_still_work(
    client: TestClient, second: TestClient, consumer: LocalAccount
) -> None:
    laptop, phone = signed_in(client, consumer), signed_in(client, consumer)
    assert works(second, laptop)
    assert client.post("/v1/auth/sign-out", headers=laptop).status_code == 204
    refused(client, laptop, "signed out")
    refused(second, laptop, "signed out")
    assert works(client, phone) and works(second, phone)
    # Signing out again with it is refused like any use of it: it is already ended.
    again = second.post("/v1/auth/sign-out", headers=laptop)
    assert again.status_code == 401


def test_signing_out_everywhere_ends_every_token_of_the_consumer_only(
    client: TestClient, second: TestClient, consumer: LocalAccount
) -> None:
    laptop, phone = signed_in(client, consumer), signed_in(client, consumer)
    someone_else = signed_in(client, Account.create())
    assert second.post("/v1/auth/sign-out-everywhere", headers=phone).status_code == 204
    for app in (client, second):
        refused(app, laptop, "signed out everywhere")
        refused(app, phone, "signed out everywhere")
        assert works(app, someone_else)
    assert works(second, signed_in(client, consumer))  # signing in again works


def test_revoke_all_relayed_through_the_api_ends_the_consumers_tokens(
    client: TestClient, second: TestClient, ledger: Ledger, consumer: LocalAccount
) -> None:
    auth = signed_in(client, consumer)
    nonce = int(client.get(f"/v1/consumers/{consumer.address}/nonce").json()["nonce"])
    deadline = soon()
    doc = messages.revoke_all(consumer.address, nonce=nonce, epoch=0, deadline=deadline)
    signature = messages.sign(doc.typed_data(ledger.chain.domain), consumer.key)
    body = {"consumer": consumer.address, "nonce": nonce, "epoch": 0, "deadline": deadline}
    relayed = second.post("/v1/revocations/all", json={**body, "signature": "0x" + signature.hex()})
    assert relayed.status_code == 201, relayed.text
    refused(client, auth, "the consumer's epoch is now 1")
    refused(second, auth, "the consumer's epoch is now 1")
    fresh = signed_in(client, consumer)  # a sign-in after it is bound to the new epoch
    assert works(client, fresh) and works(second, fresh)


def _v1_token(address: str, secret: bytes) -> str:
    body = f"{address}.{int((datetime.now(UTC) + timedelta(minutes=5)).timestamp())}"
    mac = base64.urlsafe_b64encode(hmac.new(secret, body.encode(), hashlib.sha256).digest())
    return f"qls1.{body}.{mac.decode().rstrip('=')}"


def test_a_token_of_the_old_format_is_refused_though_signed_with_our_secret(
    client: TestClient, ledger: Ledger, consumer: LocalAccount
) -> None:
    old = _v1_token(consumer.address, ledger.settings.session_secret_bytes)
    refused(client, {"Authorization": f"Bearer {old}"}, "unknown or old token format")


@pytest.mark.parametrize("table", ["revoked_token", "consumer_sign_out", "ix_consumer"])
def test_a_revocation_list_or_index_that_cannot_be_read_refuses_with_503(
    client: TestClient, ledger: Ledger, consumer: LocalAccount, table: str
) -> None:
    auth = signed_in(client, consumer)
    assert works(client, auth)
    with ledger.engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {table}"))
    response = client.get("/v1/me/grants", headers=auth)
    assert response.status_code == 503
    assert response.json()["type"] == PROBLEM + "database_unavailable"
    assert table in response.json()["detail"]


def test_an_index_that_holds_nothing_refuses_sign_in_and_tokens_with_503(
    client: TestClient, ledger: Ledger, consumer: LocalAccount
) -> None:
    auth = signed_in(client, consumer)
    with ledger.engine.begin() as conn:
        conn.execute(text("DELETE FROM ix_checkpoint"))
    response = client.get("/v1/me/grants", headers=auth)
    assert response.status_code == 503
    assert response.json()["type"] == PROBLEM + "token_check_unavailable"
    sign_in = post_signed(client, consumer, challenge_message(client, consumer.address))
    assert sign_in.status_code == 503
