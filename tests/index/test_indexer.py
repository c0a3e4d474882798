"""The event index on the in-process chain: every event kind, pinned reads, rebuilds, staleness."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from sqlalchemy import delete, update
from sqlmodel import select

from ledger.consent import messages
from ledger.db.engine import transaction
from ledger.domain import contacts
from ledger.domain.channels import Channel
from ledger.domain.errors import StaleEpoch, StaleNonce
from ledger.index.indexer import Indexer
from ledger.index.state import IndexedState
from ledger.index.tables import (
    ENTITIES,
    BlockRow,
    CheckpointRow,
    CompanyHistoryRow,
    GrantHistoryRow,
    LogRow,
)
from ledger.runtime import Ledger
from ledger.schema import migrated_engine
from ledger.settings import Settings
from tests.helpers import PHONE, grant, link, relay, sign, signed_grant, sms_terms, soon
from tests.index.index_checks import assert_index_matches_chain, dump, logged
from tests.servers import postgres_url


def check(ledger: Ledger, contact: str = PHONE):  # type: ignore[no-untyped-def]
    return ledger.checker.check(company_id=1, contact=contact, channel=Channel.SMS)


def commitment_of(ledger: Ledger, contact: str) -> bytes:
    parsed = contacts.parse_contact(contact, default_region="FR")
    return contacts.commitment(parsed, ledger.settings.contact_salt_bytes)


def consumer_message(
    ledger: Ledger, account: LocalAccount, build: Callable[..., messages.Message], **fields: Any
) -> None:
    """Has ``account`` sign the message ``build`` makes at its current nonce, and relays it."""
    nonce = ledger.chain.nonce(account.address)
    epoch = ledger.chain.epoch(account.address)
    message = build(account.address, nonce=nonce, epoch=epoch, deadline=soon(), **fields)
    relay(ledger, account, message)


def revoke_all(ledger: Ledger, account: LocalAccount) -> None:
    consumer_message(ledger, account, messages.revoke_all)


def set_cap(ledger: Ledger, account: LocalAccount, max_contacts: int, period: int) -> None:
    consumer_message(
        ledger, account, messages.set_global_cap, max_contacts=max_contacts, period=period
    )


def unlink(ledger: Ledger, account: LocalAccount, commitment: bytes) -> None:
    consumer_message(ledger, account, messages.unlink, commitment=commitment)


def every_kind_of_event(ledger: Ledger, consumer: LocalAccount) -> list[int]:
    """Drives every event the contract emits through relayed messages; returns the blocks."""
    blocks = [ledger.chain.head().number]
    ledger.relayer.register_company(2, "Beta Calls", ledger.chain.operator.address)
    link(ledger, consumer.address, PHONE)
    grant(ledger, consumer, sms_terms(max_contacts=4))
    blocks.append(ledger.chain.head().number)
    grant(ledger, consumer, sms_terms(max_contacts=2))  # replaced: version 2
    grant(ledger, consumer, sms_terms(company_id=2, max_contacts=1))
    set_cap(ledger, consumer, 3, 86400)
    blocks.append(ledger.chain.head().number)
    ledger.relayer.suspend_company(2)
    revoke_all(ledger, consumer)
    blocks.append(ledger.chain.head().number)
    ledger.relayer.reinstate_company(2)
    grant(ledger, consumer, sms_terms(max_contacts=5))  # set again after the revoke-all
    newcomer = Account.create()
    link(ledger, newcomer.address, "+33 6 99 88 77 66")
    link(ledger, consumer.address, "+33 6 99 88 77 66")  # reassigned from the newcomer
    ledger.relayer.submit("anchorRoot", 1, 10, b"\x07" * 32)
    ledger.relayer.submit("anchorRoot", 1, 12, b"\x08" * 32)
    unlink(ledger, consumer, commitment_of(ledger, "+33 6 99 88 77 66"))
    blocks.append(ledger.chain.head().number)
    return blocks


def test_every_event_kind_lands_in_the_index_as_the_contract_holds_it(
    ledger: Ledger, company: int, consumer: LocalAccount
) -> None:
    blocks = every_kind_of_event(ledger, consumer)
    keys = assert_index_matches_chain(ledger.state, ledger.chain)
    assert len(keys.grants) == 2 and len(keys.links) == 2 and keys.anchors == {1}
    # The state at every earlier block is what the contract's views said at that block.
    for block in blocks:
        assert_index_matches_chain(ledger.state, ledger.chain, block=block)

    record = ledger.state.consumer(consumer.address, ledger.state.head().number)
    assert (record.epoch, record.cap_max, record.cap_period, record.link_count) == (1, 3, 86400, 1)
    with transaction(ledger.engine) as s:
        versions = s.exec(
            select(GrantHistoryRow.version, GrantHistoryRow.max_contacts)  # type: ignore[call-overload]
            .where(GrantHistoryRow.company_id == 1)
            .order_by(GrantHistoryRow.block_number)
        ).all()
        names = s.exec(select(CompanyHistoryRow.name, CompanyHistoryRow.status)).all()  # type: ignore[call-overload]
        kinds = set(s.exec(select(LogRow.event)).all())
    assert [tuple(v) for v in versions] == [(1, 4), (2, 2), (3, 5)]  # the full history of the grant
    assert ("Beta Calls", 2) in [tuple(n) for n in names]
    assert kinds >= {
        "CompanyRegistered",
        "CompanySuspended",
        "CompanyReinstated",
        "GrantSet",
        "AllGrantsRevoked",
        "GlobalCapSet",
        "ContactLinked",
        "ContactUnlinked",
        "RootAnchored",
        "RoleGranted",
    }


def test_a_relayed_revocation_is_seen_by_the_very_next_check(
    ledger: Ledger, company: int, consumer: LocalAccount, linked: str
) -> None:
    grant(ledger, consumer, sms_terms())
    allowed = check(ledger).decision
    assert allowed.allowed and allowed.block_number == ledger.chain.head().number
    revoke_all(ledger, consumer)
    refused = check(ledger).decision
    assert refused.codes == ["revoked"]
    assert refused.block_number == ledger.chain.head().number  # the state it decided on


def test_an_unlinked_number_no_longer_reaches_the_consumer(
    ledger: Ledger, company: int, consumer: LocalAccount, linked: str
) -> None:
    grant(ledger, consumer, sms_terms())
    unlink(ledger, consumer, commitment_of(ledger, PHONE))
    decision = check(ledger).decision
    assert not decision.allowed and decision.consumer is None


def test_a_consumer_message_with_a_used_nonce_is_refused_without_gas(
    ledger: Ledger, company: int, consumer: LocalAccount
) -> None:
    cap = messages.set_global_cap(
        consumer.address, max_contacts=3, period=86400, nonce=0, epoch=0, deadline=soon()
    )
    signature = sign(ledger, consumer, cap)
    ledger.relayer.relay(cap, signature)
    sent = ledger.chain.w3.eth.get_transaction_count(ledger.chain.operator.address)
    with pytest.raises(StaleNonce):
        ledger.relayer.relay(cap, signature)
    assert ledger.chain.w3.eth.get_transaction_count(ledger.chain.operator.address) == sent


def test_a_revoke_all_voids_every_message_signed_before_it(
    ledger: Ledger, company: int, consumer: LocalAccount
) -> None:
    grant(ledger, consumer, sms_terms())
    held, signature = signed_grant(ledger, consumer, sms_terms(max_contacts=9))
    revoke_all(ledger, consumer)
    sent = ledger.chain.w3.eth.get_transaction_count(ledger.chain.operator.address)
    with pytest.raises(StaleEpoch):
        ledger.relayer.relay(held, signature)
    assert ledger.chain.w3.eth.get_transaction_count(ledger.chain.operator.address) == sent
    assert not ledger.chain.grant(consumer.address, 1, Channel.SMS, "latest").active


def test_a_rebuild_from_the_deployment_reaches_the_same_rows(
    ledger: Ledger, company: int, consumer: LocalAccount, tmp_path: Path
) -> None:
    every_kind_of_event(ledger, consumer)
    incremental = dump(ledger.engine)
    fresh = migrated_engine(f"sqlite:///{tmp_path / 'rebuilt.sqlite3'}")
    rebuilt = Indexer(ledger.chain, fresh, start_block=ledger.indexer.start_block)
    report = rebuilt.sync()
    assert report.caught_up and report.events == len(logged(ledger.engine))
    assert dump(fresh) == incremental
    ledger.indexer.rebuild()
    assert dump(ledger.engine) == incremental


def test_indexing_a_range_again_changes_nothing(
    ledger: Ledger, company: int, consumer: LocalAccount
) -> None:
    every_kind_of_event(ledger, consumer)
    before = dump(ledger.engine)
    # A checkpoint moved back (say, restored from an older copy) over rows already written:
    # the replayed logs are recognised by (tx hash, log index) and skipped.
    with transaction(ledger.engine) as s:
        block = s.get(BlockRow, ledger.indexer.start_block)
        assert block is not None
        s.exec(
            update(CheckpointRow).values(  # type: ignore[call-overload]
                block_number=block.number, block_hash=block.hash, block_timestamp=block.timestamp
            )
        )
    report = ledger.indexer.sync()
    assert report.events == 0 and report.caught_up
    assert dump(ledger.engine) == before
    duplicates = logged(ledger.engine)
    assert len(duplicates) == len(set(duplicates))


def test_two_indexers_on_one_database_write_each_event_once(
    ledger: Ledger, company: int, consumer: LocalAccount
) -> None:
    every_kind_of_event(ledger, consumer)
    expected = dump(ledger.engine)
    with transaction(ledger.engine) as s:
        for table in (CheckpointRow, LogRow):
            s.exec(delete(table))  # type: ignore[call-overload]
        for entity in ENTITIES:
            s.exec(delete(entity.current))  # type: ignore[call-overload]
            s.exec(delete(entity.history))  # type: ignore[call-overload]
    start = ledger.indexer.start_block
    twins = [
        Indexer(ledger.chain, ledger.engine, start_block=start, max_chunk_blocks=1)
        for _ in range(2)
    ]
    barrier = threading.Barrier(2)

    def run(indexer: Indexer) -> None:
        barrier.wait()
        indexer.sync()

    threads = [threading.Thread(target=run, args=(twin,)) for twin in twins]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    twins[0].sync()
    assert dump(ledger.engine) == expected


def test_a_lagging_index_refuses_with_ledger_stale_and_recovers(
    ledger: Ledger, company: int, consumer: LocalAccount, linked: str, client: TestClient
) -> None:
    grant(ledger, consumer, sms_terms())
    strict = IndexedState(
        chain=ledger.chain, engine=ledger.engine, max_lag_blocks=0, max_lag_seconds=60
    )
    ledger.checker.state = strict
    ledger.state = strict
    # A block the index has not seen (sent around the relayer, as another operator would).
    ledger.chain.transact(
        ledger.chain.contract.functions.registerCompany(9, "Other", ledger.chain.operator.address)
    )
    refused = check(ledger).decision
    assert refused.codes == ["ledger_stale"]
    assert "1 blocks" in refused.reasons[0].message
    health = client.get("/v1/health")
    assert health.status_code == 503
    body = health.json()
    assert (body["status"], body["lag_blocks"]) == ("degraded", 1)

    ledger.indexer.sync()
    assert check(ledger).decision.allowed
    body = client.get("/v1/health").json()
    assert (body["status"], body["lag_blocks"], body["lag_seconds"]) == ("ok", 0, 0.0)
    assert body["index_block"] == body["head_block"] == ledger.chain.head().number


def test_an_index_behind_for_too_long_is_stale_however_few_blocks(
    ledger: Ledger, company: int, consumer: LocalAccount, linked: str
) -> None:
    grant(ledger, consumer, sms_terms())
    later = time.time() + 30  # the indexer's last sync was 30 s ago
    ledger.chain.transact(
        ledger.chain.contract.functions.registerCompany(9, "Other", ledger.chain.operator.address)
    )
    state = IndexedState(
        chain=ledger.chain,
        engine=ledger.engine,
        max_lag_blocks=5,
        max_lag_seconds=10,
        clock=lambda: later,
    )
    lag = state.lag()
    assert (lag.lag_blocks, lag.stale) == (1, True) and lag.lag_seconds >= 29
    ledger.indexer.sync()
    assert not state.lag().stale  # caught up: no lag in seconds however long ago


def test_the_raw_log_keeps_every_argument(ledger: Ledger, company: int) -> None:
    with transaction(ledger.engine) as s:
        row = s.exec(select(LogRow).where(LogRow.event == "CompanyRegistered")).one()
    assert json.loads(row.args) == {
        "companyId": 1,
        "admin": ledger.chain.operator.address,
        "name": "Acme SMS",
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def any_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    """A ledger on the in-process chain over SQLite and, when reachable, PostgreSQL."""
    urls = (
        iter([f"sqlite:///{tmp_path / 'any.sqlite3'}"])
        if request.param == "sqlite"
        else postgres_url()
    )
    for url in urls:
        opened = Ledger.open(Settings(chain="memory", data_dir=tmp_path, database_url=url))  # type: ignore[arg-type]
        yield opened
        opened.engine.dispose()


def test_a_chain_that_lost_blocks_is_rolled_back_and_replayed(
    any_ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = any_ledger
    consumer: LocalAccount = Account.create()
    ledger.relayer.register_company(1, "Acme SMS", ledger.chain.operator.address)
    link(ledger, consumer.address, PHONE)
    grant(ledger, consumer, sms_terms(max_contacts=4))
    snapshot = ledger.chain.w3.testing.snapshot()
    fork = ledger.chain.head().number
    grant(ledger, consumer, sms_terms(max_contacts=2))
    revoke_all(ledger, consumer)
    set_cap(ledger, consumer, 5, 3600)
    lost = ledger.chain.head().number
    ledger.chain.w3.testing.revert(snapshot)
    assert ledger.state.lag().stale  # the index holds blocks the node no longer has

    for max_contacts in (7, 8, 9, 6):  # other blocks, more of them, on the same keys
        grant(ledger, consumer, sms_terms(max_contacts=max_contacts))
    assert ledger.chain.head().number > lost
    report = ledger.indexer.sync()
    assert report.events == 0  # the relays above already made the index follow
    assert_index_matches_chain(ledger.state, ledger.chain)
    assert f"rolled back from block {lost} to {fork}" in caplog.text
    decision = check(ledger).decision  # the grant of the new blocks, not the lost revoke-all
    assert (decision.allowed, decision.remaining, decision.grant_version) == (True, 6, 5)
    incremental = dump(ledger.engine)
    ledger.indexer.rebuild()
    assert dump(ledger.engine) == incremental
