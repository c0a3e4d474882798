"""Check and check-and-record against the in-process chain and a SQLite log."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from ledger import messages, usage_log
from ledger.errors import ChainUnavailable, InvalidContact
from ledger.grants import Channel
from ledger.runtime import Ledger
from ledger.storage import transaction
from tests.helpers import PHONE, grant, link, sms_terms


def check(ledger: Ledger, record: bool = True, now: int | None = None, contact: str = PHONE):  # type: ignore[no-untyped-def]
    return ledger.checker.check(
        company_id=1, contact=contact, channel=Channel.SMS, record=record, now=now
    )


def test_four_sms_then_the_fifth_is_refused_naming_the_quota(
    ledger: Ledger, company: int, consumer: LocalAccount, linked: str
) -> None:
    grant(ledger, consumer, sms_terms(max_contacts=4))
    results = [check(ledger) for _ in range(5)]
    assert [r.decision.allowed for r in results] == [True, True, True, True, False]
    assert [r.decision.remaining for r in results[:4]] == [3, 2, 1, 0]
    assert results[4].decision.codes == ["quota_exhausted"]
    assert "quota of 4 sms" in results[4].decision.reasons[0].message
    assert [r.receipt.seq for r in results if r.receipt] == [1, 2, 3, 4, 5]
    assert results[0].decision.consumer == consumer.address


def test_a_check_without_record_consumes_nothing(
    ledger: Ledger, company: int, consumer: LocalAccount, linked: str
) -> None:
    grant(ledger, consumer, sms_terms(max_contacts=1))
    for _ in range(3):
        result = check(ledger, record=False)
        assert result.decision.allowed and result.receipt is None
    with transaction(ledger.engine) as s:
        assert usage_log.size(s) == 0


def test_revocation_takes_effect_from_its_block(
    ledger: Ledger, company: int, consumer: LocalAccount, linked: str
) -> None:
    grant(ledger, consumer, sms_terms())
    assert check(ledger).decision.allowed
    version = ledger.chain.grant_version(consumer.address, 1, Channel.SMS)
    doc = messages.revoke_grant(
        ledger.chain.domain,
        consumer=consumer.address,
        company_id=1,
        channel=1,
        version=version,
        deadline=2**40,
    )
    ledger.relayer.revoke_grant(
        consumer.address,
        company_id=1,
        channel=1,
        version=version,
        deadline=2**40,
        signature=messages.sign(doc, consumer.key),
    )
    refused = check(ledger)
    assert not refused.decision.allowed
    assert refused.decision.codes == ["no_grant", "consent_required"]


def test_a_suspended_company_is_refused_despite_grants(
    ledger: Ledger, company: int, consumer: LocalAccount, linked: str
) -> None:
    grant(ledger, consumer, sms_terms())
    ledger.relayer.suspend_company(1)
    assert check(ledger).decision.codes == ["company_suspended"]
    ledger.relayer.reinstate_company(1)
    assert check(ledger).decision.allowed


def test_a_reassigned_number_stops_carrying_the_old_holders_grant(
    ledger: Ledger, company: int, consumer: LocalAccount, linked: str
) -> None:
    grant(ledger, consumer, sms_terms())
    assert check(ledger, record=False).decision.allowed
    newcomer = Account.create()
    link(ledger, newcomer.address, PHONE)
    decision = check(ledger, record=False).decision
    assert (decision.allowed, decision.consumer) == (False, newcomer.address)


def test_an_invalid_number_raises_and_records_nothing(ledger: Ledger, company: int) -> None:
    with pytest.raises(InvalidContact):
        check(ledger, contact="+33 12")
    with pytest.raises(InvalidContact):
        check(ledger, contact="someone@example.org")  # an address cannot take an SMS
    with transaction(ledger.engine) as s:
        assert usage_log.size(s) == 0


def test_an_unreachable_node_is_a_refusal_not_an_allow(
    ledger: Ledger,
    company: int,
    consumer: LocalAccount,
    linked: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    grant(ledger, consumer, sms_terms())

    def down() -> None:
        raise ChainUnavailable("connection refused")

    monkeypatch.setattr(ledger.chain, "head", down)
    result = check(ledger)
    assert not result.decision.allowed
    assert result.decision.codes == ["ledger_unavailable"]
    assert result.receipt is not None  # the refused attempt is still logged


def test_concurrent_check_and_record_allows_exactly_the_quota(
    ledger: Ledger, company: int, consumer: LocalAccount, linked: str
) -> None:
    grant(ledger, consumer, sms_terms(max_contacts=4))
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda _: check(ledger), range(50)))
    assert sum(r.decision.allowed for r in results) == 4
    with transaction(ledger.engine) as s:
        assert usage_log.size(s) == 50
        assert usage_log.verify_chain(s) is None
