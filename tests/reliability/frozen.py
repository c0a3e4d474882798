"""Helpers for faults of a frozen node: find anvil under `up`, freeze it, time requests."""

from __future__ import annotations

import os
import signal
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.stack import Stack


def anvil_pid(stack: Stack) -> int:
    """The pid of the anvil that `up` started (looked up each time: a restart changes it)."""
    assert stack.proc is not None
    pending, found = [stack.proc.pid], []
    while pending:
        pid = pending.pop()
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                pending += [int(c) for c in (task / "children").read_text().split()]
            except OSError:  # the task ended meanwhile
                continue
        if pid != stack.proc.pid:
            try:
                argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if Path(argv0.decode()).name == "anvil":
                found.append(pid)
    assert len(found) == 1, found
    return found[0]


@contextmanager
def frozen(pid: int) -> Iterator[None]:
    """SIGSTOP for the body, SIGCONT after it, whatever happens (a stopped anvil would also
    hold up the stack's clean stop)."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@dataclass
class Timings:
    """Latencies of one kind of request, in seconds."""

    name: str
    seconds: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    def add(self, seconds: float, status: int) -> None:
        self.seconds.append(seconds)
        self.statuses[status] = self.statuses.get(status, 0) + 1

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def max(self) -> float:
        return max(self.seconds)

    def __str__(self) -> str:
        return (
            f"{self.name}: n={len(self.seconds)} median {self.median * 1000:.0f} ms, "
            f"max {self.max * 1000:.0f} ms, statuses {self.statuses}"
        )


def timed(
    client: httpx.Client, method: str, path: str, **kwargs: object
) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    response = client.request(method, path, **kwargs)  # type: ignore[arg-type]
    return time.monotonic() - started, response
