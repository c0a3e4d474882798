"""Shared by the Python benchmarks: merge figures into bench/results.json and print them.

Each figure: name, value, unit, goal (with its direction) and, where the roadmap asks for one,
a baseline measured in the same run. Results are machine facts, never edited by hand.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.json"


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    goal: float | None = None
    higher_is_better: bool = True
    baseline: float | None = None
    note: str = ""
    # Over repeated runs: ``value`` is their median, ``low`` and ``high`` their range.
    low: float | None = None
    high: float | None = None

    @property
    def met(self) -> bool | None:
        if self.goal is None:
            return None
        return self.value >= self.goal if self.higher_is_better else self.value <= self.goal


def record(*figures: Figure, results: Path = RESULTS) -> None:
    """Merges ``figures`` into ``results`` (by name) and prints one line each."""
    data = json.loads(results.read_text()) if results.exists() else {"figures": {}}
    for f in figures:
        data["figures"][f.name] = {**asdict(f), "met": f.met}
        goal = (
            "" if f.goal is None else f" (goal {'>=' if f.higher_is_better else '<='} {f.goal:g})"
        )
        base = "" if f.baseline is None else f" baseline {f.baseline:,.2f}"
        spread = "" if f.low is None or f.high is None else f" [{f.low:,.2f}-{f.high:,.2f}]"
        verdict = {True: "met", False: "MISSED", None: ""}[f.met]
        print(f"{f.name:<50} {f.value:>14,.2f}{spread} {f.unit}{goal}{base} {verdict}")
    data["machine"] = {"python": platform.python_version(), "cpus": _cpus()}
    data["updated"] = datetime.now(UTC).isoformat(timespec="seconds")
    results.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
