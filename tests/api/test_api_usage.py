"""Reading the usage log over HTTP, outcomes, sign-in, limits and metrics."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient

from api.main import create_app
from ledger.consent import signin
from ledger.runtime import Ledger
from tests.helpers import PHONE, grant, sms_terms

CHECK = {"contact": PHONE, "channel": "sms", "record": True}


def record(client: TestClient, auth: dict[str, str], n: int) -> list[int]:
    return [
        client.post("/v1/checks", json=CHECK, headers=auth).json()["receipt"]["seq"]
        for _ in range(n)
    ]


def test_usage_pages_by_sequence_and_filters_by_channel(
    client: TestClient,
    ledger: Ledger,
    company_auth: dict[str, str],
    consumer: LocalAccount,
    linked: str,
) -> None:
    grant(ledger, consumer, sms_terms(max_contacts=10))
    seqs = record(client, company_auth, 5)
    first = client.get("/v1/usage?limit=2", headers=company_auth).json()
    assert [e["seq"] for e in first["entries"]] == seqs[:2]
    rest = client.get(
        f"/v1/usage?limit=10&after_seq={first['next_after_seq']}", headers=company_auth
    ).json()
    assert [e["seq"] for e in rest["entries"]] == seqs[2:]
    assert rest["next_after_seq"] is None
    assert client.get("/v1/usage?channel=call", headers=company_auth).json()["entries"] == []
    entry = rest["entries"][0]
    assert entry["consumer"] == consumer.address and entry["decision"] == "allowed"
    assert entry["prev_hash"] == first["entries"][1]["entry_hash"]


def test_an_outcome_is_appended_once(
    client: TestClient,
    ledger: Ledger,
    company_auth: dict[str, str],
    consumer: LocalAccount,
    linked: str,
) -> None:
    grant(ledger, consumer, sms_terms())
    (seq,) = record(client, company_auth, 1)
    done = client.post(
        "/v1/outcomes", json={"seq": seq, "outcome": "no_answer"}, headers=company_auth
    )
    assert done.status_code == 201 and done.json()["seq"] == seq + 1
    again = client.post(
        "/v1/outcomes", json={"seq": seq, "outcome": "answered"}, headers=company_auth
    )
    assert again.status_code == 409
    outcome = client.get(f"/v1/receipts/{seq + 1}", headers=company_auth).json()
    assert (outcome["decision"], outcome["outcome"], outcome["refers_to"]) == (
        "outcome",
        "no_answer",
        seq,
    )


def test_the_regulator_exports_the_whole_log_as_json_lines(
    client: TestClient,
    ledger: Ledger,
    company_auth: dict[str, str],
    regulator_auth: dict[str, str],
    consumer: LocalAccount,
    linked: str,
) -> None:
    grant(ledger, consumer, sms_terms())
    record(client, company_auth, 3)
    response = client.get("/v1/usage/export", headers=regulator_auth)
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    entries = [line for line in lines if line["type"] == "entry"]  # after the log's own line
    assert [e["seq"] for e in entries] == [1, 2, 3]
    assert all(
        b["entry"]["prev_hash"] == a["entry_hash"]
        for a, b in zip(entries, entries[1:], strict=False)
    )


def test_a_consumer_signs_in_and_sees_who_contacted_them(
    client: TestClient,
    ledger: Ledger,
    company_auth: dict[str, str],
    consumer: LocalAccount,
    linked: str,
) -> None:
    grant(ledger, consumer, sms_terms())
    record(client, company_auth, 2)
    challenge = client.post("/v1/auth/nonce").json()
    now = datetime.now(UTC)
    text = signin.SignInMessage(
        domain=challenge["domain"],
        address=consumer.address,
        uri=challenge["uri"],
        chain_id=challenge["chain_id"],
        nonce=challenge["nonce"],
        issued_at=now,
        expiration=now + timedelta(minutes=5),
    ).text()
    signature = "0x" + bytes(consumer.sign_message(encode_defunct(text=text)).signature).hex()
    token = client.post("/v1/auth/token", json={"message": text, "signature": signature}).json()
    assert token["consumer"] == consumer.address
    contacts = client.get(
        "/v1/me/contacts", headers={"Authorization": f"Bearer {token['token']}"}
    ).json()
    assert [(c["company_id"], c["channel"], c["grant_version"]) for c in contacts] == [
        (1, "sms", 1)
    ] * 2


def test_oversized_bodies_are_413_and_change_nothing(
    client: TestClient, ledger: Ledger, company_auth: dict[str, str]
) -> None:
    huge = {
        "contact": "+33612345678",
        "channel": "sms",
        "pad": "x" * (ledger.settings.max_body_bytes + 1),
    }
    response = client.post("/v1/checks", json=huge, headers=company_auth)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert client.get("/v1/usage", headers=company_auth).json()["entries"] == []


def test_a_key_over_its_rate_is_429_with_retry_after(
    ledger: Ledger, company_auth: dict[str, str]
) -> None:
    limited = ledger.settings.model_copy(update={"rate_limit_per_minute": 3})
    ledger.settings = limited
    with TestClient(create_app(ledger)) as client:
        statuses = [client.get("/v1/usage", headers=company_auth).status_code for _ in range(5)]
        last = client.get("/v1/usage", headers=company_auth)
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429]
    assert int(last.headers["Retry-After"]) >= 1


def test_metrics_count_requests_by_route_never_by_contact(
    client: TestClient, company_auth: dict[str, str]
) -> None:
    client.post("/v1/checks", json=CHECK, headers=company_auth)
    text = client.get("/metrics").text
    assert 'ql_http_requests_total{method="POST",route="/v1/checks",status="200"} 1.0' in text
    assert 'ql_decisions_total{allowed="false",reason="contact_not_linked"} 1.0' in text
    assert "ql_index_lag_blocks 0.0" in text and "ql_index_stale 0.0" in text
    assert "612345678" not in text
