"""The local node's history pruning and its adaptive state dumps: pruned, it still serves every
log and block hash the index and the journal replay read, across a restart; its dump interval
grows with the state it starts on."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.workload import Workload, calldata
from ledger.chain.anvil import (
    MAX_STATE_INTERVAL,
    PRUNE_HISTORY,
    STATE_BYTES_PER_SECOND,
    AnvilNode,
    anvil_binary,
    state_interval_for,
)
from ledger.chain.client import Chain
from ledger.index.indexer import Indexer
from ledger.schema import migrated_engine
from ledger.settings import DEV_OPERATOR_KEY
from tests.stack import free_port

try:
    anvil_binary()
except Exception as exc:  # pragma: no cover - only without `npm ci`
    pytest.skip(f"anvil not installed: {exc}", allow_module_level=True)

MIB, GIB = 2**20, 2**30


@pytest.mark.parametrize(
    ("state_bytes", "configured", "interval"),
    [
        (0, 1, 1),  # a new node: the configured interval
        (STATE_BYTES_PER_SECOND, 1, 1),
        (STATE_BYTES_PER_SECOND + 1, 1, 2),  # one more second per started step
        (156 * MIB, 1, 20),
        (2 * GIB, 1, 256),  # the 2 GB state of ~420k grants: about every 4 minutes
        (10 * GIB, 1, MAX_STATE_INTERVAL),  # bounded: the journal replays what a crash loses
        (2 * GIB, 3600, 3600),  # the configured interval is a floor, even above the bound
        (0, 5, 5),
    ],
)
def test_the_dump_interval_grows_with_the_state_within_bounds(
    state_bytes: int, configured: int, interval: int
) -> None:
    assert state_interval_for(state_bytes, configured) == interval


def _cmdline(node: AnvilNode) -> list[str]:
    assert node.pid is not None
    return Path(f"/proc/{node.pid}/cmdline").read_bytes().decode().split("\0")


def _flag(node: AnvilNode, name: str) -> str:
    args = _cmdline(node)
    return args[args.index(name) + 1]


def test_a_node_started_on_a_large_state_dumps_it_less_often(tmp_path: Path) -> None:
    node = AnvilNode(data_dir=tmp_path, port=free_port())
    with node:
        assert (_flag(node, "--state-interval"), node.dump_interval) == ("1", 1)
    # Trailing whitespace keeps the JSON valid: anvil loads it as a 20 MiB state.
    with node.state_file.open("ab") as state:
        state.write(b" " * (20 * MIB))
    with node:
        assert (_flag(node, "--state-interval"), node.dump_interval) == ("3", 3)
        assert node.state_interval == 1  # the configured floor is kept for the next start


def test_a_pruned_node_keeps_every_log_and_block_hash_across_a_restart(tmp_path: Path) -> None:
    node = AnvilNode(data_dir=tmp_path / "anvil", port=free_port(), state_interval=3600)
    assert node.prune_history == PRUNE_HISTORY
    with node:
        assert _flag(node, "--prune-history") == str(PRUNE_HISTORY)
        chain = Chain.connect(node.url, operator_key=DEV_OPERATOR_KEY)
        chain.deploy()
        consumer = chain.w3.eth.accounts[1]
        work = Workload(chain)
        # Twice as many blocks as the node keeps states for, one event each.
        for k in range(2 * PRUNE_HISTORY):
            work.send(consumer, [calldata("setGlobalCap", 10 + k, 86_400)])
        head = chain.head().number
        hashes = [bytes(chain.w3.eth.get_block(n)["hash"]) for n in range(head + 1)]
        logs = chain.logs(0, head)
    assert len(logs) >= work.events == 2 * PRUNE_HISTORY
    with node:  # stopped cleanly, started again on its state file
        assert [bytes(chain.w3.eth.get_block(n)["hash"]) for n in range(head + 1)] == hashes
        assert chain.logs(0, head) == logs
        # The index built from genesis over the pruned node sees every event.
        engine = migrated_engine(f"sqlite:///{tmp_path / 'index.sqlite3'}")
        report = Indexer(chain, engine, start_block=0).sync()
        assert report.caught_up and report.events == len(logs)
