"""Batches answer every item exactly as the single check answers it, one after the other."""

from __future__ import annotations

import csv
import io
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy import text

from ledger.audit.integrity import LogIntegrity
from ledger.consent import messages
from ledger.db.engine import transaction
from ledger.db.prepared import Prepared
from ledger.domain.channels import Channel
from ledger.domain.errors import ChainUnavailable, InvalidContact
from ledger.domain.grants import GrantTerms
from ledger.lists.formats import ListFormat
from ledger.lists.importer import ListImport, import_lines
from ledger.runtime import Ledger
from ledger.services import bulk
from ledger.services.checks import CheckResult
from ledger.usage import log as usage_log
from ledger.usage.entries import Outcome
from tests.helpers import NOTICE_HASH, YEAR, grant, link, relay, sms_terms, soon

DAY = 86400
QUOTA, REVOKED, EXPIRED, NO_GRANT, CALLER = (
    "+33 6 11 11 11 11",
    "+33 6 22 22 22 22",
    "+33 6 33 33 33 33",
    "+33 6 44 44 44 44",
    "+33 6 55 55 55 55",
)
UNLINKED, ON_CRM = "+33 6 66 66 66 66", "+33 6 77 77 77 77"
US_LISTED, US_FREE, GB, DE = (
    "+1 202 456 1111",
    "+1 212 555 0100",
    "+44 20 7946 0000",
    "+49 30 123456",
)


def wednesday_afternoon() -> int:
    """Next Wednesday 16:00 in Paris (10:00 in New York): inside every region's calling hours."""
    day = datetime.now(ZoneInfo("Europe/Paris")) + timedelta(days=1)
    while day.weekday() != 2:
        day += timedelta(days=1)
    return int(day.replace(hour=16, minute=0, second=0, microsecond=0).timestamp())


def account(n: int) -> LocalAccount:
    made: LocalAccount = Account.create(f"bulk {n}")
    return made


@pytest.fixture
def varied(ledger: Ledger, company: int) -> tuple[int, list[bulk.Item]]:
    """A ledger holding every kind of answer, and a batch that asks for each of them."""
    now = wednesday_afternoon()
    people = {
        phone: account(i) for i, phone in enumerate((QUOTA, REVOKED, EXPIRED, NO_GRANT, CALLER))
    }
    for phone, who in people.items():
        link(ledger, who.address, phone)
    grant(ledger, people[QUOTA], sms_terms(max_contacts=2))
    grant(ledger, people[REVOKED], sms_terms())
    version = ledger.chain.grant_version(people[REVOKED].address, 1, Channel.SMS)
    relay(
        ledger,
        people[REVOKED],
        messages.revoke_grant(
            people[REVOKED].address,
            company_id=1,
            channel=1,
            version=version,
            epoch=0,
            deadline=soon(),
        ),
    )
    grant(ledger, people[EXPIRED], sms_terms(valid_until=now - DAY))
    grant(
        ledger,
        people[CALLER],
        GrantTerms(
            company_id=1,
            channel=Channel.CALL,
            max_contacts=10,
            period=YEAR,
            notice_hash=NOTICE_HASH,
        ),
    )
    import_lines(
        ("202,4561111",),
        ListImport(region="US", fmt=ListFormat.DNC),
        cache=ledger.lists,
        source="ftc-test",
        fetched_at=int(time.time()) - DAY,
    )
    crm = ListImport(region="FR", fmt=ListFormat.LINES, company_id=1)
    import_lines([ON_CRM], crm, cache=ledger.lists, source="crm", fetched_at=int(time.time()) - DAY)
    ledger.checker.clock = lambda: now
    # History in the log: calls already made to CALLER (statutory frequency), one refused.
    for _ in range(3):
        made = ledger.checker.check(company_id=1, contact=CALLER, channel=Channel.CALL, record=True)
        assert made.decision.allowed and made.receipt is not None
    assert made.receipt is not None
    with transaction(ledger.engine) as session:
        usage_log.record_outcome(
            session,
            company_id=1,
            seq=made.receipt.seq,
            outcome=Outcome.REFUSED_BY_CONSUMER,
            at=now - 60,
        )
    sms, call, email = Channel.SMS, Channel.CALL, Channel.EMAIL
    items = [
        *[bulk.Item(QUOTA, sms)] * 3,  # the third is over the quota of 2
        bulk.Item("06 11 11 11 11", sms),  # the same contact as typed in France
        bulk.Item(REVOKED, sms),
        bulk.Item(EXPIRED, sms),
        bulk.Item(NO_GRANT, sms),
        *[bulk.Item(CALLER, call)] * 2,
        bulk.Item(UNLINKED, sms),
        bulk.Item(ON_CRM, sms),
        bulk.Item(US_LISTED, call),
        bulk.Item(US_FREE, call),
        bulk.Item(US_FREE, sms),
        bulk.Item(GB, call),  # an opt-out regime with no list loaded
        bulk.Item(DE, call),
        bulk.Item("nope", sms),
        bulk.Item("+33 6", sms),
        bulk.Item("Alice@Example.COM", email),
        bulk.Item("alice@example.com", sms),  # an address cannot be texted
        bulk.Item(UNLINKED, email),  # nor a phone e-mailed
        *[bulk.Item(US_FREE, call)] * 2,
    ]
    return now, items


def singles(ledger: Ledger, items: list[bulk.Item], record: bool) -> list[Any]:
    out: list[Any] = []
    for item in items:
        try:
            out.append(
                ledger.checker.check(
                    company_id=1, contact=item.contact, channel=item.channel, record=record
                )
            )
        except InvalidContact as exc:
            out.append((exc.code, exc.message))
    return out


def batch(ledger: Ledger, items: list[bulk.Item], record: bool) -> list[Any]:
    outcomes = bulk.check_many(ledger.checker, company_id=1, items=items, record=record)
    assert [o.index for o in outcomes] == list(range(len(items)))
    return [o.result if o.error is None else (o.error.code, o.error.message) for o in outcomes]


@contextmanager
def rolled_back(ledger: Ledger) -> Iterator[None]:
    """Restores the database as it was on entering (the log is append-only, even to tests):
    the checks made inside leave no trace, so the next path starts from the same log."""
    path = str(ledger.engine.url.database)
    saved = sqlite3.connect(":memory:")
    with closing(sqlite3.connect(path)) as live:
        live.backup(saved)
    yield
    ledger.engine.dispose()
    with closing(sqlite3.connect(path)) as live:
        saved.backup(live)
    saved.close()
    # The restored log lost entries this process saw written, as a truncation would: start
    # its verification afresh, as the restart after a repair does.
    ledger.integrity = LogIntegrity(ledger.engine)
    ledger.integrity.watch()
    ledger.checker.integrity = ledger.integrity


def log_size(ledger: Ledger) -> int:
    with transaction(ledger.engine) as session:
        return usage_log.size(session)


@pytest.mark.parametrize("record", [True, False])
def test_a_batch_answers_each_item_as_the_single_check_does(
    ledger: Ledger, varied: tuple[int, list[bulk.Item]], record: bool
) -> None:
    _, items = varied
    with rolled_back(ledger):
        one_by_one = singles(ledger, items, record)
        after = log_size(ledger)
    assert batch(ledger, items, record) == one_by_one
    assert log_size(ledger) == after
    results = [r for r in one_by_one if isinstance(r, CheckResult)]
    codes = {code for r in results for code in r.decision.codes}
    # The batch did meet every kind of answer it was built for.
    assert {
        "grant_allows",
        "revoked",
        "contact_not_linked",
        "company_do_not_call",
        "on_opposition_list",
        "not_on_opposition_list",
        "opposition_list_unavailable",
    } <= codes, codes
    assert any(not isinstance(r, CheckResult) for r in one_by_one)
    if record:
        assert "quota_exhausted" in codes
        assert [r.decision.allowed for r in results[:3]] == [True, True, False]


def test_a_stale_index_refuses_every_item_as_the_single_check_does(
    ledger: Ledger, varied: tuple[int, list[bulk.Item]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, items = varied

    def down() -> None:
        raise ChainUnavailable("connection refused")

    monkeypatch.setattr(ledger.chain, "head", down)
    monkeypatch.setattr(ledger.state, "head_ttl", 0)  # no remembered head: each read asks
    with rolled_back(ledger):
        one_by_one = singles(ledger, items, True)
    answers = batch(ledger, items, True)
    # The message names the lag in seconds at the time of reading: all else is the same.
    assert [_timeless(a) for a in answers] == [_timeless(s) for s in one_by_one]
    assert {c for r in answers if isinstance(r, CheckResult) for c in r.decision.codes} == {
        "ledger_stale"
    }


def _timeless(answer: Any) -> Any:
    if not isinstance(answer, CheckResult):
        return answer
    d = answer.decision
    return (d.allowed, d.codes, d.consumer, answer.contact, answer.receipt)


def test_a_database_failure_refuses_every_item_and_records_nothing(
    ledger: Ledger, varied: tuple[int, list[bulk.Item]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, items = varied
    before = log_size(ledger)
    monkeypatch.setattr(usage_log, "_HEAD", Prepared(text("SELECT seq FROM usage_entry_gone")))
    answers = batch(ledger, items, True)
    assert answers == singles(ledger, items, True)
    assert {c for r in answers if isinstance(r, CheckResult) for c in r.decision.codes} == {
        "database_unavailable"
    }
    monkeypatch.undo()
    assert log_size(ledger) == before


def test_a_scrub_answers_each_row_as_the_single_check_does_across_chunks(
    ledger: Ledger, varied: tuple[int, list[bulk.Item]]
) -> None:
    _, items = varied
    calls = [i.contact for i in items if i.channel is Channel.CALL]
    rows = [["name", contact] for contact in [*calls, "nope", "alice@example.com"]]
    rows.insert(2, ["short row"])
    expected = []
    for row in rows:
        if len(row) < 2:
            expected.append([*row, "false", "missing_column", ""])
            continue
        (answer,) = singles(ledger, [bulk.Item(row[1], Channel.CALL)], record=False)
        if not isinstance(answer, CheckResult):
            expected.append([*row, "false", answer[0], ""])
            continue
        d = answer.decision
        expected.append([*row, str(d.allowed).lower(), " ".join(d.codes), answer.contact.value])
    chunks = list(
        bulk.scrub_lines(
            ledger.checker,
            company_id=1,
            channel=Channel.CALL,
            rows=iter(rows),
            column=1,
            chunk_rows=3,
        )
    )
    assert len(chunks) == -(-len(rows) // 3)
    lines = list(csv.reader(io.StringIO("".join(chunks))))
    assert lines == expected
    assert {"on_opposition_list", "not_on_opposition_list"} <= {
        code for line in lines for code in line[3].split()
    }
