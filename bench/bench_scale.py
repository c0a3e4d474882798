"""Check latency against the size of the ledger: 1k grants vs 1M grants in the event index.

Two local anvil nodes are seeded with real signed grants (``bench.seed``: N/4 consumers, each
linked to a phone number and granting company 1 on four channels), each with the product's
indexer caught up into its own SQLite database: the baseline with 1k grants, the other grown
step by step to 1M. At each step the same workload runs against both, interleaved in rounds of
50 so that the rest of the machine weighs on both alike: ``Checker.check`` in process
(record=False, one thread) on the first ``NUMBERS`` seeded numbers in turn, each timed.
Figure: p99 of the grown ledger over p99 of the baseline (goal <= 1.5), the p50s in the note.
In process, not over HTTP: the figure is about what the index's size does to a check, which
the HTTP stack around it would only blur.

Run: ``.venv/bin/python -m bench.bench_scale`` (``--sizes 1000,100000,1000000``; ``--smoke``
for a quick run at tiny sizes). ``bench_scale(...)`` is the entry point for ``make bench``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Sequence
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


def time_checks(
    checkers: Sequence[Checker], *, checks: int, numbers: int = NUMBERS, round_: int = 50
) -> list[list[float]]:
    """Seconds of each of ``checks`` checks on every checker, in alternating rounds of
    ``round_`` (so that what else the machine does falls on all of them alike); raises on a
    refusal (it would measure refusals, not checks)."""
    at = [open_hour(c) for c in checkers]
    for checker, now in zip(checkers, at, strict=True):  # warm-up: metadata, page cache
        for i in range(min(checks, 100)):
            checker.check(company_id=1, contact=phone(i % numbers), channel=Channel.SMS, now=now)
    times: list[list[float]] = [[] for _ in checkers]
    for start in range(0, checks, round_):
        for checker, now, mine in zip(checkers, at, times, strict=True):
            for i in range(start, min(start + round_, checks)):
                contact = phone(i % numbers)
                started = time.perf_counter()
                result = checker.check(company_id=1, contact=contact, channel=Channel.SMS, now=now)
                mine.append(time.perf_counter() - started)
                if not result.decision.allowed:
                    raise AssertionError(f"check of {contact} refused: {result.decision.codes}")
    return times


def _latency(grants: int, times: list[float], rss_mib: float) -> Latency:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return Latency(grants, statistics.median(ordered) * 1000, p99 * 1000, rss_mib)


def bench_scale(
    *,
    sizes: tuple[int, ...] = (1_000, 250_000, 500_000, 750_000, 1_000_000),
    checks: int = 5_000,
    save: bool = True,
) -> list[tuple[Latency, Latency]]:
    """Grows one seeded ledger through ``sizes[1:]`` and, at each size, times the same checks
    on it and on a second ledger of ``sizes[0]`` grants (the baseline), interleaved. With
    ``save``, records the ratio at each size as it is reached (so a run cut short still leaves
    its largest size in bench/results.json). Returns (baseline, grown) at each size."""
    from bench.bench_indexer import _free_port

    numbers = min(NUMBERS, -(-sizes[0] // 4))  # every checked number has a grant at all sizes
    seen: list[tuple[Latency, Latency]] = []
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="ql-bench-scale-") as tmp,
        SeededLedger(Path(tmp) / "base", port=_free_port()) as base,
        SeededLedger(Path(tmp) / "grown", port=_free_port()) as grown,
    ):
        base.grow_to(sizes[0])

        def show(done: int, seconds: float) -> None:
            if done // 50_000 != (done - 400) // 50_000:  # a line per 50k grants seeded
                rss, _ = grown.node_rss_mib()
                print(f"  {done:,} grants, {seconds:.0f} s; node RSS {rss:,.0f} MiB", flush=True)

        for size in sizes[1:]:
            growth = grown.grow_to(size, progress=show)
            small_times, large_times = time_checks(
                [base.ledger.checker, grown.ledger.checker], checks=checks, numbers=numbers
            )
            small = _latency(sizes[0], small_times, base.node_rss_mib()[0])
            large = _latency(size, large_times, grown.node_rss_mib()[0])
            seen.append((small, large))
            print(
                f"{size:>10,} vs {sizes[0]:,} grants: p50 {large.p50_ms:.2f} vs "
                f"{small.p50_ms:.2f} ms, p99 {large.p99_ms:.2f} vs {small.p99_ms:.2f} ms "
                f"(x{large.p99_ms / small.p99_ms:.2f}); seeded {growth.seeded.rate:,.0f} "
                f"grants/s, indexed {growth.index_events / growth.index_seconds:,.0f} events/s, "
                f"node RSS {large.node_rss_mib:,.0f} MiB, {time.perf_counter() - started:.0f} s in",
                flush=True,
            )
            if save:
                record(_figure(small, large, checks=checks, numbers=numbers))
    return seen


def _figure(base: Latency, here: Latency, *, checks: int, numbers: int) -> Figure:
    return Figure(
        # Named by the sizes reached: a run stopped short of 1M must not read as the 1M figure.
        f"check latency, {here.grants:,} vs {base.grants:,} grants (p99 ratio)",
        here.p99_ms / base.p99_ms,
        "x",
        goal=RATIO_GOAL,
        higher_is_better=False,
        baseline=round(base.p99_ms, 3),
        note=(
            f"{here.grants:,} vs {base.grants:,} grants in the index (real signed grants, two "
            f"nodes); {checks:,} checks each (record=false) of {numbers} seeded numbers, in "
            f"process through Checker.check, one thread, SQLite, the two interleaved: p50 "
            f"{here.p50_ms:.2f} vs {base.p50_ms:.2f} ms, p99 {here.p99_ms:.2f} vs "
            f"{base.p99_ms:.2f} ms; node RSS {here.node_rss_mib:,.0f} MiB"
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
