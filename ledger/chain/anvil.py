"""A local anvil node, started from node_modules with its state persisted in the data directory."""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import BinaryIO

import httpx

from ledger.domain.errors import ChainUnavailable

_PR_SET_PDEATHSIG = 1
_ROOT = Path(__file__).resolve().parents[2]
_PLATFORMS = {
    ("Linux", "x86_64"): "linux-amd64",
    ("Linux", "aarch64"): "linux-arm64",
    ("Darwin", "x86_64"): "darwin-amd64",
    ("Darwin", "arm64"): "darwin-arm64",
}


def anvil_binary() -> Path:
    """The anvil executable shipped by the npm package ``@foundry-rs/anvil``.

    Raises:
        ChainUnavailable: ``npm ci`` has not been run, or the platform has no build.
    """
    suffix = _PLATFORMS.get((platform.system(), platform.machine()))
    if suffix is not None:
        candidate = _ROOT / "node_modules" / "@foundry-rs" / f"anvil-{suffix}" / "bin" / "anvil"
        if candidate.exists():
            return candidate
    found = shutil.which("anvil")
    if found:
        return Path(found)
    raise ChainUnavailable("anvil not found: run `npm ci` (make up does it for you)")


class AnvilNode:
    """Runs anvil on 127.0.0.1 with ``--state`` so the chain survives restarts.

    Example:
        >>> with AnvilNode(data_dir=Path(".quota-ledger"), port=8545) as node:
        ...     print(node.url)
    """

    def __init__(self, *, data_dir: Path, port: int, state_interval: int = 1) -> None:
        self.data_dir = data_dir
        self.port = port
        self.state_interval = state_interval
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state_file(self) -> Path:
        return self.data_dir / "anvil-state.json"

    def start(self, timeout: float = 20.0) -> None:
        """Starts anvil and waits until it answers.

        Raises:
            ChainUnavailable: the port is taken, or anvil does not come up.
        """
        if answers(self.url):
            # Never adopt a node we did not start: its state is not ours to persist.
            raise ChainUnavailable(f"something already answers on {self.url} (QL_ANVIL_PORT)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.data_dir / "anvil.log"
        with log_path.open("ab") as log:  # the child keeps its own descriptor
            self.process = self._spawn(log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ChainUnavailable(
                    f"anvil exited with {self.process.returncode}: see {log_path}"
                )
            if answers(self.url):
                return
            time.sleep(0.1)
        self.stop()
        raise ChainUnavailable(f"anvil did not answer on {self.url} within {timeout} s")

    def _spawn(self, log: BinaryIO) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                str(anvil_binary()),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--state",
                str(self.state_file),
                "--state-interval",
                str(self.state_interval),
                "--chain-id",
                "31337",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_stop_with_parent if sys.platform == "linux" else None,
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stops anvil cleanly (SIGTERM), which makes it write its state file."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """Stops anvil uncleanly (SIGKILL): the last state interval may be lost."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> AnvilNode:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _stop_with_parent() -> None:
    """In the child: get SIGTERM (and so dump state) when the parent dies, however it dies."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def answers(url: str) -> bool:
    """Whether a JSON-RPC node answers on ``url``."""
    try:
        response = httpx.post(
            url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=1
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200


# anvil's default development accounts (mnemonic "test test ... junk"): public knowledge,
# printed by `quota-ledger up` so that a new user has wallets to try the product with.
DEMO_ACCOUNTS: tuple[tuple[str, str], ...] = (
    (
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    ),
    (
        "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
        "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    ),
)
