"""Single checks run in a bounded set of worker threads (``api.bulkhead.CheckThreads``)."""

from __future__ import annotations

import threading
import time

import anyio

from api.bulkhead import CheckThreads


def test_no_more_checks_run_at_once_than_there_are_check_threads() -> None:
    threads = CheckThreads(2)
    running = 0
    most = 0
    lock = threading.Lock()

    def work() -> str:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return threading.current_thread().name

    async def main() -> list[str]:
        names: list[str] = []

        async def one() -> None:
            names.append(await threads.run(work))

        async with anyio.create_task_group() as group:
            for _ in range(8):
                group.start_soon(one)
        return names

    names = anyio.run(main)
    assert len(names) == 8
    assert most == 2  # the others queued in the event loop, holding no thread
    assert threading.current_thread().name not in names  # never in the event loop's thread
