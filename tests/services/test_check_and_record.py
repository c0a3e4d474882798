"""The check-and-record hot path: same log format, one snapshot of state, fail closed."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from sqlalchemy import event, text

from ledger.audit.verify import verify_chain
from ledger.db.engine import connect, transaction
from ledger.db.prepared import Prepared
from ledger.domain import contacts
from ledger.domain.channels import Channel
from ledger.runtime import Ledger
from ledger.usage import log as usage_log
from ledger.usage.entries import EntryKind, UsageEntryBase
from ledger.usage.hashing import GENESIS_HASH, leaf_bytes, leaf_hash
from ledger.usage.windows import allowed_times
from tests.helpers import PHONE, grant, sms_terms


def test_the_leaf_serialisation_and_hash_are_unchanged() -> None:
    # Fixed vectors: entries already in a log (and anchored roots) must verify forever.
    contact = UsageEntryBase(
        at=1786406400,
        company_id=7,
        contact="ab" * 32,
        channel=1,
        consumer="0x" + "12" * 20,
        grant_version=3,
        block_number=42,
        list_version="US-1,C7-2",
        decision="allowed",
        reasons='["grant_allows"]',
    )
    data = leaf_bytes(contact, seq=5, prev_hash="cd" * 32)
    assert data == (
        b'{"at":1786406400,"block_number":42,"channel":1,"company_id":7,'
        b'"consumer":"0x1212121212121212121212121212121212121212",'
        b'"contact":"abababababababababababababababababababababababababababababababab",'
        b'"decision":"allowed","grant_version":3,"list_version":"US-1,C7-2","outcome":null,'
        b'"prev_hash":"cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",'
        b'"reasons":"[\\"grant_allows\\"]","refers_to":null,"seq":5}'
    )
    assert leaf_hash(data) == ("8d7474d1c0921c67a4a230705cb7f443477636a99e6dcceb6a4ad41d380cacae")
    outcome = UsageEntryBase(
        at=1786406401,
        company_id=7,
        contact="ab" * 32,
        channel=1,
        decision="outcome",
        reasons="[]",
        outcome="answered",
        refers_to=5,
    )
    assert leaf_hash(leaf_bytes(outcome, seq=1, prev_hash=GENESIS_HASH)) == (
        "83e84b5daf6d8534cf37b76ac6a77d7633798f73d54aa0628cca43569b78088c"
    )


def test_appends_through_a_connection_and_a_session_make_one_chain(ledger: Ledger) -> None:
    def entry(at: int) -> UsageEntryBase:
        return UsageEntryBase(
            at=at, company_id=1, contact="ab", channel=1, decision="allowed", reasons="[]"
        )

    with connect(ledger.engine) as conn:
        first = usage_log.append(conn, entry(1))
    with transaction(ledger.engine) as session:
        second = usage_log.append(session, entry(2))
        third = usage_log.append(session, entry(3))
    with transaction(ledger.engine) as session:
        stored = usage_log.entries(session)
        assert verify_chain(session) is None
    assert [r.seq for r in (first, second, third)] == [1, 2, 3]
    assert [(e.seq, e.entry_hash) for e in stored] == [
        (r.seq, r.entry_hash) for r in (first, second, third)
    ]
    assert stored[1].prev_hash == first.entry_hash


@pytest.mark.parametrize(
    ("company_id", "channel"), list(itertools.product([None, 1], [None, Channel.SMS]))
)
def test_the_window_count_filters_as_asked(
    ledger: Ledger, company_id: int | None, channel: int | None
) -> None:
    decisions = [EntryKind.ALLOWED, EntryKind.REFUSED]
    kinds = list(itertools.product([1, 2], [Channel.SMS, Channel.CALL], decisions))
    logged = [
        (at, company, ch, decision)
        for at, (company, ch, decision) in enumerate(kinds * 2, start=100)
    ]
    with connect(ledger.engine) as conn:
        for at, company, ch, decision in logged:
            usage_log.append(
                conn,
                UsageEntryBase(
                    at=at,
                    company_id=company,
                    contact="ab",
                    channel=int(ch),
                    consumer="0xabc",
                    decision=decision,
                    reasons="[]",
                ),
            )
        times = allowed_times(
            conn, consumer="0xabc", since=103, company_id=company_id, channel=channel
        )
    assert times == [
        at
        for at, company, ch, decision in logged
        if at > 103
        and decision == "allowed"
        and company_id in (None, company)
        and channel in (None, ch)
    ]


def test_the_index_answers_a_decisions_reads_from_one_snapshot(
    ledger: Ledger, company: int, consumer: LocalAccount, linked: str
) -> None:
    grant(ledger, consumer, sms_terms(max_contacts=4))
    state = ledger.state
    block = state.head().number
    parsed = contacts.parse_contact(PHONE, default_region="FR")
    commitment = contacts.commitment(parsed, ledger.settings.contact_salt_bytes)
    with state.snapshot() as reads:
        link = reads.link(commitment, block)
        assert link == state.link(commitment, block)
        assert link.consumer == consumer.address
        assert reads.company(company, block) == state.company(company, block)
        # Addresses in any case are read as the index stores them.
        lower = consumer.address.lower()
        assert reads.grant(lower, company, Channel.SMS, block) == state.grant(
            consumer.address, company, Channel.SMS, block
        )
        assert reads.grant(lower, company, Channel.SMS, block).active
        assert reads.consumer(lower, block) == state.consumer(consumer.address, block)


def test_a_check_and_record_opens_three_transactions(
    ledger: Ledger, company: int, consumer: LocalAccount, linked: str
) -> None:
    grant(ledger, consumer, sms_terms(max_contacts=4))
    # A first check loads the opposition lists' metadata, refreshed only now and then.
    ledger.checker.check(company_id=company, contact=linked, channel=Channel.SMS, record=True)
    begun: list[Any] = []

    def on_begin(conn: Any) -> None:
        begun.append(conn)

    event.listen(ledger.engine, "begin", on_begin)
    try:
        result = ledger.checker.check(
            company_id=company, contact=linked, channel=Channel.SMS, record=True
        )
    finally:
        event.remove(ledger.engine, "begin", on_begin)
    assert result.decision.allowed and result.receipt is not None
    # The index's checkpoint; the company, link, grant and consumer; count and append.
    assert len(begun) == 3


def test_a_database_failure_while_recording_refuses_and_records_nothing(
    ledger: Ledger, company: int, consumer: LocalAccount, linked: str, monkeypatch: Any
) -> None:
    grant(ledger, consumer, sms_terms(max_contacts=4))
    # The log's head cannot be read (an OperationalError, as a damaged database would raise).
    monkeypatch.setattr(usage_log, "_HEAD", Prepared(text("SELECT seq FROM usage_entry_gone")))
    result = ledger.checker.check(
        company_id=company, contact=linked, channel=Channel.SMS, record=True
    )
    assert not result.decision.allowed
    assert result.decision.codes == ["database_unavailable"]
    assert result.receipt is None
    monkeypatch.undo()
    with transaction(ledger.engine) as session:
        assert usage_log.size(session) == 0
