"""The chain client and the event index against a real anvil node.

Reorgs of depth 1 to 5 and a chain that got shorter, an indexer killed mid-sync, a node that
stops and comes back, 50 concurrent relays, a transaction that reverts once mined, a node
reached by WebSocket, and a node that drops requests.
"""

from __future__ import annotations

import http.server
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from bench.workload import calldata, commitment, fill, terms
from ledger.chain.anvil import AnvilNode, anvil_binary
from ledger.chain.client import Chain
from ledger.domain.channels import Channel
from ledger.domain.errors import ChainUnavailable, StaleVersion
from ledger.index.indexer import Indexer
from ledger.runtime import Ledger
from ledger.schema import migrated_engine
from ledger.settings import DEV_OPERATOR_KEY, Settings
from tests.helpers import PHONE, grant, link, signed_grant, sms_terms
from tests.index.index_checks import assert_index_matches_chain, chain_keys, dump, logged

try:
    anvil_binary()
except Exception as exc:  # pragma: no cover - only without `npm ci`
    pytest.skip(f"anvil not installed: {exc}", allow_module_level=True)

pytestmark = pytest.mark.anvil


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def node(tmp_path: Path) -> Iterator[AnvilNode]:
    anvil = AnvilNode(data_dir=tmp_path / "anvil", port=free_port(), state_interval=3600)
    anvil.start()
    yield anvil
    anvil.stop()


def open_ledger(tmp_path: Path, url: str, name: str = "ledger", **overrides: Any) -> Ledger:
    settings = Settings(
        chain="rpc",  # type: ignore[arg-type]
        rpc_url=url,
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / f'{name}.sqlite3'}",
        **overrides,
    )
    return Ledger.open(settings)


def rpc(chain: Chain, method: str, *params: Any) -> Any:
    response = chain.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]
    assert "error" not in response, response
    return response["result"]


def assert_rebuild_is_identical(ledger: Ledger, tmp_path: Path, name: str = "rebuilt") -> None:
    fresh = migrated_engine(f"sqlite:///{tmp_path / f'{name}.sqlite3'}")
    Indexer(ledger.chain, fresh, start_block=ledger.indexer.start_block).sync()
    assert dump(fresh) == dump(ledger.engine)


def check(ledger: Ledger):  # type: ignore[no-untyped-def]
    return ledger.checker.check(company_id=1, contact=PHONE, channel=Channel.SMS).decision


# ----- reorgs -----


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_a_reorg_leaves_the_index_equal_to_the_canonical_chain(
    tmp_path: Path, node: AnvilNode, depth: int
) -> None:
    ledger = open_ledger(tmp_path, node.url)
    chain = ledger.chain
    consumers = chain.w3.eth.accounts[1:4]
    fill(chain, consumers, events=250, companies=6, batch=8)
    ledger.indexer.sync()
    head = chain.head().number
    orphaned = chain_keys(chain, head).logs - chain_keys(chain, head - depth).logs
    assert orphaned

    # The last `depth` blocks are replaced by blocks that change the same keys differently.
    replacement = []
    for offset in range(depth):
        calls = [
            calldata("setGrant", terms(1 + offset, offset % 4, 7 + offset)),
            calldata("setGlobalCap", 40 + offset, 3600),
        ]
        if offset % 2:
            calls.append(calldata("revokeAll"))
        tx = {
            "from": consumers[offset % 3],
            "to": chain.address,
            "data": "0x" + calldata("multicall", calls).hex(),
            "gas": hex(5_000_000),
        }
        replacement.append([tx, offset])
    links = [calldata("attestLink", consumers[0], commitment(10_000 + k)) for k in range(3)]
    link_tx = {
        "from": chain.operator.address,
        "to": chain.address,
        "data": "0x" + calldata("multicall", links).hex(),
        "gas": hex(5_000_000),
    }
    replacement.append([link_tx, depth - 1])
    rpc(chain, "anvil_reorg", depth, replacement)
    assert chain.head().number == head

    # Same height, other blocks: until the indexer has rolled back, checks must not trust it.
    assert ledger.state.lag().stale
    report = ledger.indexer.sync()
    assert (report.reorgs, report.rolled_back_to) == (1, head - depth)
    keys = assert_index_matches_chain(ledger.state, chain)
    indexed = logged(ledger.engine)
    assert not orphaned & set(indexed)  # nothing of the lost blocks remains
    assert set(indexed) == keys.logs and len(indexed) == len(keys.logs)
    assert_rebuild_is_identical(ledger, tmp_path)


def test_a_chain_that_got_shorter_is_followed_back_and_forward(
    tmp_path: Path, node: AnvilNode
) -> None:
    ledger = open_ledger(tmp_path, node.url)
    chain = ledger.chain
    consumers = chain.w3.eth.accounts[1:3]
    fill(chain, consumers, events=60, companies=4, batch=4)
    snapshot = rpc(chain, "evm_snapshot")
    fork = chain.head().number
    fill(chain, consumers, events=60, companies=4, batch=4, register=False)
    ledger.indexer.sync()
    rpc(chain, "evm_revert", snapshot)  # the node is now behind the index
    assert chain.head().number == fork
    lag = ledger.state.lag()
    assert lag.stale and "reorganised" in lag.detail
    fill(chain, consumers[::-1], events=120, companies=4, batch=6, register=False)  # longer, other
    report = ledger.indexer.sync()
    assert report.reorgs == 1 and report.rolled_back_to == fork
    assert_index_matches_chain(ledger.state, chain)
    assert_rebuild_is_identical(ledger, tmp_path)


# ----- restarts -----


def test_an_indexer_killed_mid_sync_resumes_without_duplicates_or_gaps(
    tmp_path: Path, node: AnvilNode
) -> None:
    ledger = open_ledger(tmp_path, node.url)
    chain = ledger.chain
    fill(chain, chain.w3.eth.accounts[1:4], events=900, companies=8, batch=8)
    head = chain.head().number
    database = tmp_path / "follower.sqlite3"
    env = {
        **os.environ,
        "QL_CHAIN": "rpc",
        "QL_RPC_URL": node.url,
        "QL_CONTRACT_ADDRESS": chain.address,
        "QL_DATABASE_URL": f"sqlite:///{database}",
        "QL_DATA_DIR": str(tmp_path / "follower"),
        "QL_INDEX_MAX_CHUNK_BLOCKS": "1",  # one transaction per block: many points to die at
    }
    command = [sys.executable, "-m", "ledger.cli", "index", "--once"]
    log = tmp_path / "index.log"
    with log.open("wb") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    reached = _wait_for_checkpoint(database, proc, log, above=head // 3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert reached < head, "the indexer finished before it could be killed"

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    follower = migrated_engine(f"sqlite:///{database}")
    indexed = logged(follower)
    assert len(indexed) == len(set(indexed))  # no duplicates
    assert set(indexed) == chain_keys(chain, head).logs  # no gaps
    rebuilt = migrated_engine(f"sqlite:///{tmp_path / 'rebuilt.sqlite3'}")
    Indexer(chain, rebuilt, start_block=0).sync()
    assert dump(follower) == dump(rebuilt)


def _wait_for_checkpoint(
    database: Path, proc: subprocess.Popen[bytes], log: Path, *, above: int
) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        if database.exists():
            try:
                with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1) as db:
                    row = db.execute("SELECT block_number FROM ix_checkpoint").fetchone()
            except sqlite3.OperationalError:  # not created yet, or busy
                row = None
            if row is not None and row[0] > above:
                return int(row[0])
        time.sleep(0.005)
    raise AssertionError("the indexer never got going")


def test_a_stopped_node_refuses_checks_as_stale_then_recovers(
    tmp_path: Path, node: AnvilNode, consumer: LocalAccount
) -> None:
    ledger = open_ledger(tmp_path, node.url, index_poll_interval=0.05)
    ledger.relayer.register_company(1, "Acme SMS", ledger.chain.operator.address)
    link(ledger, consumer.address, PHONE)
    grant(ledger, consumer, sms_terms())
    ledger.state.head_ttl = 0.0  # ask the node on every check: the first one after the stop
    follower = ledger.follow_index()
    try:
        assert check(ledger).allowed
        node.stop()
        refused = check(ledger)
        assert refused.codes == ["ledger_stale"]
        assert "node unreachable" in refused.reasons[0].message
        node.start()
        deadline = time.monotonic() + 20
        while not (decision := check(ledger)).allowed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert decision.allowed, decision.codes
    finally:
        follower.stop()


# ----- relaying -----


def test_fifty_concurrent_relays_from_one_operator_key_are_all_mined(
    tmp_path: Path, node: AnvilNode
) -> None:
    ledger = open_ledger(tmp_path, node.url)
    ledger.relayer.register_company(1, "Acme SMS", ledger.chain.operator.address)
    accounts: list[LocalAccount] = [Account.create() for _ in range(50)]
    signed = [signed_grant(ledger, a, sms_terms()) for a in accounts]
    first_nonce = ledger.chain.w3.eth.get_transaction_count(ledger.chain.operator.address)

    def relay(i: int) -> Any:
        return ledger.relayer.relay(*signed[i])

    with ThreadPoolExecutor(max_workers=50) as pool:
        receipts = list(pool.map(relay, range(50)))
    assert all(r["status"] == 1 for r in receipts)
    nonces = sorted(
        ledger.chain.w3.eth.get_transaction(r["transactionHash"])["nonce"] for r in receipts
    )
    assert nonces == list(range(first_nonce, first_nonce + 50))
    block = ledger.state.head().number  # each relay returned once the index had its block
    assert all(ledger.state.grant(a.address, 1, Channel.SMS, block).active for a in accounts)


def test_a_relay_that_reverts_once_mined_names_the_contract_error(
    tmp_path: Path, node: AnvilNode, consumer: LocalAccount
) -> None:
    ledger = open_ledger(tmp_path, node.url)
    chain = ledger.chain
    ledger.relayer.register_company(1, "Acme SMS", chain.operator.address)
    message, signature = signed_grant(ledger, consumer, sms_terms())
    rpc(chain, "evm_setAutomine", False)
    outcomes: list[Any] = []

    def relay() -> None:
        try:
            outcomes.append(ledger.relayer.relay(message, signature))
        except Exception as exc:
            outcomes.append(exc)

    # Both relays pass simulation against the same state; only one can be first in the block.
    threads = [threading.Thread(target=relay) for _ in range(2)]
    for t in threads:
        t.start()
    deadline_at = time.monotonic() + 20
    while int(rpc(chain, "txpool_status")["pending"], 16) < 2:
        assert time.monotonic() < deadline_at, "the two relays were not both sent"
        time.sleep(0.01)
    rpc(chain, "evm_mine")
    rpc(chain, "evm_setAutomine", True)
    for t in threads:
        t.join(30)
    errors = [o for o in outcomes if isinstance(o, Exception)]
    assert len(outcomes) == 2 and len(errors) == 1, outcomes
    assert isinstance(errors[0], StaleVersion)  # decoded from the replayed call, not "reverted"
    (receipt,) = [o for o in outcomes if not isinstance(o, Exception)]
    mined = chain.w3.eth.get_block(receipt["blockNumber"])
    statuses = sorted(
        chain.w3.eth.get_transaction_receipt(h)["status"] for h in mined["transactions"]
    )
    assert statuses == [0, 1]


def test_a_node_reached_by_websocket_serves_relays_and_the_index(
    tmp_path: Path, node: AnvilNode, consumer: LocalAccount
) -> None:
    ledger = open_ledger(tmp_path, node.url.replace("http://", "ws://"))
    ledger.relayer.register_company(1, "Acme SMS", ledger.chain.operator.address)
    link(ledger, consumer.address, PHONE)
    grant(ledger, consumer, sms_terms())
    assert check(ledger).allowed
    assert_index_matches_chain(ledger.state, ledger.chain)


class FlakyProxy:
    """Forwards JSON-RPC to the node, but mistreats the first calls of chosen methods.

    ``drop`` closes the connection before forwarding; ``lose`` forwards, then closes the
    connection without answering (the node acted, the client never heard); ``busy`` answers 503.
    """

    def __init__(self, target: str, plan: dict[str, list[str]]) -> None:
        self.target = target
        self.plan = {method: list(actions) for method, actions in plan.items()}
        self.seen: list[str] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["content-length"]))
                method = httpx.Response(200, content=body).json().get("method", "")
                actions = proxy.plan.get(method, [])
                action = actions.pop(0) if actions else "pass"
                proxy.seen.append(f"{method}:{action}")
                if action == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if action == "busy":
                    self.send_response(503)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                answer = httpx.post(
                    proxy.target, content=body, headers={"content-type": "application/json"}
                )
                if action == "lose":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FlakyProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_transient_node_failures_are_retried_and_a_lost_send_is_not_sent_twice(
    node: AnvilNode,
) -> None:
    plan = {
        "eth_getBlockByNumber": ["busy", "drop"],
        "eth_call": ["busy"],
        "eth_sendRawTransaction": ["lose"],  # reaches the node; the answer is lost
        "eth_getLogs": ["drop"],
    }
    with FlakyProxy(node.url, plan) as proxy:
        chain = Chain.connect(proxy.url, operator_key=DEV_OPERATOR_KEY, attempts=3)
        chain.deploy()
        receipt = chain.transact(
            chain.contract.functions.registerCompany(1, "Acme", chain.operator.address)
        )
        assert receipt["status"] == 1
        sent = chain.w3.eth.get_transaction_count(chain.operator.address)
        assert sent == 2  # the deployment and one registration: nothing was sent twice
        indexer = Indexer(chain, migrated_engine("sqlite://"), start_block=0)
        assert indexer.sync().caught_up
    assert "eth_sendRawTransaction:lose" in proxy.seen and "eth_getLogs:drop" in proxy.seen


def test_a_node_that_stays_down_is_reported_within_a_bounded_time() -> None:
    chain = Chain.connect(
        f"http://127.0.0.1:{free_port()}", operator_key=DEV_OPERATOR_KEY, attempts=3
    )
    started = time.monotonic()
    with pytest.raises(ChainUnavailable):
        chain.head()
    assert time.monotonic() - started < 2.0


# ----- inside `quota-ledger up` -----


def test_up_follows_changes_made_around_it_within_the_bound(tmp_path: Path) -> None:
    """A consumer's own transaction (not relayed) reaches the API's checks by the background
    indexer; health reports the lag."""
    from tests.stack import CHECK, Stack
    from tests.test_e2e_anvil import CONSUMER, codes

    stack = Stack(tmp_path)
    stack.start()
    try:
        stack.register_company()
        stack.cli("link", PHONE, CONSUMER)
        address = httpx.get(f"{stack.url}/v1/ledger").json()["domain"]["verifying_contract"]
        node_url = f"http://127.0.0.1:{stack.env['QL_ANVIL_PORT']}"
        chain = Chain.connect(node_url, operator_key=DEV_OPERATOR_KEY)
        chain.use(address)

        def own_tx(data: bytes) -> None:  # anvil unlocks its development accounts
            tx = {"from": CONSUMER, "to": address, "data": "0x" + data.hex()}
            chain.w3.eth.wait_for_transaction_receipt(chain.w3.eth.send_transaction(tx))  # type: ignore[arg-type]

        def ask() -> dict[str, object]:  # a check that records nothing
            auth = {"Authorization": f"Bearer {stack.api_key}"}
            response = httpx.post(
                f"{stack.url}/v1/checks", json={**CHECK, "record": False}, headers=auth
            )
            assert response.status_code == 200, response.text
            body: dict[str, object] = response.json()
            return body

        def until(allowed: bool) -> dict[str, object]:
            deadline = time.monotonic() + 5
            while (body := ask())["allowed"] != allowed:
                assert time.monotonic() < deadline, body
            return body

        own_tx(calldata("setGrant", terms(1, int(Channel.SMS))))
        until(True)
        health = httpx.get(f"{stack.url}/v1/health").json()
        assert health["status"] == "ok" and health["index_block"] == chain.head().number
        own_tx(calldata("revokeGrant", 1, int(Channel.SMS)))
        assert codes(until(False)) == ["revoked"]
    finally:
        stack.stop()
