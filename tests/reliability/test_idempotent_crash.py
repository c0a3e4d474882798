"""kill -9 of API processes in the middle of idempotent check-and-records: no key is stranded.

Clients record with a fresh Idempotency-Key each while the API processes are killed -9 at
random moments and restarted (the node, started apart, keeps running). Every request that got
no answer is then retried with its same key, and every answered one too. Every key must
answer, with the answer first seen when there was one; the usage log must hold exactly one
entry per key, its hash chain intact; the grant's quota must be exactly consumed, not more.
On SQLite one `serve` process; on PostgreSQL two, killed in turn, sharing the quota.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import col, select

from ledger.audit.verify import verify_chain
from ledger.chain.anvil import DEMO_ACCOUNTS, AnvilNode, anvil_binary
from ledger.consent import wallet
from ledger.db.engine import transaction
from ledger.schema import migrated_engine
from ledger.usage.entries import UsageEntry
from ledger.usage.idempotency import IdempotentRequest
from tests.helpers import NOTICE, PHONE
from tests.servers import postgres_url
from tests.stack import CHECK, Stack, free_port

CONSUMER, CONSUMER_KEY = DEMO_ACCOUNTS[0]
KILLS = 10
SENDERS = 8  # concurrent clients
PAUSE = 0.3  # at most, between a client's requests: hundreds of keys, not tens of thousands
QUOTA = 40  # SMS a year: reached early, so later keys record refusals
LOST_IN_FLIGHT = (
    httpx.RemoteProtocolError,
    httpx.ReadError,
    httpx.WriteError,
    httpx.TimeoutException,
)

try:
    anvil_binary()
except Exception as exc:  # pragma: no cover - only without `npm ci`
    pytest.skip(f"anvil not installed: {exc}", allow_module_level=True)


@dataclass
class Fleet:
    """API processes (`serve`) sharing one node and one database."""

    apis: list[Stack]
    database_url: str

    def up(self) -> list[Stack]:
        return [a for a in self.apis if a.proc is not None and a.proc.poll() is None]


@dataclass
class Tally:
    """What the clients saw, per key, during the kills."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: list[str] = field(default_factory=list)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    unanswered: dict[str, str] = field(default_factory=dict)  # key -> what happened instead

    def seen(self, key: str, outcome: dict[str, Any] | str) -> None:
        with self.lock:
            self.sent.append(key)
            if isinstance(outcome, dict):
                self.answers[key] = outcome
            else:
                self.unanswered[key] = outcome


@pytest.fixture(params=["sqlite", "postgresql"])
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fleet]:
    if request.param == "sqlite":
        urls: Iterator[str] = iter([f"sqlite:///{tmp_path / 'ledger.sqlite3'}"])
        processes = 1
    else:
        urls, processes = postgres_url(), 2
    for url in urls:
        with AnvilNode(data_dir=tmp_path / "node", port=free_port()) as node:
            env = {
                "QL_CHAIN": "rpc",
                "QL_RPC_URL": node.url,
                "QL_DATABASE_URL": url,
                # The clients here are one company's, faster than its per-key limit allows.
                "QL_RATE_LIMIT_PER_MINUTE": "1000000",
            }
            apis = []
            for i in range(processes):
                (tmp_path / f"api{i}").mkdir()
                apis.append(Stack(tmp_path / f"api{i}", command="serve", env=env))
            try:
                for api in apis:  # one after the other: the first deploys the contract
                    api.start()
                first = apis[0]
                first.register_company()
                for api in apis:
                    api.api_key = first.api_key
                first.cli("link", PHONE, CONSUMER)
                wallet.Wallet(first.url, CONSUMER_KEY).grant(
                    company_id=1,
                    channel="sms",
                    max_contacts=QUOTA,
                    period=365 * 86400,
                    notice_hash=NOTICE,
                )
                yield Fleet(apis, url)
            finally:
                for api in apis:
                    api.stop(signal.SIGKILL)


def post(client: httpx.Client, api: Stack, key: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {api.api_key}", "Idempotency-Key": key}
    return client.post(f"{api.url}/v1/checks", json=CHECK, headers=headers)


def sender(fleet: Fleet, tally: Tally, stop: threading.Event, name: str) -> None:
    """Records with a new key each time; a request that never connected is sent again."""
    rng = random.Random(name)
    with httpx.Client(timeout=20) as client:
        for n in range(1_000_000):
            if stop.is_set():
                return
            key = f"{name}-{n}"
            while not stop.is_set():
                live = fleet.up()
                if not live:
                    time.sleep(0.05)
                    continue
                try:
                    response = post(client, rng.choice(live), key)
                except httpx.ConnectError:  # never delivered: nothing to learn, send it again
                    time.sleep(0.05)
                    continue
                except LOST_IN_FLIGHT as exc:
                    tally.seen(key, type(exc).__name__)
                    break
                ok = response.status_code == 200
                tally.seen(key, response.json() if ok else f"HTTP {response.status_code}")
                break
            time.sleep(rng.uniform(0, PAUSE))


def retry(client: httpx.Client, fleet: Fleet, key: str) -> httpx.Response:
    """The same key again, on any process, until it answers (a few attempts at most)."""
    for attempt in range(5):
        response = post(client, fleet.apis[attempt % len(fleet.apis)], key)
        if response.status_code == 200:
            return response
        time.sleep(0.2)
    return response


def test_every_key_answers_once_after_api_processes_are_killed(fleet: Fleet) -> None:
    rng = random.Random(12)
    tally, stop = Tally(), threading.Event()
    senders = [
        threading.Thread(target=sender, args=(fleet, tally, stop, f"s{i}")) for i in range(SENDERS)
    ]
    for thread in senders:
        thread.start()
    restarts: list[float] = []
    began = time.monotonic()
    try:
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.2, 1.2))  # a random moment, under load
            victim = rng.choice(fleet.apis)
            victim.stop(signal.SIGKILL)
            killed = time.monotonic()
            victim.start()
            restarts.append(time.monotonic() - killed)
    finally:
        stop.set()
        for thread in senders:
            thread.join()

    storm = time.monotonic() - began
    keys = set(tally.sent)
    assert len(keys) == len(tally.sent)  # each key sent once before the retries
    unanswered = dict(tally.unanswered)
    with ThreadPoolExecutor(SENDERS) as pool, httpx.Client(timeout=20) as client:
        retried = dict(
            zip(unanswered, pool.map(lambda k: retry(client, fleet, k), unanswered), strict=True)
        )
        replays = dict(
            zip(
                tally.answers,
                pool.map(lambda k: retry(client, fleet, k), tally.answers),
                strict=True,
            )
        )

    # Every key answers: no key stranded at 409, none answering something else.
    stranded = {k: r.status_code for k, r in retried.items() if r.status_code != 200}
    assert not stranded, stranded
    recovered = sum(r.headers.get("Idempotent-Replayed") == "true" for r in retried.values())
    # A key answered before answers the same, as a replay.
    for key, first in tally.answers.items():
        again = replays[key]
        assert again.status_code == 200, (key, again.text)
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json() == first, key
    checked = time.monotonic() - began - storm
    final = {**tally.answers, **{k: r.json() for k, r in retried.items()}}
    assert set(final) == keys

    # Exactly one entry per key: the receipts are the log, one to one; the chain is intact.
    engine = migrated_engine(fleet.database_url)
    with transaction(engine) as session:
        entries = session.exec(select(UsageEntry).order_by(col(UsageEntry.seq))).all()
        stored = session.exec(select(IdempotentRequest)).all()
        assert verify_chain(session) is None
    engine.dispose()
    receipts = [answer["receipt"]["seq"] for answer in final.values()]
    assert sorted(receipts) == [e.seq for e in entries]
    duplicates = len(entries) - len(keys)
    assert duplicates == 0
    assert {r.key for r in stored} == keys and all(r.response is not None for r in stored)
    # The quota is consumed exactly: every allowed answer is an allowed entry, QUOTA in all.
    allowed = sum(answer["allowed"] for answer in final.values())
    assert allowed == sum(e.decision == "allowed" for e in entries) == QUOTA

    print(
        f"\n{len(fleet.apis)} API process(es), {KILLS} kill -9: {len(keys)} keyed requests, "
        f"{len(unanswered)} unanswered before retry "
        f"({dict(Counter(unanswered.values()))}), {len(retried) - len(stranded)} answered on "
        f"retry with the same key ({recovered} of them replays of a record that had committed), "
        f"{len(replays)} answered keys replayed identically, {len(entries)} log entries, "
        f"duplicates {duplicates}, allowed {allowed} of quota {QUOTA}; kills over {storm:.0f} s, "
        f"restart to healthy {max(restarts):.1f} s at most, retries and replays {checked:.0f} s"
    )
