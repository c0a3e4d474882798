"""A bulkhead for the routes that wait on the node: they get a bounded share of the threads.

FastAPI runs every ``def`` route in one pool of worker threads (anyio's default limiter: 40).
A route that waits on a frozen node holds its thread for the whole RPC timeout; enough of
them and routes that never touch the node (usage, health) queue behind them. The circuit
breaker (``ledger.chain.breaker``) makes such waits rare and short, but the first calls after a
node freezes still wait one timeout each.

``NodeLimit`` caps the routes that call the node at ``slots`` at a time. A request over the
cap waits for a slot in the event loop, holding no thread, and after ``wait`` seconds is
answered 503 ``chain_unavailable`` with a Retry-After. The rest of the pool stays free for
the other routes.

Example:
    >>> @router.post("/v1/grants", dependencies=[NodeLimit])
    ... def relay_grant(...): ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, Request

from ledger.domain.errors import ChainUnavailable


class NodeBusy(ChainUnavailable):
    """Every slot for node work is taken, and none freed within the wait."""

    def __init__(self, slots: float, wait: float) -> None:
        super().__init__(f"{slots:.0f} requests are already waiting on the node")
        self.fields["retry_after"] = wait


class NodeSlots:
    """The slots of node work: ``slots`` requests at a time, others wait at most ``wait`` s.

    Args:
        slots: requests that may call the node at once (default: half the worker threads,
            read in the event loop on first use).
        wait: seconds a request waits for a slot before it is refused.
    """

    def __init__(self, *, slots: int | None = None, wait: float = 5.0) -> None:
        self.slots = slots
        self.wait = wait
        self._limiter: anyio.CapacityLimiter | None = None

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """Holds a slot for the body of the ``async with``.

        Raises:
            NodeBusy: no slot freed within ``wait`` seconds.
        """
        limiter = self._limiter
        if limiter is None:  # created in the event loop, whose worker threads it shares
            if self.slots is None:
                workers = anyio.to_thread.current_default_thread_limiter().total_tokens
                self.slots = max(1, int(workers) // 2)
            limiter = self._limiter = anyio.CapacityLimiter(self.slots)
        with anyio.move_on_after(self.wait) as scope:
            await limiter.acquire()
        if scope.cancelled_caught:
            raise NodeBusy(limiter.total_tokens, self.wait)
        try:
            yield
        finally:
            limiter.release()


async def _node_slot(request: Request) -> AsyncIterator[None]:
    slots: NodeSlots = request.app.state.node_slots
    async with slots.hold():
        yield


NodeLimit = Depends(_node_slot)


_T = TypeVar("_T")


class CheckThreads:
    """The worker threads single checks run in: ``threads`` at a time, the rest queue.

    A check holds a database connection for its whole run: more threads than the pool has
    connections only wait in the pool, and on two cores dozens of threads contending for the
    GIL answer slower than a few. Checks queue here, in the event loop, holding nothing, and
    leave the shared pool's threads to the other routes.
    """

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._limiter: anyio.CapacityLimiter | None = None

    async def run(self, work: Callable[[], _T]) -> _T:
        limiter = self._limiter
        if limiter is None:  # created in the event loop it serves
            limiter = self._limiter = anyio.CapacityLimiter(self.threads)
        return await anyio.to_thread.run_sync(work, limiter=limiter)


async def run_check(request: Request, work: Callable[[], _T]) -> _T:
    """Runs ``work`` (one check's database work) in one of the app's check threads."""
    threads: CheckThreads = request.app.state.check_threads
    return await threads.run(work)
