"""The decision in law, over HTTP: revocation binds in every regime, SMS needs consent, the
French décret limits every call (LAW.md; the table of vectors is tests/law)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime

import pytest
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient

from ledger.consent import wallet
from ledger.runtime import Ledger
from ledger.services import apikeys
from ledger.services.apikeys import Role
from tests.helpers import NOTICE, PHONE, link

US_PHONE, US_OTHER = "+1 202 555 0144", "+1 202 555 0188"
GB_PHONE, GB_OTHER = "+44 7400 123456", "+44 7400 123457"
FR_OTHER = "+33 6 98 76 54 32"
# Planned moments inside every statutory window of the region (weekdays, late morning).
FR_BEFORE_SWITCH = "2026-07-03T11:00:00+02:00"  # a Friday under Bloctel (opt-out)
FR_AFTER_SWITCH = "2026-12-02T11:00:00+01:00"  # a Wednesday under L.223-1 (opt-in)
US_NOON = "2026-12-02T12:00:00-05:00"
GB_NOON = "2026-12-02T12:00:00+00:00"


def _ts(moment: str) -> int:
    return int(datetime.fromisoformat(moment).timestamp())


@pytest.fixture
def lists(client: TestClient, ledger: Ledger) -> None:
    """Fresh national lists (the numbers above absent) for the planned moments."""
    token, _ = apikeys.create_key(ledger.engine, role=Role.OPERATOR)
    operator = {"Authorization": f"Bearer {token}", "Content-Type": "text/plain"}
    listed = {"us": "+1 202 555 0100", "gb": "+44 7400 000111", "fr": "+33 6 11 11 11 11"}
    for region, moment in (("us", US_NOON), ("gb", GB_NOON), ("fr", FR_BEFORE_SWITCH)):
        fetched = min(_ts(moment) - 86400, int(time.time()))  # never in the future
        response = client.post(
            f"/v1/lists/{region}?fetched_at={fetched}",
            content=listed[region].encode(),
            headers=operator,
        )
        assert response.status_code == 201, response.text


def ask(
    client: TestClient, auth: dict[str, str], contact: str, channel: str, at: str, **extra: object
) -> dict[str, object]:
    body = {"contact": contact, "channel": channel, "at": at, **extra}
    response = client.post("/v1/checks", json=body, headers=auth)
    assert response.status_code == 200, response.text
    answer: dict[str, object] = response.json()
    return answer


def codes(answer: dict[str, object]) -> list[str]:
    return [r["code"] for r in answer["reasons"]]  # type: ignore[attr-defined, index]


def rules_named(answer: dict[str, object]) -> list[str | None]:
    return [r["rule"] for r in answer["reasons"]]  # type: ignore[attr-defined, index]


def grant_calls(client: TestClient, consumer: LocalAccount, max_contacts: int = 10) -> None:
    wallet.Wallet("", consumer.key.hex(), client=client).grant(
        company_id=1,
        channel="call",
        max_contacts=max_contacts,
        period=365 * 86400,
        notice_hash=NOTICE,
    )


@pytest.mark.parametrize(
    ("contact", "other", "moment", "unlinked_basis"),
    [
        (US_PHONE, US_OTHER, US_NOON, "opposition_list"),
        (GB_PHONE, GB_OTHER, GB_NOON, "opposition_list"),
        (PHONE, FR_OTHER, FR_BEFORE_SWITCH, "opposition_list"),
        (PHONE, FR_OTHER, FR_AFTER_SWITCH, None),
    ],
    ids=["US", "GB", "FR-bloctel", "FR-opt-in"],
)
def test_a_revocation_refuses_that_company_in_every_regime(
    client: TestClient,
    ledger: Ledger,
    company_auth: dict[str, str],
    consumer: LocalAccount,
    lists: None,
    contact: str,
    other: str,
    moment: str,
    unlinked_basis: str | None,
) -> None:
    link(ledger, consumer.address, contact)
    grant_calls(client, consumer)
    granted = ask(client, company_auth, contact, "call", moment)
    assert granted["allowed"] and granted["basis"] == "consent", granted
    wallet.Wallet("", consumer.key.hex(), client=client).revoke(company_id=1, channel="call")

    revoked = ask(client, company_auth, contact, "call", moment)
    assert not revoked["allowed"]
    assert codes(revoked) == ["revoked"] and rules_named(revoked) == ["ANY-revocation"]
    # The same question about a number nobody revoked: in opt-out regimes the fresh list
    # would allow it, so the refusal above is the revocation's doing.
    unlinked = ask(client, company_auth, other, "call", moment)
    assert unlinked["basis"] == unlinked_basis
    assert unlinked["allowed"] is (unlinked_basis is not None)


@pytest.mark.parametrize(
    ("contact", "moment", "rule"),
    [
        (FR_OTHER, FR_AFTER_SWITCH, "FR-L34-5-consent"),
        (FR_OTHER, FR_BEFORE_SWITCH, "FR-L34-5-consent"),
        (GB_OTHER, GB_NOON, "GB-PECR-22-consent"),
        (US_OTHER, US_NOON, "US-64.1200-a2-consent"),
    ],
)
def test_an_sms_without_consent_is_refused_even_where_calls_are_opt_out(
    client: TestClient,
    company_auth: dict[str, str],
    lists: None,
    contact: str,
    moment: str,
    rule: str,
) -> None:
    answer = ask(client, company_auth, contact, "sms", moment)
    assert not answer["allowed"]
    assert codes(answer) == ["contact_not_linked", "consent_required"]
    assert answer["rules"] == [rule]


@pytest.fixture
def paris_clock(ledger: Ledger) -> Iterator[list[int]]:
    """The server's clock pinned to Tuesday 2026-12-01 11:00 Paris; tests move it."""
    now = [_ts("2026-12-01T11:00:00+01:00")]
    ledger.checker.clock = lambda: now[0]
    yield now


def test_a_fifth_call_in_thirty_days_is_refused_by_the_decret(
    client: TestClient,
    ledger: Ledger,
    company_auth: dict[str, str],
    consumer: LocalAccount,
    linked: str,
    paris_clock: list[int],
) -> None:
    grant_calls(client, consumer, max_contacts=10)  # the grant's own quota is not the limit
    answers = []
    for day in (0, 1, 2, 3, 6):  # Tuesday to Friday, then the next Monday
        paris_clock[0] = _ts("2026-12-01T11:00:00+01:00") + day * 86400
        check = {"contact": linked, "channel": "call", "record": True}
        answers.append(client.post("/v1/checks", json=check, headers=company_auth).json())
    assert [a["allowed"] for a in answers] == [True, True, True, True, False]
    assert codes(answers[4]) == ["statutory_frequency"]
    assert rules_named(answers[4]) == ["FR-D223-9-frequency"]
    assert "FR-D223-9-frequency" in answers[4]["rules"]
    assert answers[3]["remaining"] == 6  # the grant still had room: the décret refused


def test_a_call_on_14_july_is_refused_and_the_day_before_allowed(
    client: TestClient, company_auth: dict[str, str], consumer: LocalAccount, linked: str
) -> None:
    grant_calls(client, consumer)
    holiday = ask(client, company_auth, linked, "call", "2027-07-14T11:00:00+02:00")
    assert not holiday["allowed"]
    assert codes(holiday) == ["public_holiday"] and rules_named(holiday) == ["FR-D223-9-hours"]
    assert ask(client, company_auth, linked, "call", "2027-07-13T11:00:00+02:00")["allowed"]


def test_an_ongoing_contract_is_a_basis_exempt_from_the_decret_hours(
    client: TestClient, company_auth: dict[str, str], linked: str
) -> None:
    contract = {
        "kind": "ongoing_contract",
        "contract_reference": "EDF-42",
        "subject": "electricity supply",
    }
    evening = "2026-12-02T21:30:00+01:00"
    assert not ask(client, company_auth, linked, "call", evening)["allowed"]
    answer = ask(client, company_auth, linked, "call", evening, basis=contract)
    assert answer["allowed"] and answer["basis"] == "ongoing_contract"
    assert answer["rules"] == ["FR-L223-1-consent"]  # the décret's limits were not applied
    refused = ask(client, company_auth, linked, "sms", evening, basis=contract)
    assert codes(refused) == ["basis_not_admitted"]


def test_a_planned_check_cannot_record(client: TestClient, company_auth: dict[str, str]) -> None:
    body = {"contact": PHONE, "channel": "call", "record": True, "at": FR_AFTER_SWITCH}
    response = client.post("/v1/checks", json=body, headers=company_auth)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
