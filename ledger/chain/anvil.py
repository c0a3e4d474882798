"""A local anvil node, started from node_modules with its state persisted in the data directory,
and the supervisor that brings it back when it dies."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

import httpx

from ledger.background import BackgroundLoop
from ledger.domain.errors import ChainUnavailable

log = logging.getLogger(__name__)

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


# Block states anvil keeps for reads at past blocks (``--prune-history``): none of the
# product's reads needs an old one (the index reads logs, which pruning keeps with every block
# and its hash; contract reads are at "latest", a reverted relay is explained at its own recent
# block), and without a bound anvil also writes every older state to a cache on disk.
# It does not bound the node's memory, which is mostly blocks, transactions and receipts
# (~15 KiB a seeded grant): those hold the logs. ``--transaction-block-keeper``, which drops
# them, makes eth_getLogs silently skip old blocks, so that an index rebuilt from genesis
# would miss grants and revocations: it is not used.
PRUNE_HISTORY = 64
# anvil rewrites the whole state file at every interval, so a fixed 1 s interval turns into a
# node that does little but dump once the state has grown (2 GB at ~420k grants). The interval
# grows instead by one second per STATE_BYTES_PER_SECOND of state (a ~1 GB state was dumped
# in about 10 s on a loaded 2-core machine: a dump then takes a tenth of the node's time or
# less), never past MAX_STATE_INTERVAL; what an unclean stop loses in
# between, the operator's journal replays at the next start (ledger.chain.deployment).
STATE_BYTES_PER_SECOND = 8 * 2**20
MAX_STATE_INTERVAL = 300
# A clean stop waits for the final dump: at least STOP_TIMEOUT, plus a second per
# DUMP_BYTES_PER_SECOND of state (anvil writes JSON far faster), before anvil is killed.
STOP_TIMEOUT = 10.0
DUMP_BYTES_PER_SECOND = 20 * 2**20


def state_interval_for(state_bytes: int, configured: int) -> int:
    """Seconds between state dumps for a state file of ``state_bytes``: ``configured`` (the
    floor, ``QL_ANVIL_STATE_INTERVAL``), or more for a large state, at most
    ``MAX_STATE_INTERVAL`` unless configured higher.

    Example:
        >>> state_interval_for(2 * 2**30, 1)  # a 2 GiB state
        256
    """
    grown = -(-state_bytes // STATE_BYTES_PER_SECOND)
    return max(configured, min(grown, MAX_STATE_INTERVAL))


class AnvilNode:
    """Runs anvil on 127.0.0.1 with ``--state`` so the chain survives restarts.

    The state is dumped every ``state_interval`` seconds, or less often when the state file
    found at start is large (``state_interval_for``; chosen again at every start, so a node
    restarted by its supervisor also adapts).

    Example:
        >>> with AnvilNode(data_dir=Path(".quota-ledger"), port=8545) as node:
        ...     print(node.url)
    """

    def __init__(
        self,
        *,
        data_dir: Path,
        port: int,
        state_interval: int = 1,
        prune_history: int | None = PRUNE_HISTORY,
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        self.state_interval = state_interval  # the configured floor
        self.prune_history = prune_history
        self.dump_interval = state_interval  # in force since the last start
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
        self.dump_interval = state_interval_for(self._state_bytes(), self.state_interval)
        if self.dump_interval != self.state_interval:
            log.info(
                "anvil state of %d MiB: dumped every %d s",
                self._state_bytes() >> 20,
                self.dump_interval,
            )
        log_path = self.data_dir / "anvil.log"
        with log_path.open("ab") as sink:  # the child keeps its own descriptor
            self.process = self._spawn(sink)
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
                str(self.dump_interval),
                "--chain-id",
                "31337",
                *self._prune_flags(),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_stop_with_parent if sys.platform == "linux" else None,
        )

    def _prune_flags(self) -> list[str]:
        if self.prune_history is None:
            return []
        return ["--prune-history", str(self.prune_history)]

    def _state_bytes(self) -> int:
        try:
            return self.state_file.stat().st_size
        except FileNotFoundError:
            return 0

    def stop(self, timeout: float | None = None) -> None:
        """Stops anvil cleanly (SIGTERM), which makes it write its state file.

        Killed after ``timeout`` seconds; by default long enough for the dump of a state the
        size of the last one (a kill mid-dump would lose everything since the previous one).
        """
        if self.process is None or self.process.poll() is not None:
            return
        if timeout is None:
            timeout = STOP_TIMEOUT + self._state_bytes() / DUMP_BYTES_PER_SECOND
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

    @property
    def pid(self) -> int | None:
        """The running anvil's process id (None when it is not running)."""
        if self.process is None or self.process.poll() is not None:
            return None
        return self.process.pid

    def exit_code(self) -> int | None:
        """None while anvil runs; else how it ended (negative: killed by that signal).

        A node never started counts as ended (code 0).
        """
        if self.process is None:
            return 0
        return self.process.poll()

    def __enter__(self) -> AnvilNode:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class NodeState(StrEnum):
    RUNNING = "running"
    RESTARTING = "restarting"  # died; being started again, then its lost blocks replayed
    STOPPED = "stopped"  # stopped on purpose (the API is shutting down)


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """What the supervisor knows of its node."""

    state: NodeState
    pid: int | None
    restarts: int  # times the node was brought back since the process started
    last_restart_at: int | None  # Unix time it last came back (its journal replayed)
    last_exit: int | None  # how it last died (negative: the signal that killed it)
    detail: str = ""  # the last restart's outcome, or why it is not back yet


class NodeSupervisor(BackgroundLoop):
    """Watches a local node and brings it back when it dies, on the same port and state file.

    A node that crashed or was killed (a non-zero exit) is restarted; one that exited cleanly
    was asked to stop, and stays stopped (as systemd's ``Restart=on-failure``).

    After each start, ``recover`` runs (the operator's journal is compared with the chain and
    the lost transactions are sent again, as at a start of ``up``) before the node counts as
    running: until then ``status().state`` is ``restarting``, and users of the node hold off
    through ``running()``. Attempts back off (``first_delay`` doubling up to ``max_delay``)
    while the node keeps failing to start; the delay starts over once a restart succeeded.

    Args:
        node: the started node.
        recover: replays what the node lost; returns a one-line summary for the log.
        poll_interval: seconds between checks of the node's process.
        first_delay: seconds before the first restart attempt.
        max_delay: longest wait between attempts.

    Example:
        >>> supervisor = NodeSupervisor(node, recover=replay_journal)
        >>> supervisor.start()
        >>> supervisor.status().state
        <NodeState.RUNNING: 'running'>
    """

    def __init__(
        self,
        node: AnvilNode,
        *,
        recover: Callable[[], str],
        poll_interval: float = 0.1,
        first_delay: float = 0.25,
        max_delay: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node = node
        self.recover = recover
        self.poll_interval = poll_interval
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.clock = clock
        # Held while the node is restarted and recovered, and by its users' rounds of work
        # (``running``): the index never reads a node whose lost blocks are being replayed.
        self._gate = threading.Lock()
        self._lock = threading.Lock()  # guards the fields below
        self._state = NodeState.RUNNING
        self._restarts = 0
        self._last_restart_at: int | None = None
        self._last_exit: int | None = None
        self._detail = ""
        # The thread that restarts the node must outlive it: anvil gets SIGTERM when the
        # thread that started it ends (PR_SET_PDEATHSIG), which is also how it stops with us.
        super().__init__("node-supervisor")

    def stop(self, timeout: float = 30.0) -> None:
        """Stops supervising and stops the node cleanly (it writes its state file)."""
        super().stop(timeout)
        self.node.stop()

    def status(self) -> NodeStatus:
        with self._lock:
            return NodeStatus(
                self._state,
                self.node.pid if self._state is NodeState.RUNNING else None,
                self._restarts,
                self._last_restart_at,
                self._last_exit,
                self._detail,
            )

    @contextmanager
    def running(self) -> Iterator[bool]:
        """Yields whether the node is up and recovered; no restart begins until the block ends.

        Wrap a round of work on the node in it (an index sync), and skip the round on False.
        """
        with self._gate:
            yield self.status().state is NodeState.RUNNING and self.node.exit_code() is None

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.poll_interval):
                code = self.node.exit_code()
                if code is None or self.status().state is NodeState.STOPPED:
                    continue
                if code == 0:
                    # anvil exits 0 only when asked to (SIGTERM, or the SIGINT of a Ctrl-C that
                    # reaches the whole process group while `up` itself is stopping).
                    log.warning("the local node was stopped (exit 0): not restarting it")
                    self._set(NodeState.STOPPED, last_exit=0, detail="stopped on purpose")
                    continue
                self._bring_back(code)
        finally:
            self.node.stop()  # from this thread, before it ends: see PR_SET_PDEATHSIG above
            self._set(NodeState.STOPPED, detail="stopped with the API")

    def _bring_back(self, code: int) -> None:
        died = time.monotonic()
        self._set(NodeState.RESTARTING, last_exit=code, detail=f"node exited with {code}")
        log.warning(
            "the local node exited with %s: restarting it on %s with %s",
            code,
            self.node.url,
            self.node.state_file,
        )
        delay, attempt, failed = self.first_delay, 0, ""
        while not self._stop.wait(delay):
            attempt += 1
            try:
                with self._gate:
                    if self.node.exit_code() is not None:
                        self.node.start()
                    summary = self.recover()
            except Exception as exc:  # retried: the node, the chain or the database may be back
                # A node that does not start backs off up to `max_delay`; one that runs but
                # cannot be recovered yet (its circuit still open, the database down) is
                # tried again within a second.
                running = self.node.exit_code() is None
                delay = min(2 * delay, 1.0 if running else self.max_delay)
                if str(exc) != failed:  # logged once while it keeps failing the same way
                    log.warning("node restart attempt %d failed: %s", attempt, exc)
                failed = str(exc)
                self._set(NodeState.RESTARTING, detail=f"restart attempt {attempt} failed: {exc}")
                continue
            with self._lock:
                self._state = NodeState.RUNNING
                self._restarts += 1
                self._last_restart_at = int(self.clock())
                self._detail = summary
            log.warning(
                "the local node is back after %.1f s (restart %d): %s",
                time.monotonic() - died,
                self._restarts,
                summary,
            )
            return

    def _set(self, state: NodeState, *, detail: str, last_exit: int | None = None) -> None:
        with self._lock:
            self._state = state
            self._detail = detail
            if last_exit is not None:
                self._last_exit = last_exit


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
