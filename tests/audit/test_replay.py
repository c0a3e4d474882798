"""Replaying the usage log from the chain alone, against a real anvil node.

A clean log of 10,000 decisions made by the product's own checker (allowed, quota and cap
refusals, no grant, revoked, suspended, outside hours, statutory limits, several companies
and channels) replays with no finding; entries planted by writing the log directly (a contact
after a revocation block, one beyond a quota, a refusal the grant allowed) are found, named by
seq, even with the operator's index tampered to hide them.
"""

from __future__ import annotations

import json
import random
import socket
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from sqlalchemy import text
from typer.testing import CliRunner

from ledger.audit.chain_state import ChainHistory
from ledger.audit.replay import (
    FindingKind,
    Recorded,
    ReplayReport,
    entries_from_database,
    entries_from_export,
    replay,
    replay_log,
)
from ledger.chain.anvil import AnvilNode, anvil_binary
from ledger.chain.client import Chain
from ledger.consent import messages
from ledger.db.engine import connect, transaction
from ledger.domain.bases import BasisKind, Declared
from ledger.domain.channels import Channel
from ledger.domain.errors import InvalidInput
from ledger.domain.grants import ALL_DAYS, GrantTerms
from ledger.lists.formats import ListFormat
from ledger.lists.importer import ListImport, import_lines
from ledger.runtime import Ledger
from ledger.services.bulk import Item, check_many
from ledger.settings import Settings
from ledger.usage import log as usage_log
from ledger.usage.entries import Outcome, UsageEntry, UsageEntryBase
from tests.helpers import NOTICE_HASH, grant, link, relay, soon

try:
    anvil_binary()
except Exception as exc:  # pragma: no cover - only without `npm ci`
    pytest.skip(f"anvil not installed: {exc}", allow_module_level=True)

pytestmark = pytest.mark.anvil

PARIS = ZoneInfo("Europe/Paris")
DAY = 86400
# Tuesday 1 September 2026, 10:30 in Paris: after France's opt-in date, in the statutory hours.
START = int(datetime(2026, 9, 1, 10, 30, tzinfo=PARIS).timestamp())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def ledger(tmp_path: Path, node: AnvilNode) -> Iterator[Ledger]:
    """A ledger with its own contract on the shared node, companies 1 to 3 registered."""
    settings = Settings(
        chain="rpc",  # type: ignore[arg-type]
        rpc_url=node.url,
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
    )
    opened = Ledger.open(settings)
    for company in (1, 2, 3):
        opened.relayer.register_company(
            company, f"Company {company}", opened.chain.operator.address
        )
    yield opened
    opened.engine.dispose()


@pytest.fixture
def company(ledger: Ledger) -> int:
    """Company 1, registered with the ledger (for ``company_auth``)."""
    return 1


def auditor_chain(ledger: Ledger, node: AnvilNode) -> Chain:
    """The chain as an auditor reads it: its own client on the RPC URL, no operator key."""
    chain = Chain.connect(node.url, operator_key=Account.create().key.hex())
    chain.use(ledger.chain.address)
    return chain


def auditor_history(ledger: Ledger, node: AnvilNode) -> ChainHistory:
    return ChainHistory.read(auditor_chain(ledger, node))


def replayed(ledger: Ledger, node: AnvilNode) -> ReplayReport:
    return replay(entries_from_database(ledger.engine), auditor_history(ledger, node))


def phone(n: int) -> str:
    return f"+33 6 12 {n // 100 % 100:02d} {n % 100:02d} 00"


def terms(company: int, channel: Channel, max_contacts: int, period: int, **kw: Any) -> GrantTerms:
    return GrantTerms(
        company_id=company,
        channel=channel,
        max_contacts=max_contacts,
        period=period,
        notice_hash=NOTICE_HASH,
        **kw,
    )


def revoke(ledger: Ledger, account: LocalAccount, company: int, channel: Channel) -> None:
    version = ledger.chain.grant_version(account.address, company, int(channel))
    epoch = ledger.chain.epoch(account.address)
    message = messages.revoke_grant(
        account.address,
        company_id=company,
        channel=int(channel),
        version=version,
        epoch=epoch,
        deadline=soon(),
    )
    relay(ledger, account, message)


def revoke_all(ledger: Ledger, account: LocalAccount) -> None:
    message = messages.revoke_all(
        account.address,
        nonce=ledger.chain.nonce(account.address),
        epoch=ledger.chain.epoch(account.address),
        deadline=soon(),
    )
    relay(ledger, account, message)


def global_cap(ledger: Ledger, account: LocalAccount, max_contacts: int, period: int) -> None:
    message = messages.set_global_cap(
        account.address,
        max_contacts=max_contacts,
        period=period,
        nonce=ledger.chain.nonce(account.address),
        epoch=ledger.chain.epoch(account.address),
        deadline=soon(),
    )
    relay(ledger, account, message)


# ----- a clean log of 10,000 decisions -----


class Workload:
    """Checks recorded by the product's checker, at times that move forward."""

    def __init__(self, ledger: Ledger, seed: int) -> None:
        self.ledger = ledger
        self.random = random.Random(seed)
        self.at = START
        self.asks: list[tuple[int, str, Channel]] = []
        self.calls: list[int] = []  # seqs of allowed calls, some of which get refused outcomes

    def run(self, n: int) -> None:
        """``n`` single checks, one at a time."""
        for _ in range(n):
            company, contact, channel = self.random.choice(self.asks)
            # Mostly minutes apart, now and then hours: windows fill up and free again, and
            # some calls fall outside the statutory hours or on a weekend.
            self.at += self.random.choice((5, 10, 30, 60, 120, 600, 3600))
            result = self.ledger.checker.check(
                company_id=company, contact=contact, channel=channel, record=True, now=self.at
            )
            assert result.receipt is not None
            if channel is Channel.CALL and result.decision.allowed:
                self.calls.append(result.receipt.seq)
            if self.calls and self.random.random() < 0.01:
                with transaction(self.ledger.engine) as session:
                    seq = self.calls.pop()
                    entry = session.get(UsageEntry, seq)
                    assert entry is not None
                    usage_log.record_outcome(
                        session,
                        company_id=entry.company_id,
                        seq=seq,
                        outcome=Outcome.REFUSED_BY_CONSUMER,
                        at=self.at,
                    )

    def run_batches(self, n: int, size: int) -> None:
        """``n`` checks in batches of ``size`` (the batch path), one company and time each."""
        for _ in range(n // size):
            company = self.random.choice((1, 2, 3))
            asks = [a for a in self.asks if a[0] == company]
            items = [
                Item(contact, channel) for _, contact, channel in self.random.choices(asks, k=size)
            ]
            self.at += self.random.choice((60, 600, 3600))
            outcomes = check_many(
                self.ledger.checker, company_id=company, items=items, record=True, now=self.at
            )
            assert all(o.result is not None and o.result.receipt is not None for o in outcomes)


def test_a_clean_log_of_10000_mixed_decisions_replays_with_no_finding(
    ledger: Ledger, node: AnvilNode
) -> None:
    people = [Account.create() for _ in range(10)]
    work = Workload(ledger, seed=14)
    for i, person in enumerate(people):
        number, email = phone(i), f"person{i}@example.org"
        link(ledger, person.address, number)
        link(ledger, person.address, email)
        for company in (1, 2, 3):
            work.asks += [
                (company, number, Channel.SMS),
                (company, number, Channel.CALL),
                (company, email, Channel.EMAIL),
            ]
        # Each person grants some companies some channels, with quotas of various windows.
        for company, channel in work.random.sample(
            [(c, ch) for c in (1, 2, 3) for ch in (Channel.SMS, Channel.CALL, Channel.EMAIL)], 5
        ):
            extra: dict[str, Any] = {}
            if i % 4 == 0:
                extra["hours_mask"] = sum(1 << h for h in range(9, 18))  # office hours only
            if i % 5 == 0:
                extra["days_mask"] = ALL_DAYS & ~(1 << 2)  # never on Wednesdays
            max_contacts = work.random.choice((2, 3, 5, 8))
            period = work.random.choice((DAY, 7 * DAY, 30 * DAY))
            grant(ledger, person, terms(company, channel, max_contacts, period, **extra))
    for n in range(3):  # numbers no one linked
        work.asks.append((1, phone(90 + n), Channel.SMS))
    global_cap(ledger, people[1], 3, DAY)

    # Nothing changes on chain while checks run, and each relay waits for the index to cover
    # its block: the node's head need not be asked before every check.
    ledger.state.head_ttl = 3600.0
    work.run(2_000)
    work.run_batches(2_000, size=50)
    # Consent withdrawn, a company suspended, a number reassigned, consent given again.
    revoke(ledger, people[2], 1, Channel.SMS)
    revoke(ledger, people[3], 2, Channel.CALL)
    revoke_all(ledger, people[4])
    ledger.relayer.suspend_company(3)
    link(ledger, people[5].address, phone(6))
    work.run(2_000)
    work.run_batches(1_000, size=20)
    grant(ledger, people[4], terms(1, Channel.SMS, 4, DAY))
    ledger.relayer.reinstate_company(3)
    work.run(2_000)
    work.run_batches(1_000, size=100)

    decisions = [e for e in entries_of(ledger) if e.decision != "outcome"]
    assert len(decisions) >= 10_000
    codes = Counter(code for e in decisions for code in json.loads(e.reasons))
    mix = {
        "grant_allows",
        "quota_exhausted",
        "global_cap_reached",
        "no_grant",
        "contact_not_linked",
        "revoked",
        "company_suspended",
        "outside_allowed_hours",
        "outside_allowed_days",
        "outside_statutory_hours",
        "statutory_frequency",
        "refused_recently",
    }
    assert mix <= set(codes), f"missing from the workload: {mix - set(codes)}"

    history = auditor_history(ledger, node)
    log = list(entries_from_database(ledger.engine))
    report = replay(log, history)
    assert [f.line() for f in report.findings] == []
    assert report.ok
    assert report.decisions == report.agreed == len(decisions)
    assert report.outcomes > 0
    # Several processes, each replaying its share of the contact points, answer as one.
    assert replay(log, history, workers=3).as_dict() == report.as_dict()


def entries_of(ledger: Ledger) -> list[UsageEntry]:
    with transaction(ledger.engine) as session:
        return usage_log.entries(session, limit=1_000_000)


# ----- planted entries -----


def plant(ledger: Ledger, like: UsageEntry, **changes: Any) -> int:
    """Appends an entry written directly to the log: ``like`` with ``changes``."""
    base = UsageEntryBase.model_validate(like, from_attributes=True)
    with connect(ledger.engine) as conn:
        return usage_log.append(conn, base.model_copy(update=changes)).seq


def head_block(ledger: Ledger) -> int:
    ledger.indexer.sync()
    return ledger.state.head().number


def sms(ledger: Ledger, at: int, contact: str = "+33 6 12 34 56 78") -> UsageEntry:
    result = ledger.checker.check(
        company_id=1, contact=contact, channel=Channel.SMS, record=True, now=at
    )
    assert result.receipt is not None
    with transaction(ledger.engine) as session:
        entry = session.get(UsageEntry, result.receipt.seq)
    assert entry is not None
    return entry


@pytest.fixture
def person(ledger: Ledger) -> LocalAccount:
    account: LocalAccount = Account.create()
    link(ledger, account.address, "+33 6 12 34 56 78")
    return account


def test_a_contact_recorded_after_the_revocation_block_is_a_violation(
    ledger: Ledger, node: AnvilNode, person: LocalAccount
) -> None:
    grant(ledger, person, terms(1, Channel.SMS, 4, 30 * DAY))
    allowed = sms(ledger, START)
    assert allowed.decision == "allowed"
    revoke(ledger, person, 1, Channel.SMS)
    after = head_block(ledger)
    seq = plant(ledger, allowed, at=START + 600, block_number=after)

    report = replayed(ledger, node)
    [finding] = report.findings
    assert (finding.seq, finding.kind) == (seq, FindingKind.VIOLATION)
    assert finding.chain["decision"] == "refused"
    assert [r["code"] for r in finding.reasons] == ["revoked"]
    assert "revoked company 1's sms grant" in finding.reasons[0]["message"]
    assert report.summary()["violations"] == 1


def test_the_same_contact_at_a_block_before_the_revocation_is_lawful(
    ledger: Ledger, node: AnvilNode, person: LocalAccount
) -> None:
    grant(ledger, person, terms(1, Channel.SMS, 4, 30 * DAY))
    allowed = sms(ledger, START)
    revoke(ledger, person, 1, Channel.SMS)
    plant(ledger, allowed, at=START + 600)  # read the ledger before the revocation was mined

    report = replayed(ledger, node)
    assert report.ok, [f.line() for f in report.findings]
    assert report.agreed == 2


def test_a_contact_beyond_the_quota_is_a_violation(
    ledger: Ledger, node: AnvilNode, person: LocalAccount
) -> None:
    grant(ledger, person, terms(1, Channel.SMS, 2, 30 * DAY))
    first, _ = sms(ledger, START), sms(ledger, START + 60)
    refused = sms(ledger, START + 120)
    assert json.loads(refused.reasons) == ["quota_exhausted"]
    seq = plant(ledger, first, at=START + 180)  # a third allowed contact, written directly

    report = replayed(ledger, node)
    [finding] = report.findings
    assert (finding.seq, finding.kind) == (seq, FindingKind.VIOLATION)
    assert finding.recorded["decision"] == "allowed"
    assert [r["code"] for r in finding.reasons] == ["quota_exhausted"]
    assert "quota of 2 sms per 30 days is used up" in finding.reasons[0]["message"]
    assert {"decision", "reasons"} <= set(finding.differences)


def test_a_refusal_the_grant_allowed_is_reported(
    ledger: Ledger, node: AnvilNode, person: LocalAccount
) -> None:
    grant(ledger, person, terms(1, Channel.SMS, 4, 30 * DAY))
    allowed = sms(ledger, START)
    seq = plant(
        ledger,
        allowed,
        at=START + 60,
        decision="refused",
        reasons=json.dumps(["quota_exhausted"]),
        basis=json.dumps({"kind": "consent"}),
    )

    report = replayed(ledger, node)
    [finding] = report.findings
    assert (finding.seq, finding.kind) == (seq, FindingKind.WRONGLY_REFUSED)
    assert finding.chain["decision"] == "allowed"
    assert [r["code"] for r in finding.reasons] == ["grant_allows"]
    assert report.summary()["violations"] == 0
    assert report.summary()["wrongly_refused"] == 1


@pytest.mark.parametrize(
    ("changes", "differences"),
    [
        ({"grant_version": 7}, ["grant_version"]),
        ({"rules": json.dumps(["FR-L34-5-consent", "FR-D223-9-hours"])}, ["rules"]),
        ({"consumer": "0x000000000000000000000000000000000000dEaD"}, ["consumer"]),
        ({"reasons": json.dumps(["basis_admitted"])}, ["reasons"]),
    ],
)
def test_an_allowed_answer_recorded_for_other_reasons_is_a_mismatch(
    ledger: Ledger,
    node: AnvilNode,
    person: LocalAccount,
    changes: dict[str, Any],
    differences: list[str],
) -> None:
    grant(ledger, person, terms(1, Channel.SMS, 4, 30 * DAY))
    allowed = sms(ledger, START)
    seq = plant(ledger, allowed, at=START + 60, **changes)

    [finding] = replayed(ledger, node).findings
    assert (finding.seq, finding.kind, finding.differences) == (
        seq,
        FindingKind.MISMATCH,
        differences,
    )


def test_the_replay_reads_the_chain_not_the_operators_index(
    ledger: Ledger, node: AnvilNode, person: LocalAccount
) -> None:
    grant(ledger, person, terms(1, Channel.SMS, 4, 30 * DAY))
    allowed = sms(ledger, START)
    revoke(ledger, person, 1, Channel.SMS)
    seq = plant(ledger, allowed, at=START + 600, block_number=head_block(ledger))
    # The operator hides the revocation from its own index.
    with connect(ledger.engine) as conn:
        conn.execute(text("DELETE FROM ix_grant_history WHERE max_contacts = 0"))
        conn.execute(text("DELETE FROM ix_log WHERE event = 'GrantRevoked'"))

    assert [(f.seq, f.kind) for f in replayed(ledger, node).findings] == [
        (seq, FindingKind.VIOLATION)
    ]


def test_an_allowed_contact_at_a_block_the_chain_does_not_have_is_a_violation(
    ledger: Ledger, node: AnvilNode, person: LocalAccount
) -> None:
    grant(ledger, person, terms(1, Channel.SMS, 4, 30 * DAY))
    allowed = sms(ledger, START)
    seq = plant(ledger, allowed, at=START + 60, block_number=head_block(ledger) + 1000)
    refused_before_reading = plant(
        ledger,
        allowed,
        at=START + 120,
        decision="refused",
        block_number=None,
        reasons=json.dumps(["ledger_stale"]),
        rules=None,
        basis=None,
    )

    report = replayed(ledger, node)
    assert [(f.seq, f.kind) for f in report.findings] == [(seq, FindingKind.UNKNOWN_BLOCK)]
    assert report.not_replayable == 1 and refused_before_reading == seq + 1


def test_an_export_file_replays_like_the_database(
    ledger: Ledger, node: AnvilNode, person: LocalAccount, tmp_path: Path
) -> None:
    grant(ledger, person, terms(1, Channel.SMS, 2, 30 * DAY))
    first, _ = sms(ledger, START), sms(ledger, START + 60)
    seq = plant(ledger, first, at=START + 180)
    export = tmp_path / "export.jsonl"
    with export.open("w") as out:
        for entry in entries_of(ledger):
            out.write(json.dumps({"type": "entry", **entry.model_dump()}) + "\n")
        out.write(json.dumps({"type": "anchor", "tree_size": 3, "root": "00" * 32}) + "\n")

    history = auditor_history(ledger, node)
    from_file = replay(entries_from_export(export), history)
    assert from_file.as_dict() == replay(entries_from_database(ledger.engine), history).as_dict()
    assert [f.seq for f in from_file.findings] == [seq]


def test_only_the_company_asked_about_is_replayed_but_every_company_counts_for_a_cap(
    ledger: Ledger, node: AnvilNode, person: LocalAccount
) -> None:
    grant(ledger, person, terms(1, Channel.SMS, 4, 30 * DAY))
    grant(ledger, person, terms(2, Channel.SMS, 4, 30 * DAY))
    global_cap(ledger, person, 1, DAY)
    other = ledger.checker.check(
        company_id=2, contact="+33 6 12 34 56 78", channel=Channel.SMS, record=True, now=START
    )
    assert other.decision.allowed and other.receipt is not None
    refused = sms(ledger, START + 60)
    assert json.loads(refused.reasons) == ["global_cap_reached"]  # company 2's contact counts
    with transaction(ledger.engine) as session:
        allowed = session.get(UsageEntry, other.receipt.seq)
    assert allowed is not None
    seq = plant(ledger, allowed, at=START + 120)  # company 2 again, beyond the cap

    history = auditor_history(ledger, node)
    only_1 = replay(entries_from_database(ledger.engine), history, company_id=1)
    assert only_1.ok and only_1.decisions == 1
    everyone = replay(entries_from_database(ledger.engine), history)
    assert [(f.seq, f.kind) for f in everyone.findings] == [(seq, FindingKind.VIOLATION)]
    assert [r["code"] for r in everyone.findings[0].reasons] == ["global_cap_reached"]


def test_the_cli_exits_1_on_a_violation_and_prints_it(
    ledger: Ledger, node: AnvilNode, person: LocalAccount, tmp_path: Path
) -> None:
    from ledger.cli import app

    grant(ledger, person, terms(1, Channel.SMS, 1, 30 * DAY))
    first = sms(ledger, START)
    runner = CliRunner()
    args = ["audit", "replay", "--data-dir", str(tmp_path), "--rpc-url", node.url]
    args += ["--contract", ledger.chain.address]
    env = {"QL_DATABASE_URL": str(ledger.settings.database_url), "QL_CHAIN": "rpc"}
    clean = runner.invoke(app, [*args, "--json"], env=env)
    assert clean.exit_code == 0, clean.output
    assert json.loads(clean.output)["agreed"] == 1

    seq = plant(ledger, first, at=START + 60)
    found = runner.invoke(app, args, env=env)
    assert found.exit_code == 1, found.output
    assert f"seq {seq} violation" in found.output
    assert "quota_exhausted" in found.output
    assert "not re-checkable: opposition list membership" in found.output


def test_the_cli_exits_2_when_the_node_cannot_be_reached(tmp_path: Path) -> None:
    from ledger.cli import app

    result = CliRunner().invoke(
        app,
        [
            "audit",
            "replay",
            "--data-dir",
            str(tmp_path),
            "--rpc-url",
            f"http://127.0.0.1:{free_port()}",
            "--contract",
            "0x" + "11" * 20,
        ],
        env={"QL_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}"},
    )
    assert result.exit_code == 2, result.output
    assert "cannot replay" in result.output


def test_the_regulator_endpoint_gives_the_same_report(
    ledger: Ledger,
    node: AnvilNode,
    person: LocalAccount,
    client: TestClient,
    regulator_auth: dict[str, str],
    company_auth: dict[str, str],
) -> None:
    grant(ledger, person, terms(1, Channel.SMS, 1, 30 * DAY))
    seq = plant(ledger, sms(ledger, START), at=START + 60)

    response = client.get("/v1/audit/replay", headers=regulator_auth)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == replayed(ledger, node).as_dict() | {"chain_head": body["chain_head"]}
    assert (body["ok"], body["violations"], body["findings"][0]["seq"]) == (False, 1, seq)
    assert client.get("/v1/audit/replay?company_id=2", headers=regulator_auth).json()["ok"]
    assert client.get("/v1/audit/replay", headers=company_auth).status_code == 403
    bad = client.get("/v1/audit/replay?company_id=0", headers=regulator_auth)
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")


def call(ledger: Ledger, at: int, contact: str) -> UsageEntry:
    result = ledger.checker.check(
        company_id=1, contact=contact, channel=Channel.CALL, record=True, now=at
    )
    assert result.receipt is not None
    with transaction(ledger.engine) as session:
        entry = session.get(UsageEntry, result.receipt.seq)
    assert entry is not None
    return entry


def test_a_call_planted_outside_the_statutory_hours_is_a_violation(
    ledger: Ledger, node: AnvilNode, person: LocalAccount
) -> None:
    grant(ledger, person, terms(1, Channel.CALL, 8, 30 * DAY))
    allowed = call(ledger, START, "+33 6 12 34 56 78")  # Tuesday 10:30 in Paris
    assert allowed.decision == "allowed"
    # 21:00 in Paris: an overseas department would be in its hours, but this number's earlier
    # calls were lawful only in Paris's time (or east of it), where 21:00 is not.
    seq = plant(ledger, allowed, at=START + 630 * 60)

    history = auditor_history(ledger, node)
    log = list(entries_from_database(ledger.engine))
    report = replay(log, history)
    [finding] = report.findings
    assert (finding.seq, finding.kind) == (seq, FindingKind.VIOLATION)
    assert "outside_statutory_hours" in [r["code"] for r in finding.reasons]
    assert replay(log, history, workers=2).as_dict() == report.as_dict()
    # The second pass reads the live log again from the database.
    live = replay_log(auditor_chain(ledger, node), engine=ledger.engine)
    assert live.as_dict() == report.as_dict()


def test_an_overseas_number_is_replayed_in_its_own_time(
    ledger: Ledger, node: AnvilNode, person: LocalAccount
) -> None:
    guadeloupe = "+590 690 12 34 56"
    link(ledger, person.address, guadeloupe)
    grant(ledger, person, terms(1, Channel.CALL, 8, 30 * DAY))
    late_in_paris = START + 330 * 60  # Tuesday 16:00 in Pointe-à-Pitre, 22:00 in Paris
    decisions = [call(ledger, late_in_paris + i * 3600, guadeloupe).decision for i in range(3)]
    assert decisions == ["allowed", "allowed", "allowed"]

    report = replayed(ledger, node)
    assert report.ok, [f.line() for f in report.findings]
    assert report.inferred_place == 3


@pytest.mark.parametrize(
    ("channel", "reasons", "expected"),
    [
        ("sms", ["grant_allows"], (1, ("grant_allows",))),
        (0, '["revoked"]', (0, ("revoked",))),
        ("MESSAGING", [], (3, ())),
    ],
)
def test_an_entry_reads_from_an_export_line_or_a_row(
    channel: object, reasons: object, expected: tuple[int, tuple[str, ...]]
) -> None:
    fields = {"seq": 1, "at": START, "company_id": 1, "contact": "ab" * 32, "decision": "refused"}
    entry = Recorded.of({**fields, "channel": channel, "reasons": reasons, "basis": None})
    assert (entry.channel, entry.reasons) == expected


@pytest.mark.parametrize(
    "broken",
    [{"channel": 9}, {"channel": "fax"}, {"at": "soon"}, {"reasons": "{}"}, {"basis": "[1]"}],
)
def test_an_unreadable_entry_names_its_seq(broken: dict[str, object]) -> None:
    fields = {"seq": 4, "at": START, "company_id": 1, "contact": "ab" * 32, "channel": 1}
    with pytest.raises(InvalidInput, match="unreadable usage entry 4"):
        Recorded.of({**fields, "decision": "allowed", "reasons": "[]", **broken})


def test_an_answer_resting_on_an_opposition_list_must_name_the_list_it_read(
    ledger: Ledger, node: AnvilNode, person: LocalAccount
) -> None:
    national = import_lines(
        ["202,4561111"],
        ListImport(region="US", fmt=ListFormat.DNC),
        cache=ledger.lists,
        source="ftc-test",
        fetched_at=START - DAY,
    ).snapshot.version
    own = import_lines(
        ["+33 6 12 34 56 78"],
        ListImport(region="FR", fmt=ListFormat.LINES, company_id=1),
        cache=ledger.lists,
        source="crm",
        fetched_at=START - DAY,
    ).snapshot.version
    noon_in_new_york = START + 8 * 3600
    asked = [
        ledger.checker.check(
            company_id=1, contact=contact, channel=channel, record=True, now=noon_in_new_york
        )
        for contact, channel in [
            ("+1 212 555 0143", Channel.CALL),  # absent from the national list: allowed
            ("+1 202 456 1111", Channel.CALL),  # on it
            ("+33 6 12 34 56 78", Channel.SMS),  # on the company's own list
        ]
    ]
    assert [r.decision.codes for r in asked] == [
        ["not_on_opposition_list"],
        ["contact_not_linked", "on_opposition_list"],
        ["company_do_not_call"],
    ]
    clean = replayed(ledger, node)
    assert clean.ok, [f.line() for f in clean.findings]
    assert clean.on_lists == 2

    assert asked[0].receipt is not None
    with transaction(ledger.engine) as session:
        allowed = session.get(UsageEntry, asked[0].receipt.seq)
    assert allowed is not None and allowed.list_version == f"{national},{own}"
    # Recorded without the national list, or with the company's own in its place.
    seqs = [
        plant(ledger, allowed, at=noon_in_new_york + 60, list_version=None),
        plant(ledger, allowed, at=noon_in_new_york + 120, list_version=own),
    ]
    found = replayed(ledger, node).findings
    assert [(f.seq, f.kind) for f in found] == [(s, FindingKind.VIOLATION) for s in seqs]
    unavailable = ["contact_not_linked", "opposition_list_unavailable"]
    assert [[r["code"] for r in f.reasons] for f in found] == [unavailable, unavailable]


def test_a_declared_basis_is_judged_again_from_the_facts_the_entry_records(
    ledger: Ledger, node: AnvilNode, person: LocalAccount
) -> None:
    contract = Declared(
        BasisKind.ONGOING_CONTRACT, contract_reference="C-42", subject="energy supply"
    )
    evening = START + 630 * 60  # 21:00 in Paris: a call within a contract is exempt
    result = ledger.checker.check(
        company_id=1,
        contact="+33 6 12 34 56 78",
        channel=Channel.CALL,
        record=True,
        now=evening,
        declared=contract,
    )
    assert result.decision.codes == ["basis_admitted"] and result.receipt is not None
    clean = replayed(ledger, node)
    assert clean.ok and clean.declared == 1

    with transaction(ledger.engine) as session:
        allowed = session.get(UsageEntry, result.receipt.seq)
    assert allowed is not None
    ended = json.dumps({**json.loads(allowed.basis or "{}"), "contract_ends_at": START})
    seq = plant(ledger, allowed, at=evening + 60, basis=ended)
    [finding] = replayed(ledger, node).findings
    assert (finding.seq, finding.kind) == (seq, FindingKind.VIOLATION)
    assert [r["code"] for r in finding.reasons] == ["basis_invalid"]
