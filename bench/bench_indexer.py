"""Indexer benchmarks against a local anvil node, recorded in bench/results.json.

- Catch-up: ``--events`` events of every kind (grants, replacements, revocations, revoke-alls,
  caps, links and reassignments, company suspensions, anchors) are emitted through multicall
  batches, then indexed from genesis into an empty SQLite database. Figure: events per second
  of wall time for the whole ``Indexer.sync`` (eth_getLogs, decoding, SQL, checkpoints).
- Revocation to effect: a consumer revokes a grant with their own transaction (not through
  the relayer, whose relays return only once the index has them); the background indexer
  polls at the default interval. Figure: the slowest of ``--trials`` times from just before
  the revocation is sent (so including mining) to the first check that refuses.

Run: ``.venv/bin/python -m bench.bench_indexer`` (``make bench-python``).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from hexbytes import HexBytes

from bench.report import Figure, record
from bench.workload import calldata, fill, terms
from ledger.chain.anvil import AnvilNode
from ledger.chain.client import Chain
from ledger.domain import contacts
from ledger.domain.channels import Channel
from ledger.index.indexer import Indexer
from ledger.runtime import Ledger
from ledger.schema import migrated_engine
from ledger.settings import DEV_OPERATOR_KEY, Settings

PHONE = "+33 6 12 34 56 78"


def catch_up(node: AnvilNode, workdir: Path, events: int) -> tuple[float, int, int]:
    """(events/s, events, blocks) of indexing ``events`` events from genesis."""
    chain = Chain.connect(node.url, operator_key=DEV_OPERATOR_KEY)
    chain.deploy()
    started = time.perf_counter()
    work = fill(chain, list(chain.w3.eth.accounts[1:10]), events=events)
    print(
        f"emitted {work.events:,} events in {work.transactions} transactions "
        f"({time.perf_counter() - started:.1f} s)"
    )
    engine = migrated_engine(f"sqlite:///{workdir / 'catch-up.sqlite3'}")
    indexer = Indexer(chain, engine, start_block=0)
    started = time.perf_counter()
    report = indexer.sync()
    elapsed = time.perf_counter() - started
    assert report.caught_up
    return report.events / elapsed, report.events, report.checkpoint or 0


def revocation_latency(node: AnvilNode, workdir: Path, trials: int) -> tuple[list[float], float]:
    """Seconds from sending a consumer's own revocation to the first refused check."""
    settings = Settings(
        chain="rpc",  # type: ignore[arg-type]
        rpc_url=node.url,
        data_dir=workdir,
        database_url=f"sqlite:///{workdir / 'latency.sqlite3'}",
    )
    ledger = Ledger.open(settings)
    chain = ledger.chain
    consumer = chain.w3.eth.accounts[1]
    ledger.relayer.register_company(1, "Acme SMS", chain.operator.address)
    parsed = contacts.parse_contact(PHONE, default_region="FR")
    ledger.relayer.attest_link(consumer, contacts.commitment(parsed, settings.contact_salt_bytes))

    def send(data: bytes) -> None:
        tx = {"from": consumer, "to": chain.address, "data": HexBytes(data)}
        tx_hash = chain.w3.eth.send_transaction(tx)  # type: ignore[arg-type]
        chain.w3.eth.wait_for_transaction_receipt(tx_hash, poll_latency=0.001)

    def allowed() -> bool:
        result = ledger.checker.check(company_id=1, contact=PHONE, channel=Channel.SMS)
        return result.decision.allowed

    latencies: list[float] = []
    follower = ledger.follow_index()
    try:
        for _ in range(trials):
            send(calldata("setGrant", terms(1, int(Channel.SMS))))
            _until(allowed, True)
            started = time.perf_counter()
            send(calldata("revokeGrant", 1, int(Channel.SMS)))
            _until(allowed, False)
            latencies.append(time.perf_counter() - started)
    finally:
        follower.stop()
    return latencies, settings.index_poll_interval


def _until(probe: Callable[[], bool], wanted: bool, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while probe() != wanted:
        if time.monotonic() > deadline:
            raise AssertionError(f"check never became {wanted}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=50_000, help="events to index")
    parser.add_argument("--trials", type=int, default=20, help="revocations to time")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        with AnvilNode(data_dir=workdir / "anvil", port=_free_port(), state_interval=3600) as node:
            rate, events, blocks = catch_up(node, workdir, args.events)
            latencies, poll = revocation_latency(node, workdir, args.trials)
    record(
        Figure(
            "indexer catch-up from a local anvil node",
            rate,
            "events/s",
            goal=5_000,
            note=f"{events:,} events in {blocks:,} blocks, from genesis into empty SQLite",
        ),
        Figure(
            "revocation to effect (consumer's own tx, worst)",
            max(latencies),
            "s",
            goal=2.0,
            higher_is_better=False,
            note=(
                f"{len(latencies)} revocations: p50 {statistics.median(latencies) * 1000:.0f} ms, "
                f"max {max(latencies) * 1000:.0f} ms; index polled every {poll:g} s; "
                "relayed revocations take effect before the relay returns"
            ),
        ),
    )


if __name__ == "__main__":
    main()
