"""Consumer-wide messages, contact linking, the consumer's own view, company events, lists."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta

from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient

from ledger.consent import messages, signin
from ledger.runtime import Ledger
from ledger.services import apikeys
from ledger.services.apikeys import Role
from ledger.services.linking import recent_outbox
from tests.helpers import NOTICE, PHONE, grant, relay, sign, sms_terms, soon

CHECK = {"contact": PHONE, "channel": "sms", "record": True}


def consumer_auth(ledger: Ledger, account: LocalAccount) -> dict[str, str]:
    token = signin.issue_token(
        account.address,
        datetime.now(UTC) + timedelta(minutes=5),
        ledger.settings.session_secret_bytes,
    )
    return {"Authorization": f"Bearer {token}"}


def nonce(client: TestClient, account: LocalAccount) -> int:
    return int(client.get(f"/v1/consumers/{account.address}/nonce").json()["nonce"])


def test_revoke_all_stops_every_grant_at_once(
    client: TestClient,
    ledger: Ledger,
    company_auth: dict[str, str],
    consumer: LocalAccount,
    linked: str,
) -> None:
    grant(ledger, consumer, sms_terms())
    assert client.post("/v1/checks", json=CHECK, headers=company_auth).json()["allowed"]
    n = nonce(client, consumer)
    deadline = soon()
    doc = messages.revoke_all(consumer.address, nonce=n, epoch=0, deadline=deadline).typed_data(
        ledger.chain.domain
    )
    body = {"consumer": consumer.address, "nonce": n, "epoch": 0, "deadline": deadline}
    signed = {**body, "signature": "0x" + messages.sign(doc, consumer.key).hex()}
    assert client.post("/v1/revocations/all", json=signed).status_code == 201
    assert (
        client.post("/v1/checks", json=CHECK, headers=company_auth).json()["reasons"][0]["code"]
        == "revoked"
    )
    replay = client.post("/v1/revocations/all", json=signed)
    assert replay.status_code == 409 and replay.json()["type"].endswith("stale_epoch")


def test_a_grant_signed_before_a_revoke_all_cannot_be_relayed_after_it(
    client: TestClient,
    ledger: Ledger,
    company_auth: dict[str, str],
    consumer: LocalAccount,
    linked: str,
) -> None:
    """Withdrawing consent voids every signature still in flight (the epoch is signed)."""
    draft = {
        "consumer": consumer.address,
        "company_id": 1,
        "channel": "sms",
        "max_contacts": 4,
        "period": 86400,
        "notice_hash": NOTICE,
        "deadline": soon(),
    }
    prepared = client.post("/v1/grants/typed-data", json=draft).json()
    assert prepared["epoch"] == 0 and prepared["typed_data"]["message"]["epoch"] == 0
    held = {  # signed, and kept by someone instead of relayed
        **draft,
        "version": prepared["version"],
        "epoch": prepared["epoch"],
        "signature": "0x" + messages.sign(prepared["typed_data"], consumer.key).hex(),
    }
    n = nonce(client, consumer)
    revoke_all = messages.revoke_all(consumer.address, nonce=n, epoch=0, deadline=soon())
    body = {"consumer": consumer.address, "nonce": n, "epoch": 0, "deadline": revoke_all.deadline}
    signed = {**body, "signature": "0x" + sign(ledger, consumer, revoke_all).hex()}
    assert client.post("/v1/revocations/all", json=signed).status_code == 201
    assert client.get(f"/v1/consumers/{consumer.address}/nonce").json()["epoch"] == 1

    before = ledger.chain.w3.eth.get_transaction_count(ledger.chain.operator.address)
    late = client.post("/v1/grants", json=held)
    assert late.status_code == 409 and late.json()["type"].endswith("stale_epoch")
    assert ledger.chain.w3.eth.get_transaction_count(ledger.chain.operator.address) == before
    check = client.post("/v1/checks", json=CHECK, headers=company_auth).json()
    assert not check["allowed"]


def test_a_signature_that_would_live_longer_than_the_cap_is_refused(
    client: TestClient, ledger: Ledger, company: int, consumer: LocalAccount
) -> None:
    cap = ledger.settings.signature_max_ttl
    draft = {
        "consumer": consumer.address,
        "company_id": 1,
        "channel": "sms",
        "max_contacts": 4,
        "period": 86400,
        "notice_hash": NOTICE,
        "deadline": int(time.time()) + cap + 600,
    }
    refused = client.post("/v1/grants/typed-data", json=draft)
    assert refused.status_code == 422 and refused.json()["type"].endswith("deadline_too_far")
    message = messages.revoke_all(consumer.address, nonce=0, epoch=0, deadline=draft["deadline"])
    body = {"consumer": consumer.address, "nonce": 0, "epoch": 0, "deadline": message.deadline}
    signed = {**body, "signature": "0x" + sign(ledger, consumer, message).hex()}
    relayed = client.post("/v1/revocations/all", json=signed)
    assert relayed.status_code == 422 and relayed.json()["type"].endswith("deadline_too_far")


def test_a_global_cap_limits_contacts_across_companies(
    client: TestClient,
    ledger: Ledger,
    company_auth: dict[str, str],
    consumer: LocalAccount,
    linked: str,
) -> None:
    grant(ledger, consumer, sms_terms(max_contacts=10))
    n = nonce(client, consumer)
    doc = messages.set_global_cap(
        consumer.address, max_contacts=2, period=86400, nonce=n, epoch=0, deadline=soon()
    ).typed_data(ledger.chain.domain)
    body = {
        "consumer": consumer.address,
        "max_contacts": 2,
        "period": 86400,
        "nonce": n,
        "epoch": 0,
        "deadline": doc["message"]["deadline"],
    }
    response = client.post(
        "/v1/global-caps", json={**body, "signature": "0x" + messages.sign(doc, consumer.key).hex()}
    )
    assert response.status_code == 201
    answers = [client.post("/v1/checks", json=CHECK, headers=company_auth).json() for _ in range(3)]
    assert [a["allowed"] for a in answers] == [True, True, False]
    assert answers[2]["reasons"][0]["code"] == "global_cap_reached"


def test_a_consumer_links_a_number_with_a_one_time_code_then_unlinks_it(
    client: TestClient, ledger: Ledger, company_auth: dict[str, str], consumer: LocalAccount
) -> None:
    auth = consumer_auth(ledger, consumer)
    started = client.post("/v1/links/start", json={"contact": PHONE}, headers=auth)
    assert started.status_code == 201 and "612345678" not in started.text  # destination masked
    code = re.search(r"\b(\d{6})\b", recent_outbox(ledger.engine, limit=1)[0].text)
    assert code is not None
    wrong = client.post("/v1/links/verify", json={"contact": PHONE, "code": "000000"}, headers=auth)
    assert wrong.status_code in (401, 422)
    verified = client.post(
        "/v1/links/verify", json={"contact": PHONE, "code": code.group(1)}, headers=auth
    )
    assert verified.status_code == 201, verified.text
    commitment = verified.json()["commitment"]
    assert client.get("/v1/me/links", headers=auth).json()[0]["commitment"] == commitment

    grant(ledger, consumer, sms_terms())
    assert (
        client.post("/v1/checks", json=CHECK, headers=company_auth).json()["consumer"]
        == consumer.address
    )

    n = nonce(client, consumer)
    doc = messages.unlink(
        consumer.address,
        commitment=bytes.fromhex(commitment[2:]),
        nonce=n,
        epoch=0,
        deadline=soon(),
    ).typed_data(ledger.chain.domain)
    unlink = {
        "consumer": consumer.address,
        "commitment": commitment,
        "nonce": n,
        "epoch": 0,
        "deadline": doc["message"]["deadline"],
    }
    response = client.post(
        "/v1/links/unlink",
        json={**unlink, "signature": "0x" + messages.sign(doc, consumer.key).hex()},
    )
    assert response.status_code == 201
    assert (
        client.post("/v1/checks", json=CHECK, headers=company_auth).json()["reasons"][0]["code"]
        == "contact_not_linked"
    )


def test_my_grants_show_the_quota_left(
    client: TestClient,
    ledger: Ledger,
    company_auth: dict[str, str],
    consumer: LocalAccount,
    linked: str,
) -> None:
    grant(ledger, consumer, sms_terms(max_contacts=3))
    client.post("/v1/checks", json=CHECK, headers=company_auth)
    mine = client.get("/v1/me/grants", headers=consumer_auth(ledger, consumer)).json()
    assert [
        (g["company_id"], g["channel"], g["active"], g["used_in_window"], g["remaining"])
        for g in mine
    ] == [(1, "sms", True, 1, 2)]


def test_a_company_is_told_of_grant_changes_that_concern_it(
    client: TestClient,
    ledger: Ledger,
    company_auth: dict[str, str],
    consumer: LocalAccount,
    linked: str,
) -> None:
    ledger.relayer.register_company(2, "Other", ledger.chain.operator.address)
    grant(ledger, consumer, sms_terms())
    grant(ledger, Account.create(), sms_terms(company_id=2))  # not company 1's business
    version = ledger.chain.grant_version(consumer.address, 1, 1)
    message = messages.revoke_grant(
        consumer.address, company_id=1, channel=1, version=version, epoch=0, deadline=soon()
    )
    relay(ledger, consumer, message)
    response = client.get("/v1/events?follow=false", headers=company_auth)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [
        json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")
    ]
    assert [(e["type"], e["consumer"], e["version"]) for e in events] == [
        ("grant_set", consumer.address, 1),
        ("grant_revoked", consumer.address, 2),
    ]
    resumed = client.get(f"/v1/events?follow=false&after={events[0]['id']}", headers=company_auth)
    assert resumed.text.count("event: ") == 1


def test_an_operator_imports_a_list_and_opt_out_numbers_follow_it(
    client: TestClient, ledger: Ledger, company_auth: dict[str, str]
) -> None:
    token, _ = apikeys.create_key(ledger.engine, role=Role.OPERATOR)
    operator = {"Authorization": f"Bearer {token}", "Content-Type": "text/plain"}
    listed, free = "+1 202 555 0143", "+1 202 555 0144"
    upload = f"{listed}\nnot a number\n"
    response = client.post(
        f"/v1/lists/us?fetched_at={int(time.time())}", content=upload.encode(), headers=operator
    )
    assert response.status_code == 201, response.text
    assert response.json()["snapshot"]["count"] == 1 and response.json()["invalid_lines"] == [2]
    status = client.get("/v1/lists", headers=operator).json()
    assert [(s["region"], s["count"]) for s in status] == [("US", 1)]

    def first_reason(contact: str) -> str:
        body = client.post(
            "/v1/checks", json={"contact": contact, "channel": "call"}, headers=company_auth
        ).json()
        return str(body["reasons"][-1]["code"])

    lists = client.get("/v1/health").json()["lists"]
    assert [(h["region"], h["stale"]) for h in lists] == [("US", False)]
    assert first_reason(listed) == "on_opposition_list"
    assert first_reason(free) in ("not_on_opposition_list", "outside_statutory_hours")
