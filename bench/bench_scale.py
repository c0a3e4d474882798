"""Check latency against the size of the ledger: 1k grants vs 1M grants in the event index.

For each size a fresh local anvil node is seeded with that many real signed grants
(``bench.seed``: N/4 consumers, each linked to a phone number and granting company 1 on four
channels) and the product's indexer catches up into a fresh SQLite database. Then the same
workload runs against both: ``Checker.check`` in process (record=False, one thread) on the
first ``NUMBERS`` seeded numbers in turn, each timed. Figure: p99 at the large size over p99 at
the small one (goal <= 1.5), the p50s in the note. In process, not over HTTP: the figure is
about what the index's size does to a check, which the HTTP stack around it would only blur.

Run: ``.venv/bin/python -m bench.bench_scale`` (``--large 1000000``; ``--smoke`` for a quick
run at tiny sizes). ``bench_scale(...)`` is the entry point for ``make bench``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.report import Figure, record
from bench.seed import SeededLedger, phone
from ledger.domain.channels import Channel
from ledger.services.checks import Checker

NUMBERS = 200  # seeded numbers the workload checks in turn (a 1k-grant ledger has 250)
RATIO_GOAL = 1.5


@dataclass(frozen=True)
class Latency:
    grants: int
    p50_ms: float
    p99_ms: float
    node_rss_mib: float


def open_hour(checker: Checker) -> int:
    """A time in the coming days at which calling the seeded (New York) numbers is lawful.

    The statutory hours and holidays would otherwise refuse every check run at night there.
    """
    day = int(time.time()) // 86400 * 86400
    for offset in range(15):
        at = day + offset * 86400 + 17 * 3600  # noon or 1 pm in New York
        result = checker.check(company_id=1, contact=phone(0), channel=Channel.SMS, now=at)
        if at > time.time() and result.decision.allowed:
            return at
    raise AssertionError("no lawful hour in the next two weeks for the seeded numbers")


def time_checks(checker: Checker, *, checks: int, numbers: int = NUMBERS) -> list[float]:
    """Seconds of each of ``checks`` checks; raises on a refusal (it would measure refusals)."""
    at = open_hour(checker)
    for i in range(min(checks, 100)):  # warm-up: phonenumbers metadata, SQLite page cache
        checker.check(company_id=1, contact=phone(i % numbers), channel=Channel.SMS, now=at)
    times: list[float] = []
    for i in range(checks):
        started = time.perf_counter()
        result = checker.check(
            company_id=1, contact=phone(i % numbers), channel=Channel.SMS, now=at
        )
        times.append(time.perf_counter() - started)
        if not result.decision.allowed:
            raise AssertionError(f"check of {phone(i % numbers)} refused: {result.decision.codes}")
    return times


def bench_scale(
    *,
    sizes: tuple[int, ...] = (1_000, 250_000, 500_000, 750_000, 1_000_000),
    checks: int = 5_000,
    save: bool = True,
) -> list[Latency]:
    """Grows one seeded ledger through ``sizes`` (the first is the baseline), timing the same
    checks at each size; with ``save``, records the ratio at each size as it is reached (so a
    run cut short still leaves its largest size in bench/results.json)."""
    from bench.bench_indexer import _free_port

    numbers = min(NUMBERS, -(-sizes[0] // 4))  # every checked number has a grant at all sizes
    seen: list[Latency] = []
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="ql-bench-scale-") as tmp,
        SeededLedger(Path(tmp), port=_free_port()) as ledger,
    ):

        def show(done: int, seconds: float) -> None:
            if done // 50_000 != (done - 400) // 50_000:  # a line per 50k grants seeded
                rss, _ = ledger.node_rss_mib()
                print(f"  {done:,} grants, {seconds:.0f} s; node RSS {rss:,.0f} MiB", flush=True)

        for size in sizes:
            grown = ledger.grow_to(size, progress=show)
            times = sorted(time_checks(ledger.ledger.checker, checks=checks, numbers=numbers))
            seen.append(
                Latency(
                    size,
                    statistics.median(times) * 1000,
                    times[min(len(times) - 1, int(len(times) * 0.99))] * 1000,
                    ledger.node_rss_mib()[0],
                )
            )
            base, here = seen[0], seen[-1]
            print(
                f"{size:>10,} grants: p50 {here.p50_ms:.2f} ms p99 {here.p99_ms:.2f} ms "
                f"(x{here.p99_ms / base.p99_ms:.2f}); seeded {grown.seeded.rate:,.0f} grants/s, "
                f"indexed {grown.index_events / grown.index_seconds:,.0f} events/s, node RSS "
                f"{here.node_rss_mib:,.0f} MiB, {time.perf_counter() - started:.0f} s in",
                flush=True,
            )
            if save and here is not base:
                record(_figure(base, here, checks=checks, numbers=numbers))
    return seen


def _figure(base: Latency, here: Latency, *, checks: int, numbers: int) -> Figure:
    return Figure(
        "check latency, 1M vs 1k grants (p99 ratio)",
        here.p99_ms / base.p99_ms,
        "x",
        goal=RATIO_GOAL,
        higher_is_better=False,
        baseline=round(base.p99_ms, 3),
        note=(
            f"{here.grants:,} vs {base.grants:,} grants in the index (one node grown, real "
            f"signed grants); {checks:,} checks (record=false) of {numbers} seeded numbers, in "
            f"process through Checker.check, one thread, SQLite: p50 {here.p50_ms:.2f} vs "
            f"{base.p50_ms:.2f} ms, p99 {here.p99_ms:.2f} vs {base.p99_ms:.2f} ms; node RSS "
            f"{here.node_rss_mib:,.0f} MiB"
        ),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--sizes",
        type=lambda v: tuple(int(n) for n in v.split(",")),
        default=(1_000, 250_000, 500_000, 750_000, 1_000_000),
        help="grants at each step, comma-separated; the first is the baseline",
    )
    parser.add_argument("--checks", type=int, default=5_000)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, nothing recorded")
    args = parser.parse_args(argv)
    if args.smoke:
        bench_scale(sizes=(400, 1_200), checks=300, save=False)
    else:
        bench_scale(sizes=args.sizes, checks=args.checks)


if __name__ == "__main__":
    main()
