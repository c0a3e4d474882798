"""Limits on what anyone may ask: per client address, per consumer, the operator's gas, the
sign-in nonces kept; in one process's memory or shared by every process through Redis."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import redis
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage, storage_from_string

from api.main import create_app
from api.ratelimit import Limit, Limiter, client_key
from ledger.consent import wallet
from ledger.consent.signin import AuthNonce
from ledger.db.engine import transaction
from ledger.runtime import Ledger
from ledger.services import apikeys, sign_in_nonces
from ledger.services.apikeys import Role
from ledger.settings import Settings
from tests.helpers import NOTICE
from tests.servers import redis_url

PROBLEM = "https://quota-ledger.dev/problems/"
ROOT = Path(__file__).resolve().parents[2]


def limited(ledger: Ledger, **update: object) -> Ledger:
    """The ledger with settings changed (the app reads its limits when it is created)."""
    ledger.settings = ledger.settings.model_copy(update=update)
    return ledger


def client_at(ledger: Ledger, host: str) -> TestClient:
    return TestClient(create_app(ledger), client=(host, 50000))


def operator_txs(ledger: Ledger) -> int:
    return int(ledger.chain.w3.eth.get_transaction_count(ledger.chain.operator.address))


def grant(client: TestClient, account: LocalAccount, max_contacts: int = 4) -> None:
    wallet.Wallet("", account.key.hex(), client=client).grant(
        company_id=1, channel="sms", max_contacts=max_contacts, period=86400, notice_hash=NOTICE
    )


def assert_rate_limited(response, limit: Limit) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == PROBLEM + "rate_limited"
    assert response.json()["limit"] == limit.value
    assert int(response.headers["Retry-After"]) >= 1


@pytest.fixture
def redis_settings(settings: Settings) -> Iterator[Settings]:
    """The settings with a shared Redis, under a key prefix of this test's own."""
    url = redis_url()
    prefix = f"ql-test-{uuid.uuid4().hex[:12]}"
    yield settings.model_copy(update={"redis_url": url, "redis_key_prefix": prefix})
    server = redis.Redis.from_url(url)
    for key in server.scan_iter(f"{prefix}:*"):
        server.delete(key)
    server.close()


# ----- per client address -----


def _anonymous_posts(ledger: Ledger) -> list[str]:
    """Every POST that answers an unauthenticated caller with something other than 401."""
    app = create_app(ledger)
    posts = []
    with TestClient(app, client=("192.0.2.1", 50000)) as probe:
        for template, operations in app.openapi()["paths"].items():
            if "post" in operations:
                path = re.sub(r"\{[^}]+\}", "1", template)
                if probe.post(path, json={}).status_code != 401:
                    posts.append(path)
    return posts


def test_every_anonymous_post_is_limited_per_client_address(ledger: Ledger) -> None:
    limited(ledger, sign_in_per_ip_per_minute=3, relay_per_ip_per_minute=3)
    posts = _anonymous_posts(ledger)
    # The list is built from the app's routes: a new anonymous endpoint is checked here too.
    assert {
        "/v1/auth/nonce",
        "/v1/auth/token",
        "/v1/grants",
        "/v1/grants/typed-data",
        "/v1/grants/revocations",
        "/v1/revocations/all",
        "/v1/global-caps",
        "/v1/links/unlink",
    } <= set(posts)
    app = create_app(ledger)
    for i, path in enumerate(posts):
        with TestClient(app, client=(f"198.51.100.{i + 1}", 50000)) as client:
            statuses = [client.post(path, json={}).status_code for _ in range(3)]
            assert 429 not in statuses, path
            refused = client.post(path, json={})
            assert refused.status_code == 429, f"{path} is not limited per client address"
            assert int(refused.headers["Retry-After"]) >= 1
    with TestClient(app, client=("203.0.113.9", 50000)) as other:
        assert other.post("/v1/auth/nonce").status_code == 200  # another address is not


def test_sign_in_is_limited_per_address_and_a_refusal_writes_no_nonce(ledger: Ledger) -> None:
    limited(ledger, sign_in_per_ip_per_minute=2)
    with client_at(ledger, "198.51.100.7") as client:
        assert client.post("/v1/auth/nonce").status_code == 200
        assert client.post("/v1/auth/token", json={}).status_code == 422  # counts too
        kept = sign_in_nonces.kept(ledger.engine)
        assert_rate_limited(client.post("/v1/auth/nonce"), Limit.SIGN_IN)
        assert sign_in_nonces.kept(ledger.engine) == kept == 1


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),  # same /64: same key
        ("::ffff:203.0.113.7", "203.0.113.7"),  # IPv4 mapped into IPv6: the IPv4 address
        ("testclient", "testclient"),
        (None, "unknown"),
    ],
)
def test_an_ipv6_client_counts_by_its_64_prefix(host: str | None, key: str) -> None:
    assert client_key(host) == key


# ----- sign-in nonces -----


def test_expired_nonces_are_deleted_when_a_new_one_is_issued(ledger: Ledger) -> None:
    old = datetime.now(UTC) - timedelta(minutes=11)
    with transaction(ledger.engine) as session:
        session.add_all(AuthNonce(nonce=f"old{i}", created_at=old) for i in range(50))
    sign_in_nonces.issue_nonce(engine=ledger.engine, max_kept=100)
    assert sign_in_nonces.kept(ledger.engine) == 1


def test_nonces_kept_are_capped_and_the_cap_refuses_with_retry_after(ledger: Ledger) -> None:
    limited(ledger, sign_in_max_nonces=3)
    with client_at(ledger, "198.51.100.8") as client:
        assert [client.post("/v1/auth/nonce").status_code for _ in range(3)] == [200] * 3
        refused = client.post("/v1/auth/nonce")
    assert refused.status_code == 429 and refused.json()["type"] == (
        PROBLEM + "too_many_sign_in_nonces"
    )
    assert 1 <= int(refused.headers["Retry-After"]) <= 601
    assert sign_in_nonces.kept(ledger.engine) == 3


# ----- per consumer: the operator's gas -----


def test_a_consumer_over_the_days_gas_is_429_and_nothing_is_sent(
    ledger: Ledger, company: int
) -> None:
    limited(ledger, relay_gas_per_consumer_per_day=50_000)  # spent by one grant (~65,000)
    account = Account.create()
    with client_at(ledger, "198.51.100.9") as client:
        grant(client, account)
        sent = operator_txs(ledger)
        with pytest.raises(wallet.ApiError) as refused:
            grant(client, account, max_contacts=5)
        assert refused.value.fields["status"] == 429
        assert refused.value.problem["limit"] == Limit.RELAY_GAS.value
        assert operator_txs(ledger) == sent
        # Withdrawing has a budget of its own: spending the grants' never blocks it.
        wallet.Wallet("", account.key.hex(), client=client).revoke(company_id=1, channel="sms")
        assert operator_txs(ledger) == sent + 1
        grant(client, Account.create())  # another consumer is not limited


def test_the_operators_gas_for_every_consumer_is_bounded(ledger: Ledger, company: int) -> None:
    limited(ledger, relay_gas_per_day=50_000)
    with client_at(ledger, "198.51.100.10") as client:
        grant(client, Account.create())
        sent = operator_txs(ledger)
        with pytest.raises(wallet.ApiError) as refused:
            grant(client, Account.create())  # a fresh wallet: its own budget is whole
        assert refused.value.problem["limit"] == Limit.OPERATOR_RELAY_GAS.value
        assert operator_txs(ledger) == sent


def test_a_refused_relay_spends_none_of_the_consumers_budget(ledger: Ledger, company: int) -> None:
    limited(ledger, relay_gas_per_consumer_per_day=100_000)
    account = Account.create()
    with client_at(ledger, "198.51.100.11") as client:
        draft = {
            "consumer": account.address,
            "company_id": 1,
            "channel": "sms",
            "max_contacts": 4,
            "period": 86400,
            "notice_hash": NOTICE,
            "deadline": int(time.time()) + 600,
        }
        prepared = client.post("/v1/grants/typed-data", json=draft).json()
        forged = {**draft, "version": 0, "epoch": prepared.get("epoch", 0)}
        forged["signature"] = "0x" + "11" * 65
        for _ in range(5):  # anyone may send messages naming this consumer: they cost nothing
            assert client.post("/v1/grants", json=forged).status_code in (401, 422)
        assert client.app.state.limiter.remaining(Limit.RELAY_GAS, account.address) == 100_000
        grant(client, account)


# ----- the storage -----


def test_the_memory_storage_forgets_a_key_once_its_window_is_over() -> None:
    storage = storage_from_string("memory://")
    assert isinstance(storage, MemoryStorage)
    limiter = Limiter(storage, {Limit.SIGN_IN: RateLimitItemPerSecond(1)})
    for i in range(1_000):
        limiter.hit(Limit.SIGN_IN, f"198.51.{i // 256}.{i % 256}")
    assert len(storage.storage) == 1_000
    time.sleep(1.1)
    limiter.hit(Limit.SIGN_IN, "203.0.113.1")  # any hit schedules the sweep of expired keys
    deadline = time.monotonic() + 5
    while len(storage.storage) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(storage.storage) == 1  # only the live key: the library evicts, memory is bounded


def test_api_keys_are_limited_on_the_same_mechanism(
    ledger: Ledger, company_auth: dict[str, str]
) -> None:
    limited(ledger, rate_limit_per_minute=2)
    with TestClient(create_app(ledger)) as client:
        assert [client.get("/v1/usage", headers=company_auth).status_code for _ in range(2)] == [
            200,
            200,
        ]
        assert_rate_limited(client.get("/v1/usage", headers=company_auth), Limit.API_KEY)


# ----- shared by every process through Redis -----


def test_two_apps_sharing_redis_enforce_one_limit(
    ledger: Ledger, redis_settings: Settings, company: int
) -> None:
    ledger.settings = redis_settings.model_copy(update={"rate_limit_per_minute": 5})
    token, _ = apikeys.create_key(ledger.engine, role=Role.COMPANY, company_id=company)
    auth = {"Authorization": f"Bearer {token}"}
    # Two apps, each with a limiter (and storage connection) of its own: two API processes.
    with TestClient(create_app(ledger)) as first, TestClient(create_app(ledger)) as second:
        assert first.app.state.limiter is not second.app.state.limiter
        statuses = [
            (first if i % 2 else second).get("/v1/usage", headers=auth).status_code
            for i in range(10)
        ]
    assert statuses.count(200) == 5 and statuses.count(429) == 5


def test_gas_spent_through_one_process_counts_in_another(
    ledger: Ledger, redis_settings: Settings, company: int
) -> None:
    ledger.settings = redis_settings.model_copy(update={"relay_gas_per_consumer_per_day": 50_000})
    account = Account.create()
    with TestClient(create_app(ledger)) as first, TestClient(create_app(ledger)) as second:
        grant(first, account)
        with pytest.raises(wallet.ApiError) as refused:
            grant(second, account, max_contacts=5)
    assert refused.value.problem["limit"] == Limit.RELAY_GAS.value


def test_an_unreachable_redis_refuses_with_503(ledger: Ledger) -> None:
    limited(ledger, redis_url="redis://127.0.0.1:9/0")  # discard port: nothing listens
    with TestClient(create_app(ledger)) as client:
        response = client.post("/v1/auth/nonce")
    assert response.status_code == 503
    assert response.json()["type"] == PROBLEM + "limiter_unavailable"
    assert sign_in_nonces.kept(ledger.engine) == 0  # fail closed: nothing written


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def two_api_processes(redis_settings: Settings, tmp_path: Path) -> Iterator[list[str]]:
    """Two uvicorn processes, each with its own ledger, sharing the test's Redis."""
    servers: list[tuple[subprocess.Popen[bytes], str]] = []
    try:
        for name in ("first", "second"):
            port = _free_port()
            env = {
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "QL_CHAIN": "memory",
                "QL_DATA_DIR": str(tmp_path / name),
                "QL_DATABASE_URL": f"sqlite:///{tmp_path / name / 'ledger.sqlite3'}",
                "QL_REDIS_URL": str(redis_settings.redis_url),
                "QL_REDIS_KEY_PREFIX": redis_settings.redis_key_prefix,
                "QL_SIGN_IN_PER_IP_PER_MINUTE": str(PROCESS_LIMIT),
            }
            command = [sys.executable, "-m", "uvicorn", "--factory", "tests.api.asgi_app:app"]
            command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
            process = subprocess.Popen(command, cwd=ROOT, env=env)
            servers.append((process, f"http://127.0.0.1:{port}"))
        for process, url in servers:
            _wait_until_serving(process, url)
        yield [url for _, url in servers]
    finally:
        for process, _ in servers:
            process.terminate()
        for process, _ in servers:
            process.wait(timeout=30)


def _wait_until_serving(process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the API process at {url} exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/v1/ledger", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"the API process at {url} did not start")


PROCESS_LIMIT = 20


def test_two_api_processes_sharing_redis_accept_exactly_one_limit(
    two_api_processes: list[str],
) -> None:
    urls = two_api_processes * PROCESS_LIMIT  # 2N requests, half to each process

    def ask(url: str) -> int:
        return httpx.post(f"{url}/v1/auth/nonce", timeout=30).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(ask, urls))
    assert statuses.count(200) == PROCESS_LIMIT
    assert statuses.count(429) == PROCESS_LIMIT
