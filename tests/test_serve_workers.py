"""`quota-ledger serve --workers N`: several API processes on one port, one ledger behind them."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from ledger.chain.anvil import DEMO_ACCOUNTS, anvil_binary
from ledger.consent import wallet
from tests.helpers import NOTICE, PHONE
from tests.stack import CHECK, CLI, Stack, free_port

CONSUMER, CONSUMER_KEY = DEMO_ACCOUNTS[0]
QUOTA = 30

try:
    anvil_binary()
except Exception as exc:  # pragma: no cover - only without `npm ci`
    pytest.skip(f"anvil not installed: {exc}", allow_module_level=True)


def workers_of(pid: int) -> list[int]:
    """The uvicorn worker processes of ``pid`` (not multiprocessing's resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            # The parent's pid is the 2nd field after the command, which may hold spaces.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"spawn_main" in command:
                found.append(int(entry.name))
    return found


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[tuple[Stack, str, subprocess.Popen[bytes]]]:
    """A `quota-ledger up` (the node and the database, a granted contact) and a
    `serve --workers 2` on their node and database."""
    (tmp_path / "up").mkdir()
    (tmp_path / "serve").mkdir()
    up = Stack(tmp_path / "up", env={"QL_RATE_LIMIT_PER_MINUTE": "1000000"})
    port = free_port()
    env = {
        **up.env,
        "QL_CHAIN": "rpc",
        "QL_RPC_URL": f"http://127.0.0.1:{up.env['QL_ANVIL_PORT']}",
        "QL_DATABASE_URL": f"sqlite:///{(tmp_path / 'up' / 'ledger.sqlite3').resolve()}",
        "QL_DATA_DIR": str(tmp_path / "serve"),
        "QL_API_PORT": str(port),
    }
    proc = None
    try:
        up.start()
        up.register_company()
        up.cli("link", PHONE, CONSUMER)
        wallet.Wallet(up.url, CONSUMER_KEY).grant(
            company_id=1,
            channel="sms",
            max_contacts=QUOTA,
            period=365 * 86400,
            notice_hash=NOTICE,
        )
        with (tmp_path / "serve" / "serve.log").open("ab") as out:
            proc = subprocess.Popen(
                [*CLI, "serve", "--workers", "2"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while len(workers_of(proc.pid)) < 2 or not _healthy(url):
            assert proc.poll() is None, (tmp_path / "serve" / "serve.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "serve" / "serve.log").read_text()
            time.sleep(0.2)
        yield up, url, proc
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        up.stop()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_workers_share_the_port_and_keep_the_quota_exact(
    workers: tuple[Stack, str, subprocess.Popen[bytes]],
) -> None:
    up, url, proc = workers
    pids = workers_of(proc.pid)
    assert len(pids) == 2

    def check(_: int) -> dict[str, object]:
        auth = {"Authorization": f"Bearer {up.api_key}"}
        response = httpx.post(f"{url}/v1/checks", json=CHECK, headers=auth, timeout=30)
        assert response.status_code == 200, response.text
        body: dict[str, object] = response.json()
        return body

    # More checks than the quota, from many connections at once, over both workers.
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(check, range(QUOTA + 10)))
    assert sum(bool(a["allowed"]) for a in answers) == QUOTA
    seqs = [a["receipt"]["seq"] for a in answers if a["allowed"]]  # type: ignore[index]
    assert len(set(seqs)) == QUOTA

    proc.send_signal(signal.SIGTERM)  # a clean stop takes the workers with it
    proc.wait(30)
    assert all(not Path(f"/proc/{pid}").exists() for pid in pids)
