"""Two `quota-ledger serve` processes on one PostgreSQL database and one node: one indexer.

Exactly one process leads the indexer and both say which in `/v1/health`; the follower answers
checks from the index the leader writes; kill -9 of the leader hands the role over to the
follower within a few seconds, and the index keeps following the chain.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ledger.chain.anvil import DEMO_ACCOUNTS, AnvilNode, anvil_binary
from ledger.consent import wallet
from tests.helpers import NOTICE, PHONE
from tests.servers import postgres_url
from tests.stack import Stack, free_port

CONSUMER, CONSUMER_KEY = DEMO_ACCOUNTS[0]
OTHER, OTHER_KEY = DEMO_ACCOUNTS[1]
OTHER_PHONE = "+33 6 98 76 54 32"
# Followers try the lock every QL_LEADER_RETRY_SECONDS (1 s); the rest is slack for a busy CI.
HANDOVER_WITHIN = 10.0

try:
    anvil_binary()
except Exception as exc:  # pragma: no cover - only without `npm ci`
    pytest.skip(f"anvil not installed: {exc}", allow_module_level=True)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[AnvilNode]:
    with AnvilNode(data_dir=tmp_path / "node", port=free_port()) as started:
        yield started


@pytest.fixture
def database() -> Iterator[str]:
    yield from postgres_url()


@pytest.fixture
def pair(tmp_path: Path, node: AnvilNode, database: str) -> Iterator[tuple[Stack, Stack]]:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    env = {"QL_CHAIN": "rpc", "QL_RPC_URL": node.url, "QL_DATABASE_URL": database}
    first, second = (Stack(tmp_path / name, command="serve", env=env) for name in ("a", "b"))
    try:
        first.start()  # deploys the contract; the second finds it
        second.start()
        yield first, second
    finally:
        for stack in (first, second):
            stack.stop()


def leaders(*stacks: Stack) -> list[dict[str, object]]:
    return [stack.health()[1]["leader"] for stack in stacks]


def wait_for_one_leader(*stacks: Stack, within: float) -> tuple[Stack, list[Stack]]:
    """The stack that leads, once exactly one says it does and every other names it."""
    deadline = time.monotonic() + within
    while True:
        seen = leaders(*stacks)
        leading = [s for s, leader in zip(stacks, seen, strict=True) if leader["this_process"]]
        if len(leading) == 1 and len({leader["id"] for leader in seen}) == 1:
            return leading[0], [s for s in stacks if s is not leading[0]]
        assert len(leading) <= 1, seen  # never two leaders at once
        assert time.monotonic() < deadline, seen
        time.sleep(0.05)


def mine(node: AnvilNode, blocks: int) -> int:
    """Mines empty blocks; returns the new head."""
    rpc = {"jsonrpc": "2.0", "id": 1}
    httpx.post(node.url, json={**rpc, "method": "anvil_mine", "params": [hex(blocks)]})
    head = httpx.post(node.url, json={**rpc, "method": "eth_blockNumber", "params": []})
    return int(head.json()["result"], 16)


def test_one_process_leads_the_indexer_and_the_follower_takes_over(
    pair: tuple[Stack, Stack], node: AnvilNode
) -> None:
    first, second = pair
    leader, (follower,) = wait_for_one_leader(first, second, within=HANDOVER_WITHIN)
    assert "this process leads the indexer" in leader.log.read_text()
    assert "this process leads the indexer" not in follower.log.read_text()
    led = leader.health()[1]["leader"]
    assert leader.proc is not None and led["pid"] == leader.proc.pid
    assert follower.health()[1]["leader"] == {**led, "this_process": False}

    leader.register_company()
    follower.api_key = leader.api_key
    leader.cli("link", PHONE, CONSUMER)
    wallet.Wallet(leader.url, CONSUMER_KEY).grant(
        company_id=1, channel="sms", max_contacts=5, period=365 * 86400, notice_hash=NOTICE
    )
    # The follower answers from the index the leader writes; the quota is one for both.
    assert follower.check()["allowed"]
    assert leader.check()["allowed"]

    leader.stop(signal.SIGKILL)
    killed = time.monotonic()
    new_leader, _ = wait_for_one_leader(follower, within=HANDOVER_WITHIN)
    handover = time.monotonic() - killed
    assert new_leader is follower
    assert "this process leads the indexer" in follower.log.read_text()

    # The new leader's loop follows the chain: blocks nobody relayed get indexed.
    head = mine(node, 3)
    deadline = time.monotonic() + HANDOVER_WITHIN
    while (index := follower.health()[1]["index_block"]) is None or index < head:
        assert time.monotonic() < deadline, follower.health()
        time.sleep(0.05)
    following = time.monotonic() - killed

    # A grant relayed after the handover is seen by checks.
    follower.cli("link", OTHER_PHONE, OTHER)
    wallet.Wallet(follower.url, OTHER_KEY).grant(
        company_id=1, channel="sms", max_contacts=1, period=365 * 86400, notice_hash=NOTICE
    )
    auth = {"Authorization": f"Bearer {follower.api_key}"}
    ask = {"contact": OTHER_PHONE, "channel": "sms", "record": True}
    answers = [
        httpx.post(f"{follower.url}/v1/checks", json=ask, headers=auth, timeout=30).json()
        for _ in range(2)
    ]
    assert [a["allowed"] for a in answers] == [True, False], answers
    assert follower.check()["allowed"]  # the first consumer's count went on: 3 of 5
    print(
        f"\nleader killed -9: follower leads after {handover:.2f} s, "
        f"its index at the head after {following:.2f} s"
    )
