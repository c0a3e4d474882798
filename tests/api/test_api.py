"""The HTTP API over the in-process chain: answers, and problem+json for every error."""

from __future__ import annotations

import time
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient

from ledger.consent import messages, wallet
from ledger.db.engine import transaction
from ledger.runtime import Ledger
from ledger.usage.log import size
from tests.helpers import NOTICE, PHONE, sign, sms_terms

CHECK = {"contact": PHONE, "channel": "sms", "record": True}


def grant_via_api(
    client: TestClient, account: LocalAccount, max_contacts: int = 4
) -> dict[str, object]:
    return wallet.Wallet("", account.key.hex(), client=client).grant(
        company_id=1,
        channel="sms",
        max_contacts=max_contacts,
        period=86400 * 365,
        notice_hash=NOTICE,
    )


def assert_problem(response, status: int, code: str) -> dict[str, object]:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert body["type"] == f"https://quota-ledger.dev/problems/{code}"
    assert body["status"] == status
    return body


def test_grant_then_four_recorded_checks_then_refusal(
    client: TestClient, company_auth: dict[str, str], consumer: LocalAccount, linked: str
) -> None:
    answer = grant_via_api(client, consumer)
    assert str(answer["tx_hash"]).startswith("0x")
    bodies = [client.post("/v1/checks", json=CHECK, headers=company_auth).json() for _ in range(5)]
    assert [b["allowed"] for b in bodies] == [True, True, True, True, False]
    assert bodies[4]["reasons"][0]["code"] == "quota_exhausted"
    assert bodies[0]["contact"] == {
        "kind": "phone",
        "value": "+33612345678",
        "region": "FR",
        "time_zone": "Europe/Paris",
    }
    assert bodies[3]["receipt"]["seq"] == 4


def test_revocation_through_the_wallet_refuses_the_next_check(
    client: TestClient, company_auth: dict[str, str], consumer: LocalAccount, linked: str
) -> None:
    grant_via_api(client, consumer)
    assert client.post("/v1/checks", json=CHECK, headers=company_auth).json()["allowed"]
    wallet.Wallet("", consumer.key.hex(), client=client).revoke(company_id=1, channel="sms")
    body = client.post("/v1/checks", json=CHECK, headers=company_auth).json()
    assert not body["allowed"]
    assert body["reasons"][0]["code"] == "revoked"


def test_invalid_phone_is_422_naming_the_reason_and_records_nothing(
    client: TestClient, ledger: Ledger, company_auth: dict[str, str]
) -> None:
    response = client.post("/v1/checks", json={**CHECK, "contact": "+33 6"}, headers=company_auth)
    body = assert_problem(response, 422, "invalid_contact")
    assert "reason" in body
    with transaction(ledger.engine) as s:
        assert size(s) == 0


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {**CHECK, "channel": "pigeon"},
        {**CHECK, "contact": 12},
        {**CHECK, "contact": ""},
        {**CHECK, "record": "maybe"},
    ],
)
def test_schema_violations_are_422_problems(
    client: TestClient, company_auth: dict[str, str], payload: dict[str, object]
) -> None:
    body = assert_problem(
        client.post("/v1/checks", json=payload, headers=company_auth), 422, "validation"
    )
    assert body["errors"]


def grant_draft(consumer: LocalAccount, company_id: int = 1) -> dict[str, Any]:
    """What a wallet sends to get a grant's typed data (deadline 10 minutes away)."""
    return {
        "consumer": consumer.address,
        "company_id": company_id,
        "channel": "sms",
        "max_contacts": 4,
        "period": 86400,
        "notice_hash": NOTICE,
        "deadline": int(time.time()) + 600,
    }


def test_a_grant_over_no_notice_is_refused_before_signing_and_at_relay(
    client: TestClient, ledger: Ledger, company: int, consumer: LocalAccount
) -> None:
    draft = {**grant_draft(consumer), "notice_hash": "0x" + "00" * 32}
    body = assert_problem(client.post("/v1/grants/typed-data", json=draft), 422, "invalid_grant")
    assert "notice" in body["detail"]
    missing = {k: v for k, v in grant_draft(consumer).items() if k != "notice_hash"}
    assert client.post("/v1/grants/typed-data", json=missing).status_code == 422
    # A wallet that signs the zero hash anyway is refused by the relay, before any gas.
    terms = sms_terms(notice_hash=b"\x00" * 32)
    message = messages.set_grant(
        consumer.address, terms, version=0, epoch=0, deadline=draft["deadline"]
    )
    signature = sign(ledger, consumer, message)
    nonce = ledger.chain.w3.eth.get_transaction_count(ledger.chain.operator.address)
    relayed = client.post(
        "/v1/grants",
        json={**draft, "version": 0, "epoch": 0, "signature": "0x" + signature.hex()},
    )
    assert_problem(relayed, 422, "invalid_grant")
    assert ledger.chain.w3.eth.get_transaction_count(ledger.chain.operator.address) == nonce


def test_a_bad_signature_is_401_and_costs_no_gas(
    client: TestClient, ledger: Ledger, company: int, consumer: LocalAccount
) -> None:
    draft = grant_draft(consumer)
    prepared = client.post("/v1/grants/typed-data", json=draft).json()
    forged = messages.sign(prepared["typed_data"], Account.create().key)
    nonce = ledger.chain.w3.eth.get_transaction_count(ledger.chain.operator.address)
    response = client.post(
        "/v1/grants", json={**draft, "version": 0, "epoch": 0, "signature": "0x" + forged.hex()}
    )
    assert_problem(response, 401, "invalid_signature")
    assert ledger.chain.w3.eth.get_transaction_count(ledger.chain.operator.address) == nonce


def test_a_replayed_grant_is_409(client: TestClient, company: int, consumer: LocalAccount) -> None:
    draft = grant_draft(consumer)
    prepared = client.post("/v1/grants/typed-data", json=draft).json()
    signature = "0x" + messages.sign(prepared["typed_data"], consumer.key).hex()
    body = {
        **draft,
        "version": prepared["version"],
        "epoch": prepared["epoch"],
        "signature": signature,
    }
    assert client.post("/v1/grants", json=body).status_code == 201
    assert_problem(client.post("/v1/grants", json=body), 409, "stale_version")


def test_a_grant_for_an_unknown_company_is_404(client: TestClient, consumer: LocalAccount) -> None:
    draft = grant_draft(consumer, company_id=7)
    prepared = client.post("/v1/grants/typed-data", json=draft).json()
    signature = "0x" + messages.sign(prepared["typed_data"], consumer.key).hex()
    response = client.post(
        "/v1/grants", json={**draft, "version": 0, "epoch": 0, "signature": signature}
    )
    assert_problem(response, 404, "unknown_company")


def test_health_and_domain(client: TestClient, ledger: Ledger) -> None:
    health = client.get("/v1/health").json()
    assert health["status"] == "ok" and health["contract"] == ledger.chain.address
    domain = client.get("/v1/ledger").json()["domain"]
    assert domain == {"chain_id": ledger.chain.chain_id, "verifying_contract": ledger.chain.address}


def test_unknown_route_is_a_problem_too(client: TestClient) -> None:
    assert_problem(client.get("/v1/nothing"), 404, "http_404")
