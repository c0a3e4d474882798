"""wrk as a separate load-generator process: run it, read its exact figures, repeat, summarise.

The Lua scripts in ``bench/wrk/`` print one ``WRK_JSON {...}`` line from ``done()``; this module
parses that line (never wrk's rounded text) into a ``Run``, and folds repeated runs into a
``Spread`` (median, min, max) per figure.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent / "wrk"
CHECKS_LUA = SCRIPTS / "checks.lua"
MARK = "WRK_JSON "


@dataclass(frozen=True, slots=True)
class Run:
    """One wrk run: throughput, latency percentiles (ms) and the answers' shape."""

    rate: float  # requests per second
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    non2xx: int
    allowed: int
    refused: int
    socket_errors: int  # connect, read, write errors and timeouts


@dataclass(frozen=True, slots=True)
class Spread:
    median: float
    low: float
    high: float


def wrk(
    url: str,
    *,
    script: Path,
    script_args: Sequence[str] = (),
    headers: Sequence[str] = (),
    connections: int = 64,
    threads: int = 2,
    seconds: float = 10,
    ports: Sequence[int] = (),
) -> Run:
    """Runs wrk once against ``url`` and returns its figures.

    ``ports``: servers on several ports of the host (the script spreads its threads over them).

    Raises:
        RuntimeError: wrk is missing, failed, or its script printed no figures.
    """
    binary = shutil.which("wrk")
    if binary is None:
        raise RuntimeError("wrk is not installed: `make bench` installs it (apt-get install wrk)")
    command = [
        binary,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        # A slow answer must count in the percentiles, not vanish as a timeout.
        "--timeout",
        "30s",
        "-s",
        str(script),
    ]
    for header in headers:
        command += ["-H", header]
    command += [url, "--", *script_args]
    env = {**os.environ, "WRK_PORTS": ",".join(map(str, ports))}
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}{done.stderr}")
    raw = json.loads(lines[-1][len(MARK) :])
    seconds_run = raw["duration_us"] / 1e6
    return Run(
        rate=raw["requests"] / seconds_run,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        requests=raw["requests"],
        non2xx=raw["non2xx"],
        allowed=raw["allowed"],
        refused=raw["refused"],
        socket_errors=raw["socket_errors"],
    )


def spread(runs: Sequence[Run], figure: str) -> Spread:
    """The median and the min-max range of one ``Run`` field over repeated runs."""
    if figure not in {f.name for f in fields(Run)}:
        raise ValueError(f"no figure {figure!r} in a wrk run")
    values = [float(getattr(run, figure)) for run in runs]
    return Spread(statistics.median(values), min(values), max(values))
