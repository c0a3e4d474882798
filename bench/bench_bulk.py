"""Batch checks and CSV scrubs over HTTP: ``.venv/bin/python -m bench.bench_bulk [--smoke]``.

Starts the product (``quota-ledger up``, tests/stack.py) in a temporary directory and measures,
each beside a baseline taken in the same run:

- ``POST /v1/checks/batch`` of 10,000 contacts (contacts/s, median of repetitions), against
  the single check called in a loop in this process on the same database and node;
- ``POST /v1/scrub`` of 1,000,000 typed US numbers against a 20,000,000-number list imported
  into the product (seconds, and the server's peak RSS from /proc/<pid>/status VmHWM),
  against the plain script: phonenumbers parse plus numpy lookup of the same file, in process.

The list and the typed numbers are those of ``bench.bench_opposition``. ``run(SMOKE)`` is the
small run ``make bench-smoke`` calls.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from bench.bench_opposition import asked_numbers, phase_write, typed_numbers
from bench.report import RESULTS, Figure, record
from ledger.domain.channels import Channel
from ledger.lists.cache import OppositionCache
from ledger.lists.formats import ListFormat
from ledger.lists.importer import DAY, ListImport, import_file
from ledger.lists.normalise import normalise_many
from ledger.runtime import Ledger
from ledger.schema import migrated_engine
from ledger.settings import Settings
from tests.stack import Stack


@dataclass(frozen=True)
class Sizes:
    batch: int  # contacts per batch
    repetitions: int  # batches timed (the median counts)
    singles: int  # single checks timed in process, the batch's baseline
    list_numbers: int  # numbers of the opposition list
    scrub_rows: int  # typed numbers scrubbed


FULL = Sizes(
    batch=10_000, repetitions=5, singles=2_000, list_numbers=20_000_000, scrub_rows=1_000_000
)
SMOKE = Sizes(batch=1_000, repetitions=2, singles=200, list_numbers=100_000, scrub_rows=10_000)


def phone(i: int) -> str:
    """A French mobile as typed; the batch's contacts are unlinked, as most of a file is."""
    return (
        f"06 {20 + i // 1_000_000:02d} {i // 10_000 % 100:02d} {i // 100 % 100:02d} {i % 100:02d}"
    )


def run(sizes: Sizes = FULL, results: Path = RESULTS) -> list[Figure]:
    """Runs both benchmarks on a fresh product and records their figures in ``results``."""
    with tempfile.TemporaryDirectory(prefix="ql-bench-bulk-") as tmp:
        directory = Path(tmp)
        (directory / "up").mkdir()
        up = Stack(directory / "up", env={"QL_RATE_LIMIT_PER_MINUTE": str(10**9)})
        try:
            up.start()
            up.register_company()
            figures = _batch(up, sizes)
            record(*figures, results=results)  # kept even if the scrub fails
            scrubbed = _scrub(up, directory, sizes)
            record(*scrubbed, results=results)
        finally:
            up.stop()
    return [*figures, *scrubbed]


def _batch(up: Stack, sizes: Sizes) -> list[Figure]:
    items = [{"contact": phone(i), "channel": "sms"} for i in range(sizes.batch)]
    headers = {"Authorization": f"Bearer {up.api_key}"}
    rates = []
    with httpx.Client(base_url=up.url, headers=headers, timeout=600) as client:
        # Warm-up: a batch big enough to start the server's parsing processes (once per server).
        warm = [{"contact": phone(i), "channel": "sms"} for i in range(4_000)]
        client.post("/v1/checks/batch", json={"items": warm}).raise_for_status()
        for _ in range(sizes.repetitions):
            start = time.perf_counter()
            response = client.post("/v1/checks/batch", json={"items": items})
            elapsed = time.perf_counter() - start
            response.raise_for_status()
            assert len(response.json()["results"]) == sizes.batch
            rates.append(sizes.batch / elapsed)
    single = _single_rate(up, items[: sizes.singles])
    return [
        Figure(
            f"bulk: POST /v1/checks/batch of {sizes.batch:,} contacts",
            statistics.median(rates),
            "contacts/s",
            goal=100_000,
            baseline=single,
            note=f"median of {sizes.repetitions} over HTTP (unlinked FR mobiles, SMS, not "
            f"recorded); baseline = Checker.check in a loop in process, same database and node",
        )
    ]


def _single_rate(up: Stack, items: list[dict[str, str]]) -> float:
    """The single check, one item at a time, in this process on up's database and node."""
    settings = Settings(
        chain="rpc",
        rpc_url=f"http://127.0.0.1:{up.env['QL_ANVIL_PORT']}",
        data_dir=Path(up.env["QL_DATA_DIR"]),
        contract_address=_contract_address(up),
    )
    ledger = Ledger.open(settings)
    try:
        start = time.perf_counter()
        for item in items:
            ledger.checker.check(company_id=1, contact=item["contact"], channel=Channel.SMS)
        return len(items) / (time.perf_counter() - start)
    finally:
        ledger.engine.dispose()


def _contract_address(up: Stack) -> str:
    for line in up.log.read_text().splitlines():
        if "ledger contract 0x" in line:
            return line.split("ledger contract ")[1].split()[0][:42]
    raise RuntimeError(f"up did not announce its contract:\n{up.log.read_text()}")


def _scrub(up: Stack, directory: Path, sizes: Sizes) -> list[Figure]:
    phase_write(directory, sizes.list_numbers)  # directory/dnc.txt, the FTC format
    # In this process (as `quota-ledger lists import` does it): a 20M-line import outlasts the
    # CLI helper's timeout on a loaded machine. The server sees the new snapshot on its own.
    settings = Settings(data_dir=Path(up.env["QL_DATA_DIR"]))
    import_file(
        directory / "dnc.txt",
        ListImport(region="US", fmt=ListFormat.DNC, workers=_cpus()),
        cache=OppositionCache.from_settings(settings, migrated_engine(settings.sqlalchemy_url)),
        fetched_at=int(time.time()) - DAY,
    )
    time.sleep(settings.list_refresh_seconds + 1)
    (snapshot,) = (Path(up.env["QL_DATA_DIR"]) / "lists").glob("US-*.npy")
    upload = directory / "typed.csv"
    with upload.open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerows([n] for n in typed_numbers(asked_numbers(snapshot, sizes.scrub_rows)))
    pid = _server_pid(up)
    headers = {"Authorization": f"Bearer {up.api_key}", "Content-Type": "text/csv"}
    start = time.perf_counter()
    rows = allowed = 0
    with (
        upload.open("rb") as body,
        httpx.stream(
            "POST",
            f"{up.url}/v1/scrub?channel=call",
            content=iter(lambda: body.read(1 << 20), b""),
            headers=headers,
            timeout=3600,
        ) as response,
    ):
        response.raise_for_status()
        for line in response.iter_lines():
            rows += 1
            allowed += ",true," in line
    seconds = time.perf_counter() - start
    peak = _vm_hwm_mb(pid)
    assert rows == sizes.scrub_rows, rows
    base_seconds, listed = _plain_scrub(upload, Path(up.env["QL_DATA_DIR"]), sizes)
    return [
        Figure(
            f"bulk: POST /v1/scrub of {sizes.scrub_rows:,} typed numbers "
            f"vs a {sizes.list_numbers:,} list",
            seconds,
            "s",
            goal=10,
            higher_is_better=False,
            baseline=base_seconds,
            note=f"streamed over HTTP, US calls, {allowed:,} allowed; baseline = phonenumbers "
            f"parse + numpy lookup of the same file in process on {_cpus()} CPUs "
            f"({listed:,} listed)",
        ),
        Figure(
            f"bulk: server peak RSS over the {sizes.scrub_rows:,}-row scrub",
            peak,
            "MB",
            goal=300,
            higher_is_better=False,
            note="VmHWM of the up process (API, indexer; the list mapped), since it started; "
            "the parsing worker processes are apart",
        ),
    ]


def _plain_scrub(upload: Path, data_dir: Path, sizes: Sizes) -> tuple[float, int]:
    """The baseline: the same file parsed (processes over the CPUs) and looked up, no HTTP."""
    settings = Settings(data_dir=data_dir)
    cache = OppositionCache.from_settings(settings, migrated_engine(settings.sqlalchemy_url))
    start = time.perf_counter()
    with upload.open(newline="") as text:
        typed = [row[0] for row in csv.reader(text)]
    numbers, valid = normalise_many(typed, default_region="US", workers=_cpus())
    listed = cache.contains_many(numbers[valid], region="US")
    return time.perf_counter() - start, int(np.count_nonzero(listed))


def _server_pid(up: Stack) -> int:
    assert up.proc is not None
    return up.proc.pid


def _vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="small sizes, for a quick check")
    if not parser.parse_args().smoke:
        run(FULL)
        return
    # The smoke run checks that the benchmark still runs; its small figures are not results.
    with tempfile.TemporaryDirectory(prefix="ql-bench-bulk-smoke-") as tmp:
        figures = run(SMOKE, results=Path(tmp) / "results.json")
    missing = [f.name for f in figures if not f.value > 0]
    if missing:
        raise SystemExit(f"bench-smoke: no figure for {missing}")


if __name__ == "__main__":
    main()
