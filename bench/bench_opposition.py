"""Opposition-list and decision benchmarks: ``.venv/bin/python -m bench.bench_opposition``.

Builds a 20,000,000-number US list in the FTC flat-file format, imports it, and measures in
fresh child processes (so each peak RSS is that phase's alone): the list's memory, the bulk
lookup of 1,000,000 numbers, and a scrub of 1,000,000 numbers as typed (parsed, then looked
up). Then the in-process decision rate (check-and-record is ``bench.bench_checks``).

Options: ``--numbers N`` (default 20,000,000), ``--queries N`` (1,000,000), ``--workers N``
(processes for parsing, default: the CPUs available).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.report import Figure, record
from ledger.domain.channels import Channel
from ledger.domain.decision import OppositionStatus, Snapshot, decide
from ledger.domain.grants import ALL_DAYS, ALL_HOURS, OPEN_ENDED, CompanyStatus, GrantRecord
from ledger.domain.state import CompanyRecord, ConsumerRecord
from ledger.lists.cache import OppositionCache
from ledger.lists.formats import ListFormat
from ledger.lists.importer import DAY, ListImport, import_file
from ledger.lists.normalise import normalise_many
from ledger.schema import migrated_engine

SEED = 20_260_811


def _rss_mb() -> float:
    """Peak resident memory of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _rss_now_mb() -> float:
    """Current resident memory (mapped list pages included once touched)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _random_nanp(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.integers(200, 1000, n), rng.integers(2_000_000, 10_000_000, n)


# ----- phases run in child processes -----


def phase_write(directory: Path, numbers: int) -> dict[str, float]:
    rng = np.random.default_rng(SEED)
    path = directory / "dnc.txt"
    start = time.perf_counter()
    with path.open("w") as out:
        for offset in range(0, numbers, 1_000_000):
            areas, locals_ = _random_nanp(rng, min(1_000_000, numbers - offset))
            out.write(
                "\n".join(f"{a},{b}" for a, b in zip(areas.tolist(), locals_.tolist(), strict=True))
            )
            out.write("\n")
    return {"seconds": time.perf_counter() - start, "bytes": path.stat().st_size}


def phase_import(directory: Path, workers: int) -> dict[str, float]:
    cache = OppositionCache(engine=migrated_engine(_db(directory)), directory=directory / "lists")
    start = time.perf_counter()
    report = import_file(
        directory / "dnc.txt",
        ListImport(region="US", fmt=ListFormat.DNC, workers=workers),
        cache=cache,
        fetched_at=int(time.time()) - DAY,
    )
    return {
        "seconds": time.perf_counter() - start,
        "count": report.snapshot.count,
        "lines": report.snapshot.lines,
        "rss_mb": _rss_mb(),
    }


def phase_lookup(directory: Path, queries: int, workers: int) -> dict[str, float]:
    cache = OppositionCache(engine=migrated_engine(_db(directory)), directory=directory / "lists")
    rss_before = _rss_now_mb()
    start = time.perf_counter()
    [meta] = cache.current()
    listed = cache.contains_many(np.zeros(1, dtype=np.uint64), region="US")  # maps, checks
    load_seconds = time.perf_counter() - start
    array_mb = os.path.getsize(directory / "lists" / f"{meta.version}.npy") / 2**20
    asked = asked_numbers(directory / "lists" / f"{meta.version}.npy", queries)
    start = time.perf_counter()
    listed = cache.contains_many(asked, region="US")
    lookup_seconds = time.perf_counter() - start
    rss_membership = _rss_now_mb()
    typed = typed_numbers(asked)
    start = time.perf_counter()
    parsed, valid = normalise_many(typed, default_region="US", workers=workers)
    scrubbed = cache.contains_many(parsed[valid], region="US")
    scrub_seconds = time.perf_counter() - start
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "array_mb": array_mb,
        "count": meta.count,
        "load_seconds": load_seconds,
        "lookup_seconds": lookup_seconds,
        "listed": int(listed.sum()),
        "scrub_seconds": scrub_seconds,
        "scrub_valid": int(valid.sum()),
        "scrub_listed": int(scrubbed.sum()),
        "rss_mb": _rss_mb(),
        "rss_before_mb": rss_before,
        "rss_membership_mb": rss_membership,
        "worker_rss_mb": children,
    }


def asked_numbers(snapshot: Path, queries: int) -> np.ndarray:
    """E.164 integers to look up: half from the list's snapshot file, half random NANP
    numbers (almost all unlisted), shuffled."""
    rng = np.random.default_rng(SEED + 1)
    on_file = np.load(snapshot, mmap_mode="r")
    half = queries // 2
    asked = np.empty(queries, dtype=np.uint64)
    asked[:half] = on_file[rng.integers(0, on_file.size, half)]
    areas, locals_ = _random_nanp(rng, queries - half)
    asked[half:] = 10_000_000_000 + areas * 10_000_000 + locals_
    rng.shuffle(asked)
    return asked


def typed_numbers(asked: np.ndarray) -> list[str]:
    """``asked`` as a company uploads them: typed, to be parsed by phonenumbers."""
    return [f"({n[1:4]}) {n[4:7]}-{n[7:]}" for n in map(str, asked.tolist())]


def _db(directory: Path) -> str:
    return f"sqlite:///{directory / 'bench.sqlite3'}"


def _child(phase: str, directory: Path, *args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_opposition", "--phase", phase, str(directory), *args],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# ----- decisions -----

ACTIVE = CompanyRecord("0x" + "11" * 20, CompanyStatus.ACTIVE)
GRANT = GrantRecord(1_000_000, 3600, 0, OPEN_ENDED, ALL_HOURS, ALL_DAYS, 1, 0, True)


def bench_decisions(seconds: float = 3.0) -> tuple[float, int]:
    now = int(time.time())
    fresh = OppositionStatus("US-1", False, now - DAY, 31 * DAY)
    base = Snapshot(
        now=now,
        company_id=1,
        company=ACTIVE,
        channel=Channel.SMS,
        region="US",
        time_zone="America/New_York",
        consumer="0x" + "22" * 20,
        grant=GRANT,
        consumer_record=ConsumerRecord(0, 10, 30 * DAY, 1),
        block_number=1,
        window=[now - 10] * 3,
        cap_window=[now - 10] * 3,
        opposition=fresh,
    )
    # A mix: grant allows, quota used up, no grant on a fresh list, listed, stale.
    snaps = [
        base,
        replace(base, window=[now - 10] * GRANT.max_contacts),
        replace(base, consumer=None, grant=None),
        replace(base, consumer=None, grant=None, opposition=replace(fresh, listed=True)),
        replace(base, grant=None, opposition=replace(fresh, fetched_at=now - 40 * DAY)),
    ]
    snaps = [replace(s, window=s.window[:100]) for s in snaps]
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for s in snaps * 200:
            decide(s)
        done += len(snaps) * 200
    return done / (time.perf_counter() - start), done


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--phase")
    parser.add_argument("directory", nargs="?")
    parser.add_argument("--numbers", type=int, default=20_000_000)
    parser.add_argument("--queries", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    if args.phase:
        directory = Path(args.directory)
        result = {
            "write": lambda: phase_write(directory, args.numbers),
            "import": lambda: phase_import(directory, args.workers),
            "lookup": lambda: phase_lookup(directory, args.queries, args.workers),
        }[args.phase]()
        print(json.dumps(result))
        return

    cpus = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="ql-bench-") as tmp:
        directory = Path(tmp)
        common = ["--numbers", str(args.numbers), "--queries", str(args.queries)]
        common += ["--workers", str(args.workers)]
        written = _child("write", directory, *common)
        imported = _child("import", directory, *common)
        looked = _child("lookup", directory, *common)
        n, q = int(looked["count"]), args.queries
        record(
            Figure(
                f"opposition: {n:,}-number list, array size",
                looked["array_mb"],
                "MB",
                goal=300,
                higher_is_better=False,
                note="sorted uint64 .npy, memory-mapped (file-backed pages, shared)",
            ),
            Figure(
                f"opposition: bulk lookup of {q:,} numbers",
                looked["lookup_seconds"],
                "s",
                goal=10,
                higher_is_better=False,
                note=f"E.164 integers, np.searchsorted; {int(looked['listed']):,} listed; "
                f"first map + digest check {looked['load_seconds']:.2f} s",
            ),
            Figure(
                f"opposition: scrub of {q:,} typed numbers (parse + lookup)",
                looked["scrub_seconds"],
                "s",
                goal=10,
                higher_is_better=False,
                note=f"phonenumbers in {args.workers} processes on {cpus} CPUs; "
                f"{int(looked['scrub_valid']):,} valid",
            ),
            Figure(
                f"opposition: RSS holding the list after the {q:,} lookup",
                looked["rss_membership_mb"],
                "MB",
                goal=300,
                higher_is_better=False,
                baseline=looked["rss_before_mb"],
                note="whole process (Python, numpy, SQLAlchemy, phonenumbers; baseline = the "
                "same before the list was mapped) with every list page resident",
            ),
            Figure(
                "opposition: peak RSS of the lookup process, scrub included",
                looked["rss_mb"],
                "MB",
                higher_is_better=False,
                note=f"adds the {q:,} typed strings of the scrub; each parsing worker "
                f"peaked at {looked['worker_rss_mb']:.0f} MB",
            ),
            Figure(
                f"opposition: import of {int(imported['lines']):,} DNC lines",
                imported["seconds"],
                "s",
                higher_is_better=False,
                note=f"{int(imported['count']):,} distinct numbers; peak RSS "
                f"{imported['rss_mb']:.0f} MB (sort and de-duplicate in memory); "
                f"file {written['bytes'] / 2**20:.0f} MB",
            ),
        )
        rate, done = bench_decisions()
        record(
            Figure(
                "decisions in-process (quotas.decide)",
                rate,
                "/s",
                goal=50_000,
                note=f"{done:,} decisions over 5 snapshot kinds (grant, quota used, "
                "no grant on a fresh list, listed, stale list)",
            )
        )


if __name__ == "__main__":
    main()
