"""Replay benchmark: ``.venv/bin/python -m bench.bench_replay [--entries N] [--smoke]``.

A local node seeded with real signed grants (``bench.seed``: each consumer links a US number
and grants company 1 on four channels), and a usage log of ``--entries`` decisions (default
200,000) recorded by the product's own batch check (``services.bulk.check_many``): SMS,
calls and messages to seeded numbers and to numbers no one linked, at times that run through
day and night in New York, so that the log holds allows, statutory-hours refusals and
refusals for want of a link. Then, as an auditor:

- the chain's events are read over the RPC into the replay's own history (timed apart);
- the log is read from the database;
- every decision is replayed (``audit.replay``), which must find nothing.

Figures: decisions replayed per second (goal >= 50,000), and end to end from the database.
``--smoke``: a small log, to check that the benchmark runs; its figures are not recorded.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from eth_account import Account

from bench.bench_indexer import _free_port
from bench.report import Figure, record
from bench.seed import COMPANY, SeededLedger, phone
from ledger.audit.chain_state import ChainHistory
from ledger.audit.replay import entries_from_database, replay
from ledger.chain.client import Chain
from ledger.domain.channels import Channel
from ledger.services.bulk import Item, check_many

GOAL = 50_000  # entries/s
BATCH = 1_000  # items per recorded batch
# Tuesday 1 September 2026, 10:00 in New York; each batch 20 minutes after the one before.
START = int(datetime(2026, 9, 1, 14, 0, tzinfo=UTC).timestamp())
STEP = 20 * 60
CHANNELS = (Channel.SMS, Channel.CALL, Channel.MESSAGING)


def build_log(s: SeededLedger, *, entries: int, consumers: int) -> dict[str, int]:
    """Records ``entries`` decisions through the batch check; returns how many were allowed."""
    checker = s.ledger.checker
    # The index is synced and nothing changes on chain while the log is written.
    s.ledger.state.head_ttl = 3600.0
    allowed = done = 0
    at = START
    while done < entries:
        size = min(BATCH, entries - done)
        items = [
            # One number in twenty was never linked: refused, contact_not_linked.
            Item(phone((done + i) % (consumers * 21 // 20)), CHANNELS[(done + i) % 3])
            for i in range(size)
        ]
        for outcome in check_many(checker, company_id=COMPANY, items=items, record=True, now=at):
            assert outcome.result is not None and outcome.result.receipt is not None
            allowed += outcome.result.decision.allowed
        done += size
        at += STEP
    return {"entries": done, "allowed": allowed}


def run(*, entries: int, consumers: int, workdir: Path, workers: int) -> dict[str, float]:
    """Entries/s of the replay in one process and in ``workers``, end to end from the
    database, and the chain read (seconds, events)."""
    with SeededLedger(workdir, port=_free_port()) as s:
        s.grow_to(4 * consumers)
        built = build_log(s, entries=entries, consumers=consumers)
        print(f"log: {built['entries']:,} decisions, {built['allowed']:,} allowed", flush=True)

        chain = Chain.connect(s.node.url, operator_key=Account.create().key.hex(), timeout=120.0)
        chain.use(s.ledger.chain.address)
        started = time.perf_counter()
        history = ChainHistory.read(chain)
        chain_seconds = time.perf_counter() - started

        started = time.perf_counter()
        log = list(entries_from_database(s.ledger.engine))
        read_seconds = time.perf_counter() - started
        started = time.perf_counter()
        report = replay(log, history)
        replay_seconds = time.perf_counter() - started
        started = time.perf_counter()
        parallel = replay(log, history, workers=workers)
        parallel_seconds = time.perf_counter() - started
        for found in (report, parallel):
            if not found.ok or found.agreed != entries:
                lines = [f.line() for f in found.findings[:5]]
                raise SystemExit(f"bench-replay: the clean log did not replay clean: {lines}")
        return {
            "one": entries / replay_seconds,
            "parallel": entries / parallel_seconds,
            "end_to_end": entries / (read_seconds + min(replay_seconds, parallel_seconds)),
            "chain_seconds": chain_seconds,
            "events": history.events,
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--consumers", type=int, default=2_000)
    parser.add_argument("--smoke", action="store_true", help="small sizes, for a quick check")
    args = parser.parse_args(argv)
    entries, consumers = (5_000, 100) if args.smoke else (args.entries, args.consumers)
    workers = max(2, len(os.sched_getaffinity(0)))
    with tempfile.TemporaryDirectory(prefix="ql-bench-replay-") as tmp:
        got = run(entries=entries, consumers=consumers, workdir=Path(tmp), workers=workers)
    print(f"chain read: {got['events']:,.0f} events in {got['chain_seconds']:.1f} s")
    state = f"ledger state from {got['events']:,.0f} chain events"
    figures = [
        Figure(
            "audit replay: decisions replayed",
            max(got["one"], got["parallel"]),
            "entries/s",
            goal=GOAL,
            baseline=got["one"],
            note=f"{entries:,} entries in memory, {workers} processes (baseline: one), {state}",
        ),
        Figure(
            "audit replay: end to end from the database",
            got["end_to_end"],
            "entries/s",
            note=f"{entries:,} entries read from SQLite, then replayed",
        ),
    ]
    if args.smoke:
        # The smoke run checks that the benchmark still runs; its small figures are not results.
        for f in figures:
            print(f"{f.name:<50} {f.value:>14,.2f} {f.unit} (smoke, not recorded)")
        return
    record(*figures)


if __name__ == "__main__":
    main()
