"""Batch checks, CSV scrubs and idempotent recording over HTTP."""

from __future__ import annotations

import csv
import io

from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient

from ledger.db.engine import transaction
from ledger.runtime import Ledger
from ledger.usage.log import size
from tests.helpers import PHONE, grant, sms_terms

CHECK = {"contact": PHONE, "channel": "sms", "record": True}


def test_a_retried_record_with_the_same_key_records_once(
    client: TestClient,
    ledger: Ledger,
    company_auth: dict[str, str],
    consumer: LocalAccount,
    linked: str,
) -> None:
    grant(ledger, consumer, sms_terms())
    headers = {**company_auth, "Idempotency-Key": "order-42"}
    first = client.post("/v1/checks", json=CHECK, headers=headers)
    retry = client.post("/v1/checks", json=CHECK, headers=headers)
    assert first.json() == retry.json()
    assert retry.headers["Idempotent-Replayed"] == "true"
    with transaction(ledger.engine) as s:
        assert size(s) == 1
    other_body = client.post("/v1/checks", json={**CHECK, "channel": "call"}, headers=headers)
    assert other_body.status_code == 409
    assert (
        client.post(
            "/v1/checks", json=CHECK, headers={**company_auth, "Idempotency-Key": "order-43"}
        ).json()["receipt"]["seq"]
        == 2
    )


def test_a_rejected_request_does_not_spend_its_key(
    client: TestClient, company_auth: dict[str, str]
) -> None:
    headers = {**company_auth, "Idempotency-Key": "k1"}
    assert (
        client.post("/v1/checks", json={**CHECK, "contact": "+33 6"}, headers=headers).status_code
        == 422
    )
    assert (
        client.post("/v1/checks", json={**CHECK, "contact": "+33 6"}, headers=headers).status_code
        == 422
    )


def test_a_batch_answers_each_item_even_the_invalid_ones(
    client: TestClient,
    ledger: Ledger,
    company_auth: dict[str, str],
    consumer: LocalAccount,
    linked: str,
) -> None:
    grant(ledger, consumer, sms_terms(max_contacts=1))
    items = [
        {"contact": PHONE, "channel": "sms"},
        {"contact": "not a number", "channel": "sms"},
        {"contact": "+1 202 555 0143", "channel": "call"},
    ]
    body = client.post(
        "/v1/checks/batch", json={"items": items, "record": True}, headers=company_auth
    ).json()
    results = body["results"]
    assert [r["index"] for r in results] == [0, 1, 2]
    assert results[0]["result"]["allowed"] is True
    assert results[1]["error"] == "invalid_contact" and results[1]["result"] is None
    assert results[2]["result"]["reasons"][-1]["code"] == "opposition_list_unavailable"


def test_a_batch_over_ten_thousand_items_is_refused(
    client: TestClient, company_auth: dict[str, str]
) -> None:
    items = [{"contact": PHONE, "channel": "sms"}] * 10_001
    response = client.post("/v1/checks/batch", json={"items": items}, headers=company_auth)
    assert response.status_code in (413, 422)


def test_a_csv_scrub_streams_each_row_back_with_its_answer(
    client: TestClient,
    ledger: Ledger,
    company_auth: dict[str, str],
    consumer: LocalAccount,
    linked: str,
) -> None:
    grant(ledger, consumer, sms_terms())
    upload = "name,phone\nAlice,+33 6 12 34 56 78\nBob,0612345679\nCarol,nope\n"
    response = client.post(
        "/v1/scrub?channel=sms&column=1&header=true",
        content=upload.encode(),
        headers={**company_auth, "Content-Type": "text/csv"},
    )
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["name", "phone", "allowed", "reasons", "normalized"]
    assert rows[1] == ["Alice", "+33 6 12 34 56 78", "true", "grant_allows", "+33612345678"]
    assert rows[2][:4] == ["Bob", "0612345679", "false", "contact_not_linked consent_required"]
    assert rows[3] == ["Carol", "nope", "false", "invalid_contact", ""]
    with transaction(ledger.engine) as s:
        assert size(s) == 0  # a scrub records nothing
