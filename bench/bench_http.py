"""HTTP checks benchmark: ``.venv/bin/python -m bench.bench_http`` (``make bench-http``).

``POST /v1/checks`` over real HTTP, loaded by wrk from a separate process (64 connections), on
the product started as an operator starts it (``bench.seeded``: ``quota-ledger up``, rate limit
raised, access log as the environment sets it: ``QL_ACCESS_LOG``, on in development), right
beside a bare FastAPI endpoint (``bench.bare``) served the same way and measured in the same
run, so that the ratio says what the product adds to the framework on this machine at this
moment. Bodies vary over the seeded contacts (record=false,
then record=true); one contact in twenty belongs to a consumer with a small quota, which
recording runs exhaust: afterwards its allowed entries in the usage log must equal its quota.

Each figure is the median of ``--repeats`` runs after a warm-up, with the min-max range; the
runs of the product and of the bare app alternate, so that a disturbance of the machine hits
both. Two setups (goals from issue 13):

- SQLite, one API process (``up``): record=false and record=true, >= 2,000 checks/s,
  p99 <= 25 ms, <= 2x the bare endpoint's time per request;
- PostgreSQL, ``serve --workers 4`` beside ``up``: record=true, >= 3,000 checks/s, quotas exact.

``--smoke`` runs the same at small sizes (50 consumers, 2 workers, 1 s warm-up, one 2 s run),
asserts that every row has a number and that the answers had the expected shape (no speed
goal), and writes to a scratch results file.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from bench.loadgen import CHECKS_LUA, Run, Spread, spread, wrk
from bench.report import RESULTS, Figure, record
from bench.seeded import Seeded, seeded_stack, wait_for_workers
from ledger.settings import Settings
from tests.stack import free_port

BARE_ROUTES = ("sync", "async")
# The ratio's baseline: the faster bare route, the stricter comparison.
BASELINE_ROUTE = "async"
EXHAUSTED_EVERY = 20  # one request in twenty asks about the consumer with the small quota


@dataclass(frozen=True)
class Load:
    """How wrk loads a server, and how often."""

    connections: int = 64
    threads: int = 2  # the machine's cores; more when the API listens on more ports
    seconds: float = 10
    warmup: float = 3
    repeats: int = 3


@dataclass(frozen=True)
class Setup:
    """One way of running the product, and the rows measured on it."""

    postgres: bool
    workers: int
    records: tuple[bool, ...]
    goal_rate: float
    goal_p99_ms: float | None
    goal_ratio: float | None

    @property
    def database(self) -> str:
        return "PostgreSQL" if self.postgres else "SQLite"

    @property
    def label(self) -> str:
        return f"{self.database}, {self.workers} API process{'es' if self.workers > 1 else ''}"


SETUPS = (
    Setup(postgres=False, workers=1, records=(False, True), goal_rate=2_000, goal_p99_ms=25,
          goal_ratio=2),
    Setup(postgres=True, workers=4, records=(True,), goal_rate=3_000, goal_p99_ms=None,
          goal_ratio=None),
)  # fmt: skip
# The smoke run's sizes: seconds, not minutes (two workers still exercise several processes).
SMOKE_CONSUMERS, SMOKE_WORKERS = 50, 2


@dataclass
class Measured:
    """The raw runs of one setup, for the figures and for the smoke test's shape checks."""

    setup: Setup
    product: dict[bool, list[Run]]  # by record
    bare: dict[str, list[Run]]  # by route
    allowed_entries: int | None  # of the consumer with the small quota, after the runs
    quota: int


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--consumers", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=10, help="each measured run")
    parser.add_argument("--warmup", type=float, default=3, help="seconds, before measuring")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument(
        "--setup",
        action="append",
        choices=[s.database.lower() for s in SETUPS],
        help="only this setup (repeatable); default every one",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="small sizes, shape checks, scratch results"
    )
    args = parser.parse_args(argv)
    load = Load(
        connections=args.connections,
        seconds=args.seconds,
        warmup=args.warmup,
        repeats=args.repeats,
    )
    consumers, results = args.consumers, args.results
    if args.smoke:
        load = replace(load, seconds=2, warmup=1, repeats=1)
        consumers = min(consumers, SMOKE_CONSUMERS)
    with tempfile.TemporaryDirectory(prefix="ql-bench-http-") as tmp:
        if args.smoke and results == RESULTS:
            results = Path(tmp) / "results.json"
        for number, setup in enumerate(SETUPS):
            if args.setup and setup.database.lower() not in args.setup:
                continue
            if args.smoke:
                setup = replace(setup, workers=min(setup.workers, SMOKE_WORKERS))
            try:
                measured = measure(Path(tmp) / str(number), setup, load, consumers=consumers)
            except pytest.skip.Exception as skipped:  # no PostgreSQL here, and not required
                print(f"{setup.label}: skipped: {skipped}", file=sys.stderr)
                continue
            figures = figures_of(measured, load, consumers=consumers)
            record(*figures, results=results)
            if args.smoke:
                check_shape(measured, figures)


def measure(directory: Path, setup: Setup, load: Load, *, consumers: int) -> Measured:
    """Starts the seeded product and the bare app, warms both up, then alternates their runs."""
    with (
        seeded_stack(
            directory, consumers=consumers, postgres=setup.postgres, workers=setup.workers
        ) as seeded,
        bare_server(directory / "bare", workers=setup.workers) as bare_url,
    ):
        requests_file = directory / "contacts.txt"
        requests_file.write_text("".join(f"{c}\n" for c in _request_contacts(seeded)))

        def product(record_: bool, seconds: float) -> Run:
            return _load(seeded, requests_file, record_, load, seconds)

        def bare(route: str, seconds: float) -> Run:
            return wrk(
                f"{bare_url}/{route}",
                script=CHECKS_LUA,
                script_args=[str(requests_file), "false"],
                connections=load.connections,
                threads=load.threads,
                seconds=seconds,
            )

        for record_ in setup.records:
            product(record_, load.warmup)
        for route in BARE_ROUTES:
            bare(route, load.warmup)
        measured = Measured(
            setup,
            product={r: [] for r in setup.records},
            bare={route: [] for route in BARE_ROUTES},
            allowed_entries=None,
            quota=seeded.exhausted_quota,
        )
        for _ in range(load.repeats):
            for route in BARE_ROUTES:
                measured.bare[route].append(bare(route, load.seconds))
            for record_ in setup.records:
                measured.product[record_].append(product(record_, load.seconds))
        if True in setup.records:
            measured.allowed_entries = seeded.allowed_entries(seeded.exhausted_consumer)
    return measured


def _request_contacts(seeded: Seeded) -> list[str]:
    """Every seeded contact once, and the one with the small quota every 20th request."""
    contacts = list(seeded.contacts)
    for at in range(0, len(contacts) + len(contacts) // EXHAUSTED_EVERY, EXHAUSTED_EVERY):
        contacts.insert(at, seeded.contacts[0])
    return contacts


def _load(seeded: Seeded, requests_file: Path, record_: bool, load: Load, seconds: float) -> Run:
    ports = [urlsplit(url).port or 80 for url in seeded.urls] if len(seeded.urls) > 1 else []
    return wrk(
        f"{seeded.url}/v1/checks",
        script=CHECKS_LUA,
        script_args=[str(requests_file), "true" if record_ else "false"],
        headers=[f"Authorization: Bearer {seeded.api_key}"],
        connections=load.connections,
        threads=max(load.threads, len(ports)),
        seconds=seconds,
        ports=ports,
    )


@contextmanager
def bare_server(directory: Path, *, workers: int) -> Iterator[str]:
    """``bench.bare`` in its own process(es), with the product's access-log choice; its URL."""
    directory.mkdir(parents=True)
    port = free_port()
    command = [sys.executable, "-m", "bench.bare", "--port", str(port), "--workers", str(workers)]
    # The product's own choice, from the same environment (QL_ACCESS_LOG; on in development).
    if not Settings().access_log_enabled:
        command.append("--no-access-log")
    log = directory / "bare.log"
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_workers(log, workers, 120)
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the bare app did not start:\n{log.read_text()}")
            try:
                body = {"contact": "+33 6 12 00 00 00", "channel": "sms"}
                if httpx.post(f"{url}/async", json=body, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(30)


def figures_of(measured: Measured, load: Load, *, consumers: int) -> list[Figure]:
    """Per product row: checks/s, p99 and the time-per-request ratio to the bare endpoint,
    each with its baseline; then the bare routes themselves and the quota's exactness."""
    setup = measured.setup
    processes = f"{setup.workers} process{'es' if setup.workers > 1 else ''}"
    how = (
        f"median of {load.repeats} runs of {load.seconds:g} s after {load.warmup:g} s of warm-up"
        f" (range in brackets); wrk -c{load.connections} from a separate process; "
        f"{consumers:,} seeded consumers; indicative on a shared 2-core machine"
    )
    base_runs = measured.bare[BASELINE_ROUTE]
    base_rate, base_p99 = spread(base_runs, "rate"), spread(base_runs, "p99_ms")
    sync_rate = spread(measured.bare["sync"], "rate")
    figures: list[Figure] = []
    for record_, runs in measured.product.items():
        name = f"HTTP checks record={str(record_).lower()}, {setup.label}"
        rate, p99 = spread(runs, "rate"), spread(runs, "p99_ms")
        # Time per request at a fixed concurrency: the inverse of the throughput.
        ratios = [b.rate / r.rate for b, r in zip(base_runs, runs, strict=True)]
        shape = (
            f"answers: {sum(r.allowed for r in runs):,} allowed, "
            f"{sum(r.refused for r in runs):,} refused, {sum(r.non2xx for r in runs):,} non-2xx, "
            f"{sum(r.socket_errors for r in runs):,} socket errors"
        )
        figures += [
            _figure(f"{name}: checks/s", rate, "/s", setup.goal_rate, True, base_rate.median,
                    f"{how}; baseline: bare {BASELINE_ROUTE} route, {processes} ({shape})"),
            _figure(f"{name}: p99 latency", p99, "ms", setup.goal_p99_ms, False, base_p99.median,
                    f"{how}; p50 {spread(runs, 'p50_ms').median:.1f} ms, "
                    f"p90 {spread(runs, 'p90_ms').median:.1f} ms, "
                    f"max {spread(runs, 'max_ms').median:.0f} ms"),
            _figure(f"{name}: time per request / bare",
                    Spread(statistics.median(ratios), min(ratios), max(ratios)),
                    "x", setup.goal_ratio, False, None,
                    f"{how}; bare {BASELINE_ROUTE} {base_rate.median:,.0f}/s; against the bare "
                    f"sync route ({sync_rate.median:,.0f}/s): "
                    f"{sync_rate.median / rate.median:.2f}x"),
        ]  # fmt: skip
    for route, runs in measured.bare.items():
        figures.append(
            _figure(
                f"HTTP bare FastAPI {route} route, {processes}: requests/s",
                spread(runs, "rate"),
                "/s",
                None,
                True,
                None,
                f"{how}; p99 {spread(runs, 'p99_ms').median:.1f} ms; the baseline of {setup.label}",
            )
        )
    if measured.allowed_entries is not None:
        if measured.allowed_entries < measured.quota:
            raise AssertionError(
                f"{setup.label}: the small quota ({measured.quota}) was not exhausted "
                f"({measured.allowed_entries} allowed): the exactness check measured nothing"
            )
        figures.append(
            Figure(
                f"HTTP checks record=true, {setup.label}: allowed beyond the quota",
                measured.allowed_entries - measured.quota,
                "entries",
                goal=0,
                higher_is_better=False,
                note=f"a consumer with a quota of {measured.quota} asked about in one request in "
                f"{EXHAUSTED_EVERY} of every recording run: its allowed entries in the usage "
                f"log, counted after the runs, minus its quota",
            )
        )
    return figures


def _figure(
    name: str,
    values: Spread,
    unit: str,
    goal: float | None,
    higher_is_better: bool,
    baseline: float | None,
    note: str,
) -> Figure:
    return Figure(
        name,
        values.median,
        unit,
        goal=goal,
        higher_is_better=higher_is_better,
        baseline=baseline,
        note=note,
        low=values.low,
        high=values.high,
    )


def check_shape(measured: Measured, figures: Sequence[Figure]) -> None:
    """The smoke test: every row has a number, and the answers were what the seeding implies.

    Raises:
        AssertionError: a row is missing or empty, or an answer was not 2xx, or the decisions
            were not mostly allowed (the seeded grants) with refusals only from the small quota.
    """
    setup = measured.setup
    expected = {
        f"HTTP checks record={str(r).lower()}, {setup.label}: {what}"
        for r in setup.records
        for what in ("checks/s", "p99 latency", "time per request / bare")
    }
    produced = {f.name: f for f in figures}
    missing = expected - produced.keys()
    assert not missing, f"rows not produced: {sorted(missing)}"
    for name in expected:
        assert produced[name].value > 0, f"{name}: {produced[name].value}"
    for record_, runs in measured.product.items():
        for run in runs:
            label = f"{setup.label}, record={record_}: {run}"
            assert run.requests > 0 and run.non2xx == 0 and run.socket_errors == 0, label
            assert run.allowed + run.refused == run.requests, label
            # Refusals come only from the small quota, asked in one request in twenty.
            assert run.refused <= 2 * run.requests // EXHAUSTED_EVERY + 64, label
    for route, runs in measured.bare.items():
        for run in runs:
            assert run.requests > 0 and run.non2xx == 0 and run.socket_errors == 0, (route, run)
    if measured.allowed_entries is not None:
        assert measured.allowed_entries == measured.quota, (
            f"{setup.label}: {measured.allowed_entries} allowed, quota {measured.quota}"
        )


if __name__ == "__main__":
    main()
