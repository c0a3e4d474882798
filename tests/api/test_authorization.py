"""The authorization matrix: every protected endpoint, called as every role.

An endpoint answers its own role (whatever the domain answer), refuses a missing or foreign
credential with 401 and another role's API key with 403. One company never sees or records
for another.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eth_account import Account
from fastapi.testclient import TestClient

from ledger.consent import signin
from ledger.runtime import Ledger
from ledger.services import apikeys
from ledger.services.apikeys import Role

ROLES = ("anonymous", "company", "other_company", "consumer", "regulator", "operator")

# (method, path, body, the roles allowed)
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None, set[str]]] = [
    (
        "POST",
        "/v1/checks",
        {"contact": "+33612345678", "channel": "sms"},
        {"company", "other_company"},
    ),
    ("GET", "/v1/usage", None, {"company", "other_company"}),
    ("GET", "/v1/receipts/1", None, {"company", "other_company"}),
    (
        "GET",
        "/v1/consent-proof?contact=%2B33612345678&channel=sms",
        None,
        {"company", "other_company"},
    ),
    ("POST", "/v1/outcomes", {"seq": 1, "outcome": "answered"}, {"company", "other_company"}),
    ("GET", "/v1/me/contacts", None, {"consumer"}),
    (
        "POST",
        "/v1/companies",
        {"company_id": 9, "name": "N", "admin": "0x" + "ab" * 20},
        {"regulator"},
    ),
    ("POST", "/v1/companies/1/suspend", None, {"regulator"}),
    ("POST", "/v1/companies/1/reinstate", None, {"regulator"}),
    ("POST", "/v1/companies/1/keys", None, {"regulator"}),
    ("GET", "/v1/companies/1/keys", None, {"regulator"}),
    ("DELETE", "/v1/keys/000000000000", None, {"regulator"}),
    ("GET", "/v1/usage/export", None, {"regulator"}),
    ("GET", "/v1/events?follow=false", None, {"company", "other_company"}),
    ("POST", "/v1/links/start", {"contact": "+33612345678"}, {"consumer"}),
    ("POST", "/v1/links/verify", {"contact": "+33612345678", "code": "123456"}, {"consumer"}),
    ("GET", "/v1/me/grants", None, {"consumer"}),
    ("GET", "/v1/me/links", None, {"consumer"}),
    ("GET", "/v1/lists", None, {"operator"}),
    ("POST", "/v1/lists/US", None, {"operator"}),
]


@pytest.fixture
def credentials(ledger: Ledger, company: int) -> dict[str, dict[str, str]]:
    ledger.relayer.register_company(2, "Other", ledger.chain.operator.address)

    def key(role: Role, company_id: int | None = None) -> dict[str, str]:
        token, _ = apikeys.create_key(ledger.engine, role=role, company_id=company_id)
        return {"Authorization": f"Bearer {token}"}

    consumer = signin.issue_token(
        Account.create().address,
        datetime.now(UTC) + timedelta(minutes=5),
        ledger.settings.session_secret_bytes,
    )
    return {
        "anonymous": {},
        "company": key(Role.COMPANY, 1),
        "other_company": key(Role.COMPANY, 2),
        "consumer": {"Authorization": f"Bearer {consumer}"},
        "regulator": key(Role.REGULATOR),
        "operator": key(Role.OPERATOR),
    }


@pytest.mark.parametrize(
    ("method", "path", "body", "allowed"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS]
)
@pytest.mark.parametrize("role", ROLES)
def test_each_endpoint_answers_only_its_roles(
    client: TestClient,
    credentials: dict[str, dict[str, str]],
    method: str,
    path: str,
    body: dict[str, Any] | None,
    allowed: set[str],
    role: str,
) -> None:
    response = client.request(method, path, json=body, headers=credentials[role])
    if role in allowed:
        assert response.status_code not in (401, 403), response.text
        assert response.status_code < 500, response.text
    else:
        consumer_only = allowed == {"consumer"}
        expected = 401 if role == "anonymous" or consumer_only or role == "consumer" else 403
        assert response.status_code == expected, response.text
        assert response.headers["content-type"] == "application/problem+json"


def test_a_company_never_sees_another_companys_entries(
    client: TestClient, credentials: dict[str, dict[str, str]]
) -> None:
    recorded = client.post(
        "/v1/checks",
        json={"contact": "+33612345678", "channel": "sms", "record": True},
        headers=credentials["company"],
    ).json()
    seq = recorded["receipt"]["seq"]
    assert client.get(f"/v1/receipts/{seq}", headers=credentials["company"]).status_code == 200
    assert (
        client.get(f"/v1/receipts/{seq}", headers=credentials["other_company"]).status_code == 404
    )
    assert client.get("/v1/usage", headers=credentials["other_company"]).json()["entries"] == []
    theirs = client.post(
        "/v1/outcomes",
        json={"seq": seq, "outcome": "answered"},
        headers=credentials["other_company"],
    )
    assert theirs.status_code == 404


def test_a_revoked_key_is_refused_from_the_next_request(
    client: TestClient, ledger: Ledger, credentials: dict[str, dict[str, str]]
) -> None:
    token, record = apikeys.create_key(ledger.engine, role=Role.COMPANY, company_id=1)
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/usage", headers=auth).status_code == 200
    revoked = client.delete(f"/v1/keys/{record.id}", headers=credentials["regulator"])
    assert revoked.json()["revoked"] is True
    assert client.get("/v1/usage", headers=auth).status_code == 401


@pytest.mark.parametrize(
    "token",
    ["qlk_", "qlk_abc", "qlk_abc_def", "Bearer", "qlk_" + "0" * 12 + "_" + "x" * 43, "qls1.x.y.z"],
)
def test_malformed_or_unknown_keys_are_401(
    client: TestClient, credentials: dict[str, dict[str, str]], token: str
) -> None:
    response = client.get("/v1/usage", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
