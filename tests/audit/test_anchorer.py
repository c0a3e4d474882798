"""Anchoring the usage log on a real anvil node: when the triggers fire, one transaction per
anchor, none with nothing new, one anchorer among several processes, failures retried, a log
that lost anchored entries never anchored over, and `quota-ledger anchor`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ledger.audit import merkle
from ledger.audit.anchorer import Anchored, Anchorer, anchor_once
from ledger.audit.anchors import LogBehindAnchor, LogDiverged, anchors_from_chain
from ledger.chain.anvil import AnvilNode, anvil_binary
from ledger.chain.client import Chain, QueryRefused, RawLog
from ledger.cli import app
from ledger.db.leader import Elected, LeaderLock
from ledger.runtime import Ledger
from ledger.settings import DEV_OPERATOR_KEY
from tests.audit.anchoring import (
    append,
    assert_chain_anchors_log,
    database_url,
    leaves,
    open_ledger,
    sent,
)
from tests.servers import postgres_url
from tests.stack import free_port

try:
    anvil_binary()
except Exception as exc:  # pragma: no cover - only without `npm ci`
    pytest.skip(f"anvil not installed: {exc}", allow_module_level=True)

pytestmark = pytest.mark.anvil


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path, node: AnvilNode) -> Iterator[Ledger]:
    """A ledger on the node over SQLite and, when reachable, PostgreSQL (else skipped)."""
    urls = iter([None]) if request.param == "sqlite" else postgres_url()
    for url in urls:
        opened = open_ledger(tmp_path, node.url, database_url=url)
        yield opened
        opened.engine.dispose()


class Clock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def anchorer(ledger: Ledger, clock: Clock, *, entries: int, seconds: float) -> Anchorer:
    return Anchorer(
        ledger.chain,
        ledger.engine,
        log_id=ledger.settings.log_id,
        every_entries=entries,
        every_seconds=seconds,
        clock=clock,
    )


def wait_until(condition: Callable[[], bool], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.05)


def test_n_entries_are_anchored_in_one_transaction_however_many_wait(ledger: Ledger) -> None:
    clock = Clock()
    a = anchorer(ledger, clock, entries=5, seconds=0)
    append(ledger, 4)
    before = sent(ledger.chain)
    assert a.tick() is None and sent(ledger.chain) == before  # 4 of 5: not yet

    append(ledger, 1)
    done = a.tick()
    assert done is not None and done.tree_size == 5 and sent(ledger.chain) == before + 1
    assert_chain_anchors_log(ledger, 5)

    append(ledger, 300)  # more than a stored subtree of 256 leaves: the tree is extended
    done = a.tick()
    assert done is not None and done.tree_size == 305 and sent(ledger.chain) == before + 2
    assert_chain_anchors_log(ledger, 305)
    receipt = ledger.chain.w3.eth.get_transaction_receipt(done.tx_hash)
    assert receipt["blockNumber"] == done.block_number

    assert a.tick() is None and sent(ledger.chain) == before + 2  # nothing new


def test_whatever_waited_t_seconds_is_anchored(ledger: Ledger) -> None:
    clock = Clock()
    a = anchorer(ledger, clock, entries=1000, seconds=10)
    append(ledger, 3)
    clock.now += 9.9
    assert a.tick() is None
    clock.now += 0.1
    done = a.tick()
    assert done is not None and done.tree_size == 3
    assert_chain_anchors_log(ledger, 3)

    append(ledger, 1)
    clock.now += 9
    assert a.tick() is None  # the time counts from the last anchor
    clock.now += 1
    done = a.tick()
    assert done is not None and done.tree_size == 4

    before = sent(ledger.chain)
    clock.now += 3600
    assert a.tick() is None and sent(ledger.chain) == before  # nothing new, however long


@pytest.mark.parametrize(
    ("entries", "seconds", "appended", "waited"),
    [
        (0, 10.0, 2000, 5.0),  # the count trigger is off: 2,000 entries wait for the time
        (5, 0.0, 4, 1e6),  # the time trigger is off: 4 entries wait for the fifth
        (0, 0.0, 50, 1e6),  # both off: only `quota-ledger anchor` anchors
    ],
)
def test_a_trigger_set_to_zero_never_fires(
    ledger: Ledger, entries: int, seconds: float, appended: int, waited: float
) -> None:
    clock = Clock()
    a = anchorer(ledger, clock, entries=entries, seconds=seconds)
    append(ledger, appended)
    clock.now += waited
    before = sent(ledger.chain)
    assert a.tick() is None
    assert sent(ledger.chain) == before and ledger.chain.anchor(1)[1] == 0


def test_anchoring_now_sends_nothing_when_nothing_is_new(ledger: Ledger) -> None:
    before = sent(ledger.chain)
    assert anchor_once(ledger.chain, ledger.engine, log_id=1) is None  # an empty log
    append(ledger, 2)
    done = anchor_once(ledger.chain, ledger.engine, log_id=1)
    assert done is not None and done.tree_size == 2
    assert anchor_once(ledger.chain, ledger.engine, log_id=1) is None
    assert sent(ledger.chain) == before + 1


def test_the_command_anchoring_while_the_leader_does_is_harmless(
    ledger: Ledger, tmp_path: Path, node: AnvilNode
) -> None:
    other = open_ledger(tmp_path, node.url, database_url=database_url(ledger))
    try:
        append(ledger, 600)  # two stored subtrees of 256: both processes extend the tree
        start = threading.Barrier(2)
        results: list[Anchored | None | BaseException] = []

        def run(process: Ledger) -> None:
            start.wait()
            try:
                results.append(anchor_once(process.chain, process.engine, log_id=1))
            except BaseException as exc:
                results.append(exc)

        threads = [threading.Thread(target=run, args=(p,)) for p in (ledger, other)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        written = [r for r in results if isinstance(r, Anchored)]
        assert len(results) == 2 and len(written) >= 1, results
        assert all(r is None or isinstance(r, Anchored) for r in results), results
        assert_chain_anchors_log(ledger, 600)
    finally:
        other.engine.dispose()


def test_a_log_shorter_than_the_chains_anchor_is_never_anchored_over(
    ledger: Ledger, tmp_path: Path, node: AnvilNode, caplog: pytest.LogCaptureFixture
) -> None:
    append(ledger, 10)
    assert anchor_once(ledger.chain, ledger.engine, log_id=1) is not None
    # The database is restored from a backup older than the anchor: the same contract, 4 entries.
    restored = open_ledger(tmp_path, node.url, "restored", contract_address=ledger.chain.address)
    try:
        append(restored, 4)
        with pytest.raises(LogBehindAnchor, match="has 4 entries but the chain anchors 10"):
            anchor_once(restored.chain, restored.engine, log_id=1)
        before = sent(restored.chain)
        a = anchorer(restored, Clock(), entries=1, seconds=0)
        with caplog.at_level(logging.ERROR, logger="ledger.audit.anchorer"):
            assert a.tick() is None and a.tick() is None
        refusals = [r for r in caplog.records if "has 4 entries" in r.getMessage()]
        assert len(refusals) == 1 and "the chain anchors 10" in refusals[0].getMessage()
        assert refusals[0].levelno == logging.ERROR
        assert sent(restored.chain) == before and restored.chain.anchor(1)[1] == 10
    finally:
        restored.engine.dispose()


def test_a_log_rewritten_under_its_anchor_is_not_anchored_over(
    ledger: Ledger, tmp_path: Path, node: AnvilNode, caplog: pytest.LogCaptureFixture
) -> None:
    append(ledger, 10)
    assert anchor_once(ledger.chain, ledger.engine, log_id=1) is not None
    # Another log of 12 entries (other contents) on the same contract: it grows past the anchor
    # but does not extend it.
    rewritten = open_ledger(tmp_path, node.url, "rewritten", contract_address=ledger.chain.address)
    try:
        append(rewritten, 12, company_id=2)
        with pytest.raises(LogDiverged):
            anchor_once(rewritten.chain, rewritten.engine, log_id=1)
        a = anchorer(rewritten, Clock(), entries=1, seconds=0)
        with caplog.at_level(logging.ERROR, logger="ledger.audit.anchorer"):
            assert a.tick() is None
        assert "first 10 entries no longer have the root" in caplog.text
        assert rewritten.chain.anchor(1)[1] == 10
    finally:
        rewritten.engine.dispose()


def test_a_failed_anchor_is_logged_without_secrets_and_retried(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "0123456789abcdef0123456789abcdef"
    down = Chain.connect(
        f"http://127.0.0.1:{free_port()}/v3/{secret}",
        operator_key=DEV_OPERATOR_KEY,
        timeout=1,
        attempts=1,
    )
    down.use(ledger.chain.address)
    a = Anchorer(down, ledger.engine, log_id=1, every_entries=1, every_seconds=0)
    append(ledger, 3)
    with caplog.at_level(logging.DEBUG, logger="ledger.audit.anchorer"):
        assert a.tick() is None and a.tick() is None
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1  # once, not at every tick
        assert "anchoring usage log 1 failed" in warnings[0].getMessage()
        assert secret not in caplog.text

        a.chain = ledger.chain  # the node is back
        done = a.tick()
    assert done is not None and done.tree_size == 3
    assert "anchoring usage log 1 works again" in caplog.text
    assert_chain_anchors_log(ledger, 3)


def test_of_two_processes_only_the_leader_anchors_and_the_other_takes_over(
    ledger: Ledger, tmp_path: Path, node: AnvilNode
) -> None:
    # A second process on the same database and contract.
    other = open_ledger(tmp_path, node.url, database_url=database_url(ledger))
    anchored: dict[str, list[int]] = {"first": [], "second": []}
    rounds: dict[str, int] = {"first": 0, "second": 0}

    def elect(name: str, process: Ledger) -> Elected:
        a = Anchorer(process.chain, process.engine, log_id=1, every_entries=1, every_seconds=0)

        def work(stop: threading.Event) -> None:
            rounds[name] += 1
            done: Anchored | None = a.tick(stop)
            if done is not None:
                anchored[name].append(done.tree_size)

        return Elected(LeaderLock(process.engine, "anchorer"), work, interval=0.05, retry=0.1)

    first = elect("first", ledger)
    first.start()
    wait_until(lambda: rounds["first"] > 0)
    second = elect("second", other)
    second.start()
    try:
        for size in (3, 7, 12):
            append(ledger, size - len(leaves(ledger)))
            wait_until(lambda size=size: anchored["first"][-1:] == [size])
        assert anchored == {"first": [3, 7, 12], "second": []} and rounds["second"] == 0

        first.stop()  # the leader goes away: the other process takes the role and anchors
        append(other, 2)
        wait_until(lambda: bool(anchored["second"]))
        assert anchored["second"] == [14] and anchored["first"] == [3, 7, 12]
    finally:
        first.stop()
        second.stop()
        other.engine.dispose()
    # Every anchor on chain is one the leader wrote, and each extends the one before.
    on_chain = anchors_from_chain(ledger.chain, 1)
    assert [x.tree_size for x in on_chain] == [3, 7, 12, 14]
    log = leaves(ledger)
    assert [x.root for x in on_chain] == [merkle.root(log[: x.tree_size]) for x in on_chain]


def test_up_and_serve_anchor_in_the_background(tmp_path: Path, node: AnvilNode) -> None:
    ledger = open_ledger(tmp_path, node.url, anchor_every_entries=0, anchor_every_seconds=0.2)
    try:
        elected = ledger.anchor_in_background()
        assert elected is not None
        try:
            append(ledger, 3)
            wait_until(lambda: ledger.chain.anchor(1)[1] == 3)
            assert_chain_anchors_log(ledger, 3)
        finally:
            elected.stop()
    finally:
        ledger.engine.dispose()
    off = open_ledger(tmp_path, node.url, "off", anchor_every_entries=0, anchor_every_seconds=0)
    try:
        assert off.anchor_in_background() is None  # both triggers off: nothing runs
    finally:
        off.engine.dispose()


def test_a_log_the_verifier_found_broken_is_not_anchored(tmp_path: Path, node: AnvilNode) -> None:
    ledger = open_ledger(tmp_path, node.url, anchor_every_entries=1, anchor_every_seconds=0)
    try:
        append(ledger, 3)
        with ledger.engine.begin() as conn:  # an entry edited behind the log's back
            conn.exec_driver_sql("DROP TRIGGER usage_entry_no_update")
            conn.exec_driver_sql("UPDATE usage_entry SET decision = 'refused' WHERE seq = 2")
        assert ledger.integrity.walk() is not None
        before = sent(ledger.chain)
        elected = ledger.anchor_in_background()
        assert elected is not None
        try:
            wait_until(lambda: elected.lock.held)
            time.sleep(1.5)  # a few rounds of the leader
        finally:
            elected.stop()
        assert sent(ledger.chain) == before and ledger.chain.anchor(1)[1] == 0
    finally:
        ledger.engine.dispose()


def test_the_anchor_command_anchors_now_and_says_when_nothing_is_new(
    ledger: Ledger, tmp_path: Path, node: AnvilNode
) -> None:
    env = {
        "QL_CHAIN": "rpc",
        "QL_RPC_URL": node.url,
        "QL_DATA_DIR": str(tmp_path),
        "QL_DATABASE_URL": database_url(ledger),
        "COLUMNS": "250",
    }
    runner = CliRunner()
    result = runner.invoke(app, ["anchor"], env=env)
    assert result.exit_code == 0, result.output
    assert "usage log 1: nothing new to anchor" in result.output

    append(ledger, 6)
    result = runner.invoke(app, ["anchor"], env=env)
    assert result.exit_code == 0, result.output
    root, size, _ = ledger.chain.anchor(1)
    assert size == 6 and root == merkle.root(leaves(ledger))
    anchor = anchors_from_chain(ledger.chain, 1)[-1]
    assert (
        f"usage log 1 anchored: tree size 6, root {root.hex()}, block {anchor.block_number}, "
        f"transaction {anchor.tx_hash}"
    ) in result.output

    result = runner.invoke(app, ["anchor"], env=env)
    assert "nothing new to anchor" in result.output and ledger.chain.anchor(1)[1] == 6


class RangeLimitedChain(Chain):
    """A node that refuses log queries over more than ``most`` blocks, as hosted nodes do."""

    most = 2
    asked: list[tuple[int, int]]

    def logs(self, from_block: int, to_block: int, **kw: Any) -> list[RawLog]:
        self.asked.append((from_block, to_block))
        if to_block - from_block + 1 > self.most:
            raise QueryRefused("query returned more than 10000 results")
        return super().logs(from_block, to_block, **kw)


def test_anchors_read_from_the_chain_are_the_logs_own_whatever_the_range_allowed(
    ledger: Ledger,
) -> None:
    chain = ledger.chain
    for size in (2, 5):
        append(ledger, size - len(leaves(ledger)))
        anchor_once(chain, ledger.engine, log_id=1)
    chain.transact(chain.contract.functions.anchorRoot(7, 3, b"\x07" * 32))  # another log
    everything = anchors_from_chain(chain, 1)
    assert [(a.log_id, a.tree_size) for a in everything] == [(1, 2), (1, 5)]
    assert [a.root for a in everything] == [merkle.root(leaves(ledger)[:n]) for n in (2, 5)]
    assert [(a.log_id, a.tree_size, a.root) for a in anchors_from_chain(chain, 7)] == [
        (7, 3, b"\x07" * 32)
    ]

    limited = RangeLimitedChain(chain.w3, chain.operator, chain.address)
    limited.asked = []
    assert anchors_from_chain(limited, 1, chunk_blocks=64) == everything
    refused = [r for r in limited.asked if r[1] - r[0] + 1 > 2]
    assert refused and all(r[1] - r[0] + 1 <= 2 for r in limited.asked[len(refused) :])
