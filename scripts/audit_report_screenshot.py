"""Regenerates docs/audit-report.png: two weeks of real checks on an in-memory chain, the log
anchored, one quota refusal planted as an allowed contact after the anchor, then the audit
report (verify and replay against the chain) rendered in headless Chromium.

Run: ``.venv/bin/python -m scripts.audit_report_screenshot`` (needs /usr/bin/chromium:
``make browser``).
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from eth_account import Account

from ledger.audit.anchorer import anchor_once
from ledger.audit.report import Period
from ledger.audit.report_audits import audited_report
from ledger.audit.report_html import render_html
from ledger.db.engine import transaction
from ledger.domain.channels import Channel
from ledger.domain.grants import GrantTerms
from ledger.runtime import Ledger
from ledger.settings import Settings
from ledger.usage import log as usage_log
from ledger.usage.entries import UsageEntryBase
from tests.browser import open_page
from tests.helpers import NOTICE_HASH, YEAR, grant, link, sms_terms

OUT = Path(__file__).resolve().parent.parent / "docs" / "audit-report.png"
START = datetime(2026, 11, 16, tzinfo=UTC)


def main() -> None:
    random.seed(7)  # the same page every time
    tmp = Path(tempfile.mkdtemp())
    settings = Settings(chain="memory", data_dir=tmp, database_url=f"sqlite:///{tmp / 'l.db'}")
    ledger = Ledger.open(settings)
    ledger.relayer.register_company(1, "Acme Telecom", ledger.chain.operator.address)
    phones = []
    for i in range(8):
        consumer = Account.create()
        phone = f"+33 6 12 34 56 {10 + i:02d}"
        link(ledger, consumer.address, phone)
        grant(ledger, consumer, sms_terms(max_contacts=4))
        if i % 2 == 0:
            call = GrantTerms(
                company_id=1,
                channel=Channel.CALL,
                max_contacts=2,
                period=YEAR,
                notice_hash=NOTICE_HASH,
            )
            grant(ledger, consumer, call)
        phones.append(phone)
    for d in range(14):
        day = START + timedelta(days=d)
        if day.weekday() >= 5:  # French calling days: no weekend contacts to show
            continue
        for _ in range(random.randint(3, 7)):
            at = int((day + timedelta(hours=9, minutes=random.randint(0, 400))).timestamp())
            phone = random.choice([*phones, "+33 6 99 88 77 66"])  # one number never linked
            channel = random.choice([Channel.SMS, Channel.SMS, Channel.CALL])
            ledger.checker.check(company_id=1, contact=phone, channel=channel, record=True, now=at)
    anchor_once(ledger.chain, ledger.engine, log_id=settings.log_id)
    # The violation the replay must find: a quota refusal written again as allowed.
    with transaction(ledger.engine) as session:
        refused = usage_log.entries(session, decision="refused", limit=1000)
        quota = [r for r in refused if "quota_exhausted" in r.reasons]
        planted = UsageEntryBase.model_validate(quota[-1], from_attributes=True)
        allowed = {"decision": "allowed", "reasons": '["grant_allows"]'}
        usage_log.append(session, planted.model_copy(update=allowed))
    ledger.indexer.sync()
    report = audited_report(
        ledger.engine,
        ledger.chain,
        period=Period.of_dates(START.date(), (START + timedelta(days=13)).date()),
        company_id=1,
        log_id=settings.log_id,
        now=int(time.time()),
    )
    page = tmp / "report.html"
    page.write_text(render_html(report))
    with open_page(page, width=1100) as visit:
        shot = visit.screenshot("audit-report-demo")
    if visit.errors:
        raise SystemExit(f"the page logged errors: {visit.errors}")
    shutil.copyfile(shot, OUT)
    print(f"{OUT} written: {len(report.violations.items)} violation(s) found by the replay")


if __name__ == "__main__":
    main()
