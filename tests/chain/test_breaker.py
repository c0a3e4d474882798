"""The circuit breaker on node calls: open after a timeout or failures in a row, fail fast while
open, one half-open probe at a time, closed again by any answer."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import requests

from ledger.chain.anvil import DEMO_ACCOUNTS
from ledger.chain.breaker import CircuitBreaker, CircuitOpen, Fault, State
from ledger.chain.client import Chain
from ledger.domain.errors import ChainUnavailable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fault(exc: BaseException) -> Fault | None:
    if isinstance(exc, TimeoutError):
        return Fault.SLOW
    if isinstance(exc, ConnectionError):
        return Fault.FAILED
    return None


def raises(exc: BaseException) -> Callable[[], None]:
    def call() -> None:
        raise exc

    return call


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(fault=fault, threshold=3, cooldown=1.0, max_cooldown=4.0, clock=clock)


def test_a_timeout_opens_it_at_once_and_calls_then_fail_without_running(
    breaker: CircuitBreaker,
) -> None:
    with pytest.raises(TimeoutError):
        breaker.call(raises(TimeoutError("read timed out")))
    assert breaker.state is State.OPEN
    ran = []
    with pytest.raises(CircuitOpen) as refused:
        breaker.call(lambda: ran.append(1))
    assert ran == []
    assert "TimeoutError: read timed out" in refused.value.message
    assert refused.value.fields["retry_after"] == 1.0
    assert isinstance(refused.value, ChainUnavailable)


@pytest.mark.parametrize(
    ("failures", "state"),
    [(1, State.CLOSED), (2, State.CLOSED), (3, State.OPEN)],
)
def test_quick_failures_open_it_after_the_threshold_in_a_row(
    breaker: CircuitBreaker, failures: int, state: State
) -> None:
    for _ in range(failures):
        with pytest.raises(ConnectionError):
            breaker.call(raises(ConnectionError("refused")))
    assert breaker.state is state


def test_an_answer_resets_the_count_even_an_error_answer(breaker: CircuitBreaker) -> None:
    for _ in range(2):
        with pytest.raises(ConnectionError):
            breaker.call(raises(ConnectionError("refused")))
    with pytest.raises(ValueError):  # the node answered (a revert, say): it is there
        breaker.call(raises(ValueError("execution reverted")))
    for _ in range(2):
        with pytest.raises(ConnectionError):
            breaker.call(raises(ConnectionError("refused")))
    assert breaker.state is State.CLOSED


def test_after_the_cooldown_one_probe_goes_through_and_its_success_closes_it(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    with pytest.raises(TimeoutError):
        breaker.call(raises(TimeoutError()))
    clock.now += 1.0
    assert breaker.state is State.HALF_OPEN
    assert breaker.call(lambda: 42) == 42
    assert breaker.state is State.CLOSED
    assert breaker.reason == ""


def test_while_a_probe_is_out_the_other_calls_fail_fast(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    with pytest.raises(TimeoutError):
        breaker.call(raises(TimeoutError()))
    clock.now += 1.0
    inside, release = threading.Event(), threading.Event()

    def slow_probe() -> int:
        inside.set()
        release.wait(5)
        return 1

    probe = threading.Thread(target=lambda: breaker.call(slow_probe))
    probe.start()
    assert inside.wait(5)
    with pytest.raises(CircuitOpen):
        breaker.call(lambda: 2)
    release.set()
    probe.join(5)
    assert breaker.state is State.CLOSED


def test_a_failed_probe_opens_it_again_for_twice_as_long_up_to_the_maximum(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    with pytest.raises(TimeoutError):
        breaker.call(raises(TimeoutError()))
    waits = []
    for _ in range(4):
        clock.now += 100  # past any cooldown: the next call is the probe
        with pytest.raises(TimeoutError):
            breaker.call(raises(TimeoutError()))
        with pytest.raises(CircuitOpen) as refused:
            breaker.call(lambda: None)
        waits.append(refused.value.fields["retry_after"])
    assert waits == [2.0, 4.0, 4.0, 4.0]


def test_an_interrupted_probe_lets_the_next_call_probe(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    with pytest.raises(TimeoutError):
        breaker.call(raises(TimeoutError()))
    clock.now += 1.0
    with pytest.raises(KeyboardInterrupt):
        breaker.call(raises(KeyboardInterrupt()))
    assert breaker.call(lambda: 3) == 3


def test_the_reason_it_gives_is_redacted(breaker: CircuitBreaker) -> None:
    with pytest.raises(TimeoutError):
        breaker.call(raises(TimeoutError("http://u:SECRET@node/?apikey=SECRET timed out")))
    with pytest.raises(CircuitOpen) as refused:
        breaker.call(lambda: None)
    assert "SECRET" not in refused.value.message and "SECRET" not in breaker.reason


# ----- on the chain client -----


@pytest.fixture
def silent_node() -> Iterator[str]:
    """A port that accepts connections and never answers: a frozen node."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_a_frozen_node_costs_one_timeout_then_every_call_fails_fast(silent_node: str) -> None:
    chain = Chain.connect(silent_node, operator_key=DEMO_ACCOUNTS[0][1], timeout=0.3, attempts=3)
    started = time.monotonic()
    with pytest.raises(ChainUnavailable):
        chain.head()
    first = time.monotonic() - started
    assert first < 0.3 * 2  # one timeout, not three of them with backoff between
    started = time.monotonic()
    for _ in range(20):
        with pytest.raises(CircuitOpen):
            chain.head()
    assert time.monotonic() - started < 0.2
    assert chain.breaker.state is State.OPEN


def test_a_node_that_refuses_is_retried_then_the_circuit_opens() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    chain = Chain.connect(f"http://127.0.0.1:{port}", operator_key=DEMO_ACCOUNTS[0][1])
    with pytest.raises(ChainUnavailable) as refused:
        chain.head()
    assert isinstance(refused.value.__cause__, requests.ConnectionError)  # tried, 3 times
    assert chain.breaker.state is State.OPEN
    with pytest.raises(CircuitOpen):
        chain.head()


def test_a_failure_below_the_threshold_is_reported_until_a_call_succeeds(
    breaker: CircuitBreaker,
) -> None:
    with pytest.raises(ConnectionError):
        breaker.call(raises(ConnectionError("refused")))
    assert breaker.state is State.CLOSED and "refused" in breaker.failing
    breaker.call(lambda: None)
    assert breaker.failing == ""
