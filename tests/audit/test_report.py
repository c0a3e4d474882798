"""The audit report: its figures on a small real log, its words, and the page in Chromium."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount

from ledger.audit.replay import FindingKind
from ledger.audit.report import (
    Anchoring,
    AuditStatus,
    ChannelQuota,
    DayCount,
    Period,
    ReasonCount,
    Report,
    Totals,
    Verification,
    Violation,
    Violations,
    build_report,
)
from ledger.audit.report_audits import audited_report
from ledger.audit.report_html import render_html, summarise
from ledger.db.engine import transaction
from ledger.domain.channels import Channel
from ledger.runtime import Ledger
from ledger.usage import log as usage_log
from ledger.usage.entries import Outcome, UsageEntryBase
from tests.browser import open_page
from tests.helpers import PHONE, grant, sms_terms

LOG_ID = 1
DAY1 = int(datetime(2026, 11, 24, 10, tzinfo=UTC).timestamp())  # a Tuesday, 11:00 in Paris
DAY2 = int(datetime(2026, 11, 25, 10, tzinfo=UTC).timestamp())
BEFORE = int(datetime(2026, 11, 2, 10, tzinfo=UTC).timestamp())  # outside the period
NOW = int(datetime(2026, 11, 26, 12, tzinfo=UTC).timestamp())
PERIOD = Period.of_dates(date(2026, 11, 20), date(2026, 11, 26))


def ask(ledger: Ledger, channel: Channel, at: int, company_id: int = 1, contact: str = PHONE):  # type: ignore[no-untyped-def]
    return ledger.checker.check(
        company_id=company_id, contact=contact, channel=channel, record=True, now=at
    )


@pytest.fixture
def small_log(ledger: Ledger, company: int, consumer: LocalAccount, linked: str) -> Ledger:
    """A log of real checks: 4 SMS allowed on a quota of 4, then refusals of three kinds.

    Company 1 (Acme SMS): day 1, 2 SMS allowed; day 2, 2 SMS allowed, the 5th SMS refused
    (quota), a call refused (no grant), an SMS to an unlinked number refused; an outcome. One
    SMS allowed weeks before the period. Company 2: one SMS refused (no grant) on day 2.
    """
    ledger.relayer.register_company(2, "Bravo Calls", ledger.chain.operator.address)
    grant(ledger, consumer, sms_terms(max_contacts=4))  # per year
    first = ask(ledger, Channel.SMS, BEFORE)
    assert first.decision.allowed
    # The contact before the period counts in the grant's window: 3 more fit in it.
    answers = [ask(ledger, Channel.SMS, at) for at in (DAY1, DAY1 + 60, DAY2)]
    assert [a.decision.codes for a in answers] == [["grant_allows"]] * 3
    assert ask(ledger, Channel.SMS, DAY2 + 60).decision.codes == ["quota_exhausted"]
    assert ask(ledger, Channel.CALL, DAY2 + 120).decision.codes == ["no_grant", "consent_required"]
    unlinked = ask(ledger, Channel.SMS, DAY2 + 180, contact="+33 6 99 88 77 66")
    assert unlinked.decision.codes == ["contact_not_linked", "consent_required"]
    assert ask(ledger, Channel.SMS, DAY2 + 240, company_id=2).decision.codes == [
        "no_grant",
        "consent_required",
    ]
    receipt = answers[0].receipt
    assert receipt is not None
    with transaction(ledger.engine) as session:
        usage_log.record_outcome(
            session, company_id=1, seq=receipt.seq, outcome=Outcome.ANSWERED, at=DAY1 + 600
        )
    ledger.indexer.sync()
    return ledger


def report_of(ledger: Ledger, company_id: int | None, **inputs: object) -> Report:
    with transaction(ledger.engine) as session:
        return build_report(
            session,
            period=PERIOD,
            company_id=company_id,
            log_id=LOG_ID,
            now=NOW,
            **inputs,  # type: ignore[arg-type]
        )


def test_the_report_counts_one_companys_decisions_per_day_channel_and_reason(
    small_log: Ledger,
) -> None:
    report = report_of(small_log, 1)
    assert (report.company_id, report.company_name) == (1, "Acme SMS")
    assert report.totals == Totals(entries=6, allowed=3, refused=3, outcomes=1)
    assert report.days == [
        DayCount(day=date(2026, 11, 24), channel="sms", allowed=2, refused=0),
        DayCount(day=date(2026, 11, 25), channel="call", allowed=0, refused=1),
        DayCount(day=date(2026, 11, 25), channel="sms", allowed=1, refused=2),
    ]
    assert report.refusals == [
        ReasonCount(code="consent_required", count=2),
        ReasonCount(code="contact_not_linked", count=1),
        ReasonCount(code="no_grant", count=1),
        ReasonCount(code="quota_exhausted", count=1),
    ]
    # The contact before the period is not counted, so the grant looks 3/4 used in it.
    assert report.quotas == [
        ChannelQuota(
            channel="sms",
            grants=1,
            allowance=4,
            contacts=3,
            under_grant=3,
            busiest_used=3,
            busiest_quota=4,
            at_quota=0,
        )
    ]


def test_the_report_for_all_companies_adds_the_others(small_log: Ledger) -> None:
    report = report_of(small_log, None)
    assert (report.company_id, report.company_name) == (None, None)
    assert report.totals == Totals(entries=7, allowed=3, refused=4, outcomes=1)
    assert report.refusals[0] == ReasonCount(code="consent_required", count=3)
    assert DayCount(day=date(2026, 11, 25), channel="sms", allowed=1, refused=3) in report.days


def test_a_period_with_every_contact_counts_the_grant_used_to_the_full(
    small_log: Ledger,
) -> None:
    with transaction(small_log.engine) as session:
        report = build_report(
            session,
            period=Period.of_dates(date(2026, 11, 1), date(2026, 11, 26)),
            company_id=1,
            log_id=LOG_ID,
            now=NOW,
        )
    (sms,) = report.quotas
    assert (sms.contacts, sms.busiest_used, sms.busiest_quota, sms.at_quota) == (4, 4, 4, 1)


def test_anchoring_lag_counts_from_the_first_entry_no_anchor_covers(small_log: Ledger) -> None:
    unanchored = report_of(small_log, 1).anchoring
    assert unanchored == Anchoring(
        log_id=LOG_ID,
        log_size=9,
        anchored_size=0,
        anchored_at=None,
        anchors=0,
        oldest_unanchored_at=BEFORE,
        lag_seconds=NOW - BEFORE,
    )
    contract = small_log.chain.contract
    small_log.chain.transact(contract.functions.anchorRoot(LOG_ID, 4, b"\x11" * 32))
    small_log.chain.transact(contract.functions.anchorRoot(LOG_ID, 6, b"\x22" * 32))
    small_log.indexer.sync()
    anchored = report_of(small_log, 1).anchoring
    assert (anchored.anchored_size, anchored.anchors, anchored.unanchored) == (6, 2, 3)
    assert anchored.anchored_at is not None
    with transaction(small_log.engine) as session:
        seventh = usage_log.entry(session, 7)
    assert seventh is not None
    assert (anchored.oldest_unanchored_at, anchored.lag_seconds) == (seventh.at, NOW - seventh.at)


def test_an_empty_period_reports_nothing_and_says_so(ledger: Ledger, company: int) -> None:
    ledger.indexer.sync()
    report = report_of(ledger, 1)
    assert report.totals == Totals(entries=0, allowed=0, refused=0, outcomes=0)
    assert (report.days, report.quotas, report.refusals) == ([], [], [])
    html = render_html(report)
    assert "No contact was asked about in this period." in html
    assert "<svg" not in html


BROKE = Violation(
    seq=7,
    at=DAY2,
    company_id=1,
    channel="sms",
    kind=FindingKind.VIOLATION,
    recorded="allowed",
    replayed="refused",
    reasons=["revoked"],
)
WRONGLY_REFUSED = BROKE.model_copy(
    update={"seq": 8, "kind": FindingKind.WRONGLY_REFUSED, "recorded": "refused"}
)


@pytest.mark.parametrize(
    ("violations", "verification", "expected"),
    [
        (
            None,
            None,
            [
                ("unknown", "Violations: not checked"),
                ("unknown", "Log integrity: not checked"),
            ],
        ),
        (
            Violations(status=AuditStatus.PASSED, entries_replayed=6),
            Verification(status=AuditStatus.PASSED, entries_checked=9),
            [("ok", "No violations found"), ("ok", "Log integrity: verified")],
        ),
        (
            Violations(status=AuditStatus.FAILED, items=[BROKE, BROKE, BROKE]),
            Verification(status=AuditStatus.FAILED, first_bad_seq=5),
            [("bad", "Violations found"), ("bad", "Log integrity: FAILED")],
        ),
    ],
)
def test_the_summary_says_what_the_audits_found_and_what_was_not_run(
    small_log: Ledger,
    violations: Violations | None,
    verification: Verification | None,
    expected: list[tuple[str, str]],
) -> None:
    report = report_of(small_log, 1, violations=violations, verification=verification)
    lines = summarise(report)
    assert [(line.tone, line.label) for line in lines[:2]] == expected
    assert lines[2].label == "Anchoring: never anchored"
    assert lines[3].text.startswith("6 decisions recorded in the period: 3 contacts allowed")


@pytest.mark.parametrize(
    ("items", "text"),
    [
        ([BROKE, BROKE, BROKE], "3 contacts broke a consent rule."),
        ([BROKE], "1 contact broke a consent rule."),
        (
            [BROKE, WRONGLY_REFUSED],
            "1 contact broke a consent rule; 1 refusal should have been allowed.",
        ),
    ],
)
def test_the_violations_line_counts_in_words(
    small_log: Ledger, items: list[Violation], text: str
) -> None:
    report = report_of(small_log, 1, violations=Violations(status=AuditStatus.FAILED, items=items))
    assert summarise(report)[0].text == text + " See the list below."


def test_data_in_the_log_cannot_inject_markup(small_log: Ledger) -> None:
    evil = BROKE.model_copy(update={"reasons": ["<script>x"]})
    report = report_of(small_log, 1, violations=Violations(status=AuditStatus.FAILED, items=[evil]))
    html = render_html(report)
    assert "<script>" not in html and "&lt;script&gt;x" in html


def test_the_page_renders_in_chromium_with_its_headings_tables_and_charts(
    small_log: Ledger, tmp_path: Path
) -> None:
    report = report_of(
        small_log,
        1,
        violations=Violations(status=AuditStatus.FAILED, entries_replayed=6, items=[BROKE]),
        verification=Verification(status=AuditStatus.PASSED, entries_checked=9),
    )
    page_file = tmp_path / "report.html"
    page_file.write_text(render_html(report), encoding="utf-8")
    with open_page(page_file) as visit:
        page = visit.page
        assert (
            page.title()
            == "Usage audit: Acme SMS (company 1), 20 November 2026 to 26 November 2026"
        )
        assert page.locator("h1").inner_text() == page.title()
        assert page.locator("h2").all_inner_texts() == [
            "Summary",
            "Contacts per day and channel",
            "Quotas granted and used",
            "Refusals by reason",
            "Violations",
            "Log integrity and anchoring",
        ]
        summary = page.locator(".summary li strong").all_inner_texts()
        assert summary[:2] == ["Violations found", "Log integrity: verified"]
        day_rows = page.locator("section[aria-labelledby=contacts-heading] tbody tr")
        assert day_rows.all_inner_texts() == ["2026-11-24\t0\t2\t0", "2026-11-25\t0\t1\t3"]
        reasons = page.locator("section[aria-labelledby=refusals-heading] tbody th")
        assert reasons.all_inner_texts() == [
            "consent_required",
            "contact_not_linked",
            "no_grant",
            "quota_exhausted",
        ]
        charts = page.get_by_role("img")
        assert charts.count() == 2
        for name in ("Contacts allowed per day by channel, and refusals", "Refusals by reason"):
            assert page.get_by_role("img", name=name).is_visible()
        # matplotlib's text is text: the legend and axis labels are readable on the page.
        assert page.locator("svg text", has_text="decisions per day").count() == 1
        assert page.locator("svg text", has_text="Refused (any channel)").count() == 1
        shot = visit.screenshot("audit-report")
    assert visit.errors == []
    assert shot.stat().st_size > 20_000


def plant_allowed_copy(ledger: Ledger, seq: int) -> int:
    """Appends an allowed copy of refused entry ``seq``, as an operator rewriting history
    would: the chain says it should have been refused. Returns the planted entry's seq."""
    with transaction(ledger.engine) as session:
        refused = usage_log.entry(session, seq)
        assert refused is not None and refused.decision == "refused"
        fields = UsageEntryBase.model_validate(refused, from_attributes=True)
        planted = fields.model_copy(update={"decision": "allowed", "reasons": '["grant_allows"]'})
        return usage_log.append(session, planted).seq


def test_the_audited_report_runs_verify_and_replay_against_the_chain(small_log: Ledger) -> None:
    clean = audited_report(
        small_log.engine, small_log.chain, period=PERIOD, company_id=1, log_id=LOG_ID, now=NOW
    )
    assert clean.verification.status is AuditStatus.PASSED
    assert clean.verification.entries_checked == 9
    assert (clean.violations.status, clean.violations.items) == (AuditStatus.PASSED, [])
    assert summarise(clean)[0].label == "No violations found"

    planted = plant_allowed_copy(small_log, 5)  # the 5th SMS, refused on a quota of 4
    found = audited_report(
        small_log.engine, small_log.chain, period=PERIOD, company_id=1, log_id=LOG_ID, now=NOW
    )
    (violation,) = found.violations.items
    assert (violation.seq, violation.kind, violation.channel) == (
        planted,
        FindingKind.VIOLATION,
        "sms",
    )
    assert "quota_exhausted" in violation.reasons
    assert summarise(found)[0].text == "1 contact broke a consent rule. See the list below."


def test_a_report_without_audits_needs_no_chain(small_log: Ledger) -> None:
    report = audited_report(
        small_log.engine,
        None,
        period=PERIOD,
        company_id=1,
        log_id=LOG_ID,
        now=NOW,
        run_verify=False,
        run_replay=False,
    )
    assert report.verification.status is report.violations.status is AuditStatus.NOT_RUN
    with pytest.raises(ValueError, match="read the chain"):
        audited_report(small_log.engine, None, period=PERIOD, company_id=1, log_id=LOG_ID, now=NOW)
