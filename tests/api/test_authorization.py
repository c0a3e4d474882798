"""The authorization matrix: every endpoint the app serves, called as every role.

The matrix is built from the app's routes: an endpoint without a row of expected access fails.
An endpoint answers its own roles (whatever the domain answer), refuses a missing or foreign
credential with 401 and another role's API key with 403. One company never sees or records
for another.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import fastapi.routing
import pytest
from eth_account import Account
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from api.main import create_app
from ledger.consent import signin
from ledger.runtime import Ledger
from ledger.services import apikeys
from ledger.services.apikeys import Role

ROLES = ("anonymous", "company", "other_company", "consumer", "regulator", "operator")

ANYONE = frozenset(ROLES)
COMPANIES = frozenset({"company", "other_company"})
CONSUMER = frozenset({"consumer"})
REGULATOR = frozenset({"regulator"})
OPERATOR = frozenset({"operator"})

ADDRESS = "0x" + "ab" * 20
CONTACT = {"contact": "+33612345678", "channel": "sms"}


@dataclass(frozen=True)
class Access:
    """Who may call an endpoint, and one request to it (its body may be refused: only the
    credential check is under test)."""

    allowed: frozenset[str]
    url: str | None = None  # the route's path, filled in, with a query; default: the path
    json: Any = None
    content: bytes | None = None


# Every (method, route path) the API serves, and who may call it. A new endpoint fails
# `test_the_matrix_covers_every_route_and_method` until it has a row here. Public relays get an
# empty body: their answer (422) shows no credential was asked for, where a signature they
# could not verify would answer 401.
EXPECTED: dict[tuple[str, str], Access] = {
    # Companies: checks, their own usage log, consent proofs, the grant event feed.
    ("POST", "/v1/checks"): Access(COMPANIES, json=CONTACT),
    ("POST", "/v1/checks/batch"): Access(COMPANIES, json={"items": [CONTACT]}),
    ("POST", "/v1/scrub"): Access(COMPANIES, "/v1/scrub?channel=sms", content=b"+33612345678\n"),
    ("GET", "/v1/usage"): Access(COMPANIES),
    ("GET", "/v1/receipts/{seq}"): Access(COMPANIES, "/v1/receipts/1"),
    ("POST", "/v1/outcomes"): Access(COMPANIES, json={"seq": 1, "outcome": "answered"}),
    ("GET", "/v1/consent-proof"): Access(
        COMPANIES, "/v1/consent-proof?contact=%2B33612345678&channel=sms"
    ),
    ("GET", "/v1/events"): Access(COMPANIES, "/v1/events?follow=false"),
    # Consumers, signed in with their wallet.
    ("GET", "/v1/me/contacts"): Access(CONSUMER),
    ("GET", "/v1/me/grants"): Access(CONSUMER),
    ("GET", "/v1/me/links"): Access(CONSUMER),
    ("POST", "/v1/links/start"): Access(CONSUMER, json={"contact": "+33612345678"}),
    ("POST", "/v1/links/verify"): Access(
        CONSUMER, json={"contact": "+33612345678", "code": "123456"}
    ),
    ("POST", "/v1/auth/sign-out"): Access(CONSUMER),
    ("POST", "/v1/auth/sign-out-everywhere"): Access(CONSUMER),
    # The regulator: the company registry, company keys, the usage export.
    ("POST", "/v1/companies"): Access(
        REGULATOR, json={"company_id": 9, "name": "N", "admin": ADDRESS}
    ),
    ("POST", "/v1/companies/{company_id}/suspend"): Access(REGULATOR, "/v1/companies/1/suspend"),
    ("POST", "/v1/companies/{company_id}/reinstate"): Access(
        REGULATOR, "/v1/companies/1/reinstate"
    ),
    ("POST", "/v1/companies/{company_id}/keys"): Access(REGULATOR, "/v1/companies/1/keys"),
    ("GET", "/v1/companies/{company_id}/keys"): Access(REGULATOR, "/v1/companies/1/keys"),
    ("DELETE", "/v1/keys/{key_id}"): Access(REGULATOR, "/v1/keys/000000000000"),
    ("GET", "/v1/usage/export"): Access(REGULATOR),
    ("GET", "/v1/audit/verify"): Access(REGULATOR),
    ("GET", "/v1/audit/replay"): Access(REGULATOR),
    ("GET", "/v1/audit/report"): Access(REGULATOR),
    # Whoever checks the log: the anchors, and the proofs between them.
    ("GET", "/v1/anchors"): Access(COMPANIES | REGULATOR),
    ("GET", "/v1/anchors/{size1}/consistency/{size2}"): Access(
        COMPANIES | REGULATOR, "/v1/anchors/1/consistency/1"
    ),
    # The operator: opposition lists.
    ("GET", "/v1/lists"): Access(OPERATOR),
    ("POST", "/v1/lists/{region}"): Access(OPERATOR, "/v1/lists/US"),
    # Anyone: the messages a consumer signed carry their own authority; reads of public state.
    ("POST", "/v1/grants/typed-data"): Access(ANYONE, json={}),
    ("POST", "/v1/grants"): Access(ANYONE, json={}),
    ("POST", "/v1/grants/revocations"): Access(ANYONE, json={}),
    ("POST", "/v1/revocations/all"): Access(ANYONE, json={}),
    ("POST", "/v1/global-caps"): Access(ANYONE, json={}),
    ("POST", "/v1/links/unlink"): Access(ANYONE, json={}),
    ("GET", "/v1/grants/{consumer}/{company_id}/{channel}"): Access(
        ANYONE, f"/v1/grants/{ADDRESS}/1/sms"
    ),
    ("GET", "/v1/consumers/{consumer}/nonce"): Access(ANYONE, f"/v1/consumers/{ADDRESS}/nonce"),
    ("POST", "/v1/auth/nonce"): Access(ANYONE),
    ("POST", "/v1/auth/token"): Access(ANYONE, json={}),
    ("GET", "/v1/ledger"): Access(ANYONE),
    ("GET", "/v1/health"): Access(ANYONE),
    ("GET", "/metrics"): Access(ANYONE),
}


def served_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) the app serves through a FastAPI route, included routers too."""
    # FastAPI 0.137+ keeps each included router as one node of `app.routes`, which
    # `iter_route_contexts` (0.137.2+) expands; older versions list every route in `app.routes`.
    expand = getattr(fastapi.routing, "iter_route_contexts", None)
    served = set()
    for context in expand(app.routes) if expand is not None else app.routes:
        if isinstance(getattr(context, "original_route", context), APIRoute):
            served |= {(method, context.path) for method in context.methods}
    return served


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


def test_the_matrix_covers_every_route_and_method(client: TestClient) -> None:
    served = served_routes(client.app)  # type: ignore[arg-type]
    assert served, "no route found: the app's routes were not expanded"
    assert set(EXPECTED) - served == set(), "rows for endpoints the API no longer serves"
    assert served - set(EXPECTED) == set(), "endpoints without a row in EXPECTED"


def test_a_new_endpoint_without_a_row_is_noticed(ledger: Ledger) -> None:
    app = create_app(ledger)
    extra = APIRouter(prefix="/v1/extra")
    extra.add_api_route("/thing", lambda: {}, methods=["GET", "PUT"])
    app.include_router(extra)
    assert served_routes(app) - set(EXPECTED) == {
        ("GET", "/v1/extra/thing"),
        ("PUT", "/v1/extra/thing"),
    }


ROUTES = sorted(EXPECTED)


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_each_endpoint_answers_only_its_roles(
    client: TestClient, credentials: dict[str, dict[str, str]], method: str, path: str
) -> None:
    # Every role on one ledger (a fresh ledger per call would cost a second each).
    access = EXPECTED[method, path]
    wrong: dict[str, str] = {}
    for role in ROLES:
        response = client.request(
            method,
            access.url or path,
            json=access.json,
            content=access.content,
            headers=credentials[role],
        )
        status = response.status_code
        if role in access.allowed:
            if status in (401, 403) or status >= 500:
                wrong[role] = f"refused or failed: {status} {response.text[:200]}"
            continue
        # No credential of the kind the endpoint asks for is 401; another role's key is 403.
        wrong_kind = role == "anonymous" or access.allowed == CONSUMER or role == "consumer"
        expected = 401 if wrong_kind else 403
        if status != expected or response.headers["content-type"] != "application/problem+json":
            wrong[role] = f"expected a {expected} problem, got {status} {response.text[:200]}"
    assert wrong == {}


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
