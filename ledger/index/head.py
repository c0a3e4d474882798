"""The node's head, read in the background so that no request waits on the node for it.

A check needs to know how far the index is behind the node. Asking the node on every check
puts the node on the request path: a frozen node then holds every check for the whole RPC
timeout. ``HeadWatcher`` reads the head in a thread of its own every ``interval`` seconds
(less often when the indexer's loop, which reads it too, keeps it fresh: both go through
``Chain.head``, which remembers what it read), and says from memory whether the head is
known now: read recently, no node call failed since the last that succeeded, and the
client's circuit closed.

Example:
    >>> watcher = HeadWatcher(chain, interval=0.25)
    >>> watcher.start()
    >>> watcher.head(max_age=10.0).block.number  # no request: raises when not known now
    42
"""

from __future__ import annotations

import logging
import time

from ledger.background import BackgroundLoop
from ledger.chain.breaker import State
from ledger.chain.client import Chain, HeadSighting
from ledger.domain.errors import ChainUnavailable

log = logging.getLogger(__name__)


class HeadWatcher(BackgroundLoop):
    """Keeps ``chain.last_head`` fresh from a daemon thread; ``stop`` it.

    Args:
        chain: the node's client (its breaker and its last head are shared with every caller).
        interval: seconds between reads of the head.
    """

    def __init__(self, chain: Chain, *, interval: float) -> None:
        self.chain = chain
        self.interval = interval
        self._failure: tuple[float, str] | None = None  # (monotonic time, why) of the last read
        super().__init__("ledger-head")

    def head(self, *, max_age: float) -> HeadSighting:
        """The head last read from the node, when it is known now. Makes no request.

        Args:
            max_age: seconds after which a head read without news since is no longer known.

        Raises:
            ChainUnavailable: the circuit to the node is open, a node call failed since the
                last success, the last read failed, no head was read yet, or the last one is
                older than ``max_age``.
        """
        breaker = self.chain.breaker
        if breaker.state is not State.CLOSED:
            raise ChainUnavailable(breaker.reason or "circuit open")
        if breaker.failing:  # a call failed and none succeeded since: not known now
            raise ChainUnavailable(breaker.failing)
        seen = self.chain.last_head
        failure = self._failure
        if failure is not None and (seen is None or failure[0] > seen.at):
            raise ChainUnavailable(failure[1])
        if seen is None:
            raise ChainUnavailable("its head has not been read yet")
        age = time.monotonic() - seen.at
        if age > max_age:
            raise ChainUnavailable(f"no head read for {age:.1f} s")
        return seen

    def _run(self) -> None:
        while not self._stop.is_set():
            seen = self.chain.last_head
            if seen is None or time.monotonic() - seen.at >= self.interval:
                self._read()
            self._stop.wait(self.interval)

    def _read(self) -> None:
        try:
            self.chain.head()
        except ChainUnavailable as exc:
            self._failure = (time.monotonic(), exc.message.removeprefix("EVM node unavailable: "))
        except Exception as exc:  # keep watching: the head is then unknown, checks refuse
            log.exception("reading the node's head failed")
            self._failure = (time.monotonic(), f"{type(exc).__name__}")
