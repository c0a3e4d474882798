"""Check and check-and-record against the in-process chain and a SQLite log."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from ledger.audit.verify import verify_chain
from ledger.consent import messages
from ledger.db.engine import transaction
from ledger.domain.channels import Channel
from ledger.domain.errors import ChainUnavailable, InvalidContact
from ledger.lists.cache import OppositionCache
from ledger.lists.formats import ImportMode, ListFormat
from ledger.lists.importer import ListImport, import_lines
from ledger.runtime import Ledger
from ledger.usage import log as usage_log
from ledger.usage.entries import UsageEntry
from tests.helpers import PHONE, grant, link, relay, sms_terms, soon


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
    message = messages.revoke_grant(
        consumer.address, company_id=1, channel=1, version=version, epoch=0, deadline=soon()
    )
    relay(ledger, consumer, message)
    refused = check(ledger)
    assert not refused.decision.allowed
    assert refused.decision.codes == ["revoked"]


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
    # The index cannot tell how far behind it is without the node: stale, so refused.
    assert result.decision.codes == ["ledger_stale"]
    assert result.receipt is not None  # the refused attempt is still logged


def test_concurrent_check_and_record_allows_exactly_the_quota(
    ledger: Ledger, company: int, consumer: LocalAccount, linked: str
) -> None:
    grant(ledger, consumer, sms_terms(max_contacts=4))
    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(lambda _: check(ledger), range(200)))
    assert sum(r.decision.allowed for r in results) == 4
    with transaction(ledger.engine) as s:
        assert usage_log.size(s) == 200
        assert verify_chain(s) is None


# ----- opposition lists in the decision -----

US_LISTED, US_FREE = "+1 202 456 1111", "+1 212 555 0100"


def noon_in_new_york() -> int:
    """Yesterday 12:00 in New York: inside the US calling hours, and in the past."""
    local = datetime.now(ZoneInfo("America/New_York")) - timedelta(days=1)
    return int(local.replace(hour=12, minute=0, second=0, microsecond=0).timestamp())


def import_us_list(ledger: Ledger, fetched_at: int, *lines: str) -> str:
    report = import_lines(
        lines or ("202,4561111",),
        ListImport(region="US", fmt=ListFormat.DNC),
        cache=ledger.lists,
        source="ftc-test",
        fetched_at=fetched_at,
    )
    return report.snapshot.version


def logged_list_version(ledger: Ledger, seq: int) -> str | None:
    with transaction(ledger.engine) as s:
        entry = s.get(UsageEntry, seq)
        assert entry is not None
        return entry.list_version


def test_an_opt_out_number_is_checked_against_the_list_and_the_version_logged(
    ledger: Ledger, company: int
) -> None:
    noon = noon_in_new_york()
    version = import_us_list(ledger, noon - 86400)
    free = ledger.checker.check(
        company_id=1, contact=US_FREE, channel=Channel.CALL, record=True, now=noon
    )
    listed = ledger.checker.check(
        company_id=1, contact=US_LISTED, channel=Channel.CALL, record=True, now=noon
    )
    assert (free.decision.allowed, free.decision.codes) == (True, ["not_on_opposition_list"])
    assert listed.decision.codes == ["contact_not_linked", "on_opposition_list"]
    assert free.receipt is not None and listed.receipt is not None
    assert logged_list_version(ledger, free.receipt.seq) == version
    assert logged_list_version(ledger, listed.receipt.seq) == version
    with transaction(ledger.engine) as s:
        assert verify_chain(s) is None


def test_a_stale_list_refuses_its_region(ledger: Ledger, company: int) -> None:
    noon = noon_in_new_york()
    version = import_us_list(ledger, noon - 32 * 86400)
    result = ledger.checker.check(
        company_id=1, contact=US_FREE, channel=Channel.CALL, record=True, now=noon
    )
    assert result.decision.codes == ["contact_not_linked", "opposition_list_stale"]
    assert result.receipt is not None
    assert logged_list_version(ledger, result.receipt.seq) == version


def test_a_signed_grant_overrides_the_national_list(
    ledger: Ledger, company: int, consumer: LocalAccount
) -> None:
    noon = noon_in_new_york()
    import_us_list(ledger, noon - 86400)
    link(ledger, consumer.address, US_LISTED)
    grant(ledger, consumer, sms_terms())
    result = check(ledger, now=noon, contact=US_LISTED)
    assert (result.decision.allowed, result.decision.codes) == (True, ["grant_allows"])
    assert result.receipt is not None
    assert logged_list_version(ledger, result.receipt.seq) is None  # the list was not read


def test_the_companys_own_do_not_call_list_overrides_a_grant(
    ledger: Ledger, company: int, consumer: LocalAccount, linked: str
) -> None:
    grant(ledger, consumer, sms_terms())
    crm = ListImport(region="FR", fmt=ListFormat.LINES, company_id=1)
    report = import_lines([linked], crm, cache=ledger.lists, source="crm", fetched_at=1)
    result = check(ledger)
    assert (result.decision.allowed, result.decision.codes) == (False, ["company_do_not_call"])
    assert result.receipt is not None
    assert logged_list_version(ledger, result.receipt.seq) == report.snapshot.version
    import_lines(
        [linked],
        ListImport(region="FR", fmt=ListFormat.LINES, company_id=1, mode=ImportMode.REMOVE),
        cache=ledger.lists,
        source="crm: consented again",
        fetched_at=2,
    )
    assert check(ledger).decision.allowed


def test_an_unreadable_list_is_a_refusal(ledger: Ledger, company: int) -> None:
    noon = noon_in_new_york()
    version = import_us_list(ledger, noon - 86400)
    (ledger.settings.data_dir / "lists" / f"{version}.npy").unlink()
    # As in a process that has not mapped the file yet.
    ledger.checker.lists = OppositionCache.from_settings(ledger.settings, ledger.engine)
    result = ledger.checker.check(
        company_id=1, contact=US_FREE, channel=Channel.CALL, record=True, now=noon
    )
    assert result.decision.codes == ["opposition_list_unavailable"]
    assert result.receipt is not None
