"""`quota-ledger up` heals its node: kill -9 of anvil, and the API brings it back by itself.

While the node is down or its lost blocks are being replayed, health says ``restarting`` (503)
and checks refuse; then the node is back on the same port and state file, the operator's
journal replayed, and checks are allowed again, with nobody touching `up`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ledger.chain.anvil import DEMO_ACCOUNTS, anvil_binary
from ledger.consent import wallet
from tests.helpers import NOTICE, PHONE
from tests.stack import Stack

CONSUMER, CONSUMER_KEY = DEMO_ACCOUNTS[0]
HEAL_WITHIN = 15.0  # seconds: generous for a loaded CI machine; a quiet one heals in about 1 s

try:
    anvil_binary()
except Exception as exc:  # pragma: no cover - only without `npm ci`
    pytest.skip(f"anvil not installed: {exc}", allow_module_level=True)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """`up` whose node has a grant in blocks not yet in its state file (a kill -9 loses them).

    The company and the link are in the state file (a clean stop wrote it); the grant is not:
    anvil writes its state only on a clean stop (interval of an hour).
    """
    s = Stack(tmp_path, state_interval=3600)
    s.start()
    try:
        s.register_company()
        s.cli("link", PHONE, CONSUMER)
        s.stop(signal.SIGTERM)
        s.start()
        wallet.Wallet(s.url, CONSUMER_KEY).grant(
            company_id=1, channel="sms", max_contacts=3, period=365 * 86400, notice_hash=NOTICE
        )
        assert s.check()["allowed"]  # 1 of 3 recorded
        yield s
    finally:
        s.stop()


def node_pid(stack: Stack) -> int:
    status, body = stack.health()
    assert status == 200, body
    assert body["node"]["state"] == "running", body
    pid: int = body["node"]["pid"]
    return pid


def test_a_killed_node_is_restarted_replayed_and_checks_come_back(stack: Stack) -> None:
    api_pid = stack.proc.pid if stack.proc else None
    os.kill(node_pid(stack), signal.SIGKILL)
    killed = time.monotonic()

    seen: list[tuple[float, str, bool]] = []  # (seconds since the kill, node state, allowed)
    deadline = killed + HEAL_WITHIN
    while time.monotonic() < deadline:
        status, body = stack.health()
        state = body["node"]["state"]
        if state == "restarting":
            assert status == 503, body
        allowed = bool(stack.check()["allowed"])
        seen.append((time.monotonic() - killed, state, allowed))
        if allowed:
            break
        time.sleep(0.02)
    healed = seen[-1][0]
    print(f"\nnode killed -9 under `up`: checks allowed again after {healed:.2f} s")

    assert seen[-1][2], f"checks not allowed again within {HEAL_WITHIN} s: {seen}"
    assert any(state == "restarting" for _, state, _ in seen), seen
    assert not seen[0][2], seen  # the first check after the kill refused
    # Still the same `up`, the node back under it, its lost grant replayed from the journal.
    assert stack.proc is not None and stack.proc.poll() is None and stack.proc.pid == api_pid
    status, body = stack.health()
    assert status == 200, body
    node = body["node"]
    assert (node["state"], node["restarts"], node["last_exit"]) == ("running", 1, -9), node
    assert "1 operator transactions replayed" in node["detail"], node
    log = stack.log.read_text()
    assert "the local node exited with -9: restarting it" in log
    assert "the local node is back after" in log
    # The quota is exact across the restart: 3 allowed in all, then exhausted.
    assert stack.check()["allowed"]
    assert stack.check()["allowed"] is False


@contextmanager
def squatting(port: int) -> Iterator[None]:
    """Something else holds the port: anvil cannot bind it; requests to it fail at once."""
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for _ in range(100):  # until the killed node's socket is gone (it restarts after 0.25 s)
            try:
                squatter.bind(("127.0.0.1", port))
                break
            except OSError:
                time.sleep(0.002)
        squatter.listen()
        squatter.settimeout(0.1)
        done = threading.Event()

        def hang_up() -> None:
            while not done.is_set():
                with contextlib.suppress(TimeoutError):
                    squatter.accept()[0].close()

        thread = threading.Thread(target=hang_up)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()


def test_checks_refuse_for_as_long_as_the_node_cannot_come_back(stack: Stack) -> None:
    os.kill(node_pid(stack), signal.SIGKILL)
    with squatting(int(stack.env["QL_ANVIL_PORT"])):
        until = time.monotonic() + 4
        while time.monotonic() < until:
            body = stack.check()
            assert body["allowed"] is False, body
            assert body["reasons"][0]["code"] in {"ledger_unavailable", "ledger_stale"}, body  # type: ignore[index]
            time.sleep(0.1)
        status, health = stack.health()
        assert (status, health["status"], health["node"]["state"]) == (
            503,
            "degraded",
            "restarting",
        ), health
        assert "restart attempt" in health["node"]["detail"], health
    # Attempts back off (0.25 s doubling): the next one, within a few seconds, succeeds.
    deadline = time.monotonic() + HEAL_WITHIN
    while not stack.check()["allowed"]:
        assert time.monotonic() < deadline, stack.health()
        time.sleep(0.1)
    assert stack.health()[1]["node"]["restarts"] == 1
