"""Audit verification speed: ``.venv/bin/python -m bench.bench_verify [--smoke]``.

Builds an export of 1,000,000 real usage entries (the canonical bytes the log hashes, chained
by ``prev_hash``, anchored every 100,000 entries), then times ``audit verify`` over the file
(every leaf hash recomputed, the hash chain, the root at each anchor and at the end) in
entries/s, beside a hashlib baseline in the same run: SHA-256 of each canonical entry and
nothing else, over the same bytes held in memory. Rounds alternate between the two, so that the
rest of the machine's load weighs on both alike; the figure is their median. ``--smoke``: 20,000
entries, figures to a scratch file.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path

from bench.report import Figure, record
from ledger.audit.export import ExportAnchor, ExportSource, entry_line, parse_entry
from ledger.audit.verify import COLUMNS, DATA, Verifier, leaf_data, verify
from ledger.usage.hashing import GENESIS_HASH

ENTRIES = 1_000_000
ANCHOR_EVERY = 100_000
ROUNDS = 3
GOAL = 500_000  # entries/s (ROADMAP / issue 14)
DECISIONS = ("allowed", "refused", "allowed", "allowed", "outcome")


def build(path: Path, entries: int) -> list[ExportAnchor]:
    """Writes the export; returns the anchors of its tree (roots by the verifier's frontier)."""
    frontier = Verifier([])
    anchors = []
    prev = GENESIS_HASH
    with path.open("wb") as out:
        for seq in range(1, entries + 1):
            fields = {
                "seq": seq,
                "at": 1_786_000_000 + seq * 7,
                "basis": '{"kind": "consent"}' if seq % 3 else None,
                "block_number": 1000 + seq // 50,
                "channel": seq % 4 + 1,
                "company_id": seq % 97 + 1,
                "consumer": f"0x{seq * 2654435761 % (1 << 160):040x}",
                "contact": hashlib.sha256(b"%d" % (seq % 50_000)).hexdigest(),
                "decision": DECISIONS[seq % 5],
                "grant_version": seq % 3 or None,
                "list_version": "FR:2026-08-01T00:00:00Z",
                "outcome": "answered" if seq % 5 == 4 else None,
                "prev_hash": prev,
                "reasons": '["grant_allows"]',
                "refers_to": seq - 1 if seq % 5 == 4 else None,
                "rules": '["fr.consent", "fr.d223-9.frequency"]',
                "entry_hash": "",
            }
            row = tuple(fields[c] for c in COLUMNS)
            prev = hashlib.sha256(leaf_data(row)).hexdigest()
            row = (*row[:-1], prev)
            out.write(entry_line(row))
            frontier.run(iter([[parse_entry(entry_line(row))]]))
            if seq % ANCHOR_EVERY == 0 or seq == entries:
                anchors.append(ExportAnchor(seq, frontier.root(), seq))
    return anchors


def baseline(path: Path) -> float:
    """Seconds to SHA-256 every canonical entry of the file, the bytes already in memory."""
    spent = 0.0
    sha = hashlib.sha256
    for batch in ExportSource(path).batches(1):
        datas = [entry[DATA][1:] for entry in batch]  # the canonical entry, as hashed
        start = time.perf_counter()
        for data in datas:
            sha(data).digest()
        spent += time.perf_counter() - start
    return spent


def verified(path: Path, anchors: list[ExportAnchor], entries: int) -> float:
    start = time.perf_counter()
    result = verify(ExportSource(path), anchors)
    spent = time.perf_counter() - start
    if not result.ok or result.size != entries or result.anchors != len(anchors):
        raise SystemExit(f"bench_verify: the clean export did not verify: {result}")
    return spent


def run(entries: int, results: Path | None) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="ql-bench-verify-") as tmp:
        path = Path(tmp) / "usage.jsonl"
        started = time.perf_counter()
        anchors = build(path, entries)
        print(f"built {entries:,} entries in {time.perf_counter() - started:.1f} s")
        rates, bases = [], []
        for _ in range(ROUNDS):
            bases.append(entries / baseline(path))
            rates.append(entries / verified(path, anchors, entries))
    figures = [
        Figure(
            "audit verify (export file, leaf hashes + chain + roots)",
            statistics.median(rates),
            "entries/s",
            goal=GOAL,
            baseline=statistics.median(bases),
            note=f"{entries:,} entries, {len(anchors)} anchors; baseline: hashlib SHA-256 of "
            "each canonical entry over the same bytes in memory, same run",
            low=min(rates),
            high=max(rates),
        )
    ]
    if results is None:
        record(*figures)
    else:
        record(*figures, results=results)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="small sizes, for a quick check")
    parser.add_argument("--entries", type=int, default=ENTRIES)
    args = parser.parse_args()
    if not args.smoke:
        run(args.entries, None)
        return
    # The smoke run checks that the benchmark still runs; its small figures are not results.
    with tempfile.TemporaryDirectory(prefix="ql-bench-verify-smoke-") as tmp:
        run(20_000, Path(tmp) / "results.json")


if __name__ == "__main__":
    main()
