"""The supervisor of `up`'s local node: a crashed node comes back, recovered; a node stopped on
purpose stays stopped; users of the node hold off while it restarts."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ledger.chain.anvil import AnvilNode, NodeState, NodeSupervisor, answers, anvil_binary
from tests.stack import free_port

try:
    anvil_binary()
except Exception as exc:  # pragma: no cover - only without `npm ci`
    pytest.skip(f"anvil not installed: {exc}", allow_module_level=True)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[AnvilNode]:
    with AnvilNode(data_dir=tmp_path, port=free_port()) as started:
        yield started


def wait_until(condition: Callable[[], bool], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_killed_node_is_restarted_on_its_port_then_recovered(node: AnvilNode) -> None:
    recovered: list[bool] = []  # whether the node answered when recovery ran
    failures = [RuntimeError("database down")]  # the first recovery fails: tried again

    def recover() -> str:
        if failures:
            raise failures.pop()
        recovered.append(answers(node.url))
        return "2 operator transactions replayed"

    supervisor = NodeSupervisor(node, recover=recover)
    supervisor.start()
    try:
        first = node.pid
        assert first is not None and supervisor.status().state is NodeState.RUNNING
        node.process.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        wait_until(lambda: supervisor.status().state is NodeState.RESTARTING)
        with supervisor.running() as up:
            assert not up  # the indexer skips its round
        wait_until(lambda: supervisor.status().state is NodeState.RUNNING)
        status = supervisor.status()
        assert (status.restarts, status.last_exit, status.detail) == (
            1,
            -signal.SIGKILL,
            "2 operator transactions replayed",
        )
        assert status.pid is not None and status.pid != first and recovered == [True]
        with supervisor.running() as up:
            assert up
    finally:
        supervisor.stop()
    assert supervisor.status().state is NodeState.STOPPED and not answers(node.url)
    assert (node.data_dir / "anvil-state.json").exists()  # stopped cleanly: state written


def test_a_node_stopped_on_purpose_is_not_restarted(node: AnvilNode) -> None:
    supervisor = NodeSupervisor(node, recover=lambda: "nothing lost")
    supervisor.start()
    try:
        node.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        wait_until(lambda: supervisor.status().state is NodeState.STOPPED)
        time.sleep(0.5)
        status = supervisor.status()
        assert (status.state, status.restarts, status.last_exit) == (NodeState.STOPPED, 0, 0)
        assert not answers(node.url)
    finally:
        supervisor.stop()
