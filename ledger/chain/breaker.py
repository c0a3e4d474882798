"""A circuit breaker on the calls to the node: while it is down, callers fail at once.

Without it a frozen node holds every caller for the whole request timeout, times the
retries, and the callers pile up until nothing else can run. The breaker has three states:

- closed: calls go through. One timeout (the expensive failure: the caller waited the whole
  timeout) or ``threshold`` failures in a row open it.
- open: calls fail at once with ``CircuitOpen`` for ``cooldown`` seconds.
- half-open: after the cooldown one call, the probe, goes through while the others still
  fail fast. Its success closes the breaker; its failure opens it again for twice the
  cooldown (up to ``max_cooldown``).

Any call that reaches the node and gets an answer, even an error such as a revert, closes
the breaker: the node is there. What counts as a failure is the caller's to say (``fault``).

Example:
    >>> breaker = CircuitBreaker(fault=lambda exc: Fault.SLOW if isinstance(exc, TimeoutError)
    ...                          else None)
    >>> breaker.call(lambda: node.block_number())  # raises CircuitOpen while open
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from ledger.chain.redact import redact
from ledger.domain.errors import ChainUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")


class Fault(enum.Enum):
    """How a call failed to reach the node."""

    SLOW = "slow"  # it timed out: open at once
    FAILED = "failed"  # refused, reset, 5xx: open after ``threshold`` in a row


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitOpen(ChainUnavailable):
    """The node failed recently: the call was not tried (``retry_after`` seconds to the probe)."""

    def __init__(self, reason: str, retry_after: float) -> None:
        then = (
            f"tried again in {retry_after:.1f} s"
            if retry_after > 0
            else "being tried again by another call"
        )
        super().__init__(f"{reason} (circuit open: the node is {then})")
        self.fields["retry_after"] = round(retry_after, 3)


class CircuitBreaker:
    """Guards calls to one dependency. Thread-safe.

    Args:
        fault: the failure an exception of a call is, or None when the dependency answered.
        threshold: failures in a row that open the breaker (a timeout opens it at once).
        cooldown: seconds the breaker stays open before the first probe.
        max_cooldown: the longest it stays open between probes (the cooldown doubles).
        clock: monotonic seconds.
    """

    def __init__(
        self,
        *,
        fault: Callable[[BaseException], Fault | None],
        threshold: int = 3,
        cooldown: float = 0.5,
        max_cooldown: float = 4.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fault = fault
        self.threshold = max(1, threshold)
        self.cooldown = cooldown
        self.max_cooldown = max(cooldown, max_cooldown)
        self.clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._wait = cooldown
        self._probing = False
        self._reason = ""

    @property
    def state(self) -> State:
        with self._lock:
            if self._opened_at is None:
                return State.CLOSED
            if self._probing or self.clock() - self._opened_at >= self._wait:
                return State.HALF_OPEN
            return State.OPEN

    @property
    def reason(self) -> str:
        """The last failure, when the breaker is not closed ("" when it is)."""
        with self._lock:
            return "" if self._opened_at is None else self._reason

    @property
    def failing(self) -> str:
        """The last failure, when no call succeeded since ("" when one did): a closed breaker
        may be counting failures towards its threshold."""
        with self._lock:
            return self._reason if self._failures else ""

    def call(self, fn: Callable[[], T]) -> T:
        """Runs ``fn`` unless the breaker is open, and counts how it went.

        Raises:
            CircuitOpen: the breaker is open, or half-open with a probe already out.
            BaseException: whatever ``fn`` raises.
        """
        probe = self._admit()
        try:
            result = fn()
        except Exception as exc:
            fault = self.fault(exc)
            if fault is None:
                self._succeeded()
            else:
                self._failed(fault, f"{type(exc).__name__}: {exc}", probe=probe)
            raise
        except BaseException:  # interrupted: neither an answer nor a failure of the node
            if probe:
                with self._lock:
                    self._probing = False
            raise
        self._succeeded()
        return result

    def _admit(self) -> bool:
        """True when the call is the half-open probe; raises when it may not go through."""
        with self._lock:
            if self._opened_at is None:
                return False
            left = self._opened_at + self._wait - self.clock()
            if left <= 0 and not self._probing:
                self._probing = True
                return True
            reason = self._reason
        raise CircuitOpen(reason, max(0.0, left))

    def _succeeded(self) -> None:
        with self._lock:
            was_open = self._opened_at is not None
            self._failures = 0
            self._opened_at = None
            self._wait = self.cooldown
            self._probing = False
        if was_open:
            log.info("the node answers again: circuit closed")

    def _failed(self, fault: Fault, reason: str, *, probe: bool) -> None:
        reason = redact(reason)[:300]  # it ends up in problems and logs
        with self._lock:
            self._failures += 1
            self._reason = reason
            if probe:
                self._probing = False
                self._wait = min(self.max_cooldown, self._wait * 2)
                self._opened_at = self.clock()
                return
            if self._opened_at is not None:
                return  # a call let through before it opened: already counted as down
            if fault is not Fault.SLOW and self._failures < self.threshold:
                return
            self._opened_at = self.clock()
            self._wait = self.cooldown
        log.warning("the node failed (%s): circuit open, calls fail fast until it answers", reason)
