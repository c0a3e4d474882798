"""Real processes for end-to-end and reliability tests: `quota-ledger up` on free ports.

One harness, so that every test that kills, freezes or restarts something drives the product
the way an operator runs it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import PHONE

CHECK = {"contact": PHONE, "channel": "sms", "record": True}
CLI = [sys.executable, "-m", "api.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    """One `quota-ledger up` process (API + anvil) on free ports, in its own data directory.

    With ``command="serve"`` and ``env`` naming the node and the database (``QL_CHAIN=rpc``,
    ``QL_RPC_URL``, ``QL_DATABASE_URL``), one API process of several sharing them.
    """

    def __init__(
        self,
        data_dir: Path,
        state_interval: int = 1,
        *,
        command: str = "up",
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.env = {
            **os.environ,
            "QL_DATA_DIR": str(data_dir),
            "QL_API_PORT": str(free_port()),
            "QL_ANVIL_PORT": str(free_port()),
            "QL_ANVIL_STATE_INTERVAL": str(state_interval),
            **(env or {}),
        }
        self.command = command
        self.args = args  # extra command-line options, e.g. ("--workers", "4")
        self.url = f"http://127.0.0.1:{self.env['QL_API_PORT']}"
        self.log = data_dir / f"{command}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.api_key = ""

    def register_company(self) -> None:
        """`quota-ledger company register`; its last output line is the company's API key."""
        self.api_key = self.cli("company", "register", "1", "Acme SMS").strip().splitlines()[-1]

    def start(self, timeout: float = 60) -> None:
        with self.log.open("ab") as out:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [*CLI, self.command, *self.args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"API did not start:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM: clean stop (anvil dumps its state). SIGKILL to the group: a crash of both."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if sig == signal.SIGKILL:
            os.killpg(self.proc.pid, signal.SIGKILL)
        else:
            self.proc.send_signal(sig)
        self.proc.wait(30)

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [*CLI, *args], env=self.env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def health(self) -> tuple[int, dict[str, Any]]:
        """`GET /v1/health`: its status code (200, or 503 when degraded) and its body."""
        response = httpx.get(f"{self.url}/v1/health", timeout=10)
        return response.status_code, response.json()

    def check(self) -> dict[str, object]:
        auth = {"Authorization": f"Bearer {self.api_key}"}
        response = httpx.post(f"{self.url}/v1/checks", json=CHECK, headers=auth, timeout=30)
        assert response.status_code == 200, response.text
        body: dict[str, object] = response.json()
        return body
