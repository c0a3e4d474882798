"""Named limits over one ``limits`` storage: requests per key, client address or consumer, and
the operator's gas budgets.

With ``QL_REDIS_URL`` the counters live in Redis, so every API process sharing it enforces one
limit; without it they live in this process's memory (a single process, a user's machine).
Every limit is a fixed window that opens at a key's first hit (the ``limits`` fixed-window
strategy): one counter per key, which Redis expires and the memory storage drops once the
window has passed, so a key nobody uses any more costs nothing. A request refused by a limit is
refused before the route runs: it writes no row and spends no gas.

Example:
    >>> limiter = Limiter.from_settings(settings)
    >>> limiter.hit(Limit.SIGN_IN, client_key("203.0.113.7"))  # LimitExceeded once spent
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable
from enum import StrEnum
from typing import TypeVar

from limits import RateLimitItem, RateLimitItemPerDay, RateLimitItemPerMinute
from limits.errors import StorageError
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from ledger.domain.errors import TooManyRequests, Unavailable
from ledger.settings import Settings

# Seconds a Redis command may take: past this the limiter is unavailable and the request is
# refused (fail closed, DESIGN rule 7) rather than held.
REDIS_TIMEOUT = 2.0
# An IPv6 client usually holds a whole /64: counting per address would let it rotate freely.
IPV6_PREFIX = 64

_T = TypeVar("_T")


class Limit(StrEnum):
    """Every limit the API enforces; the settings give their amounts."""

    API_KEY = "api_key"  # requests per API key per minute
    CONSUMER = "consumer"  # requests per consumer token per minute
    SIGN_IN = "sign_in"  # sign-in nonces and tokens per client address per minute
    RELAY = "relay"  # relays and typed data per client address per minute
    RELAY_GAS = "relay_gas"  # gas for one consumer's grants and caps per day
    WITHDRAWAL_GAS = "withdrawal_gas"  # gas for one consumer's withdrawals per day
    OPERATOR_RELAY_GAS = "operator_relay_gas"  # gas for every consumer's grants and caps per day
    OPERATOR_WITHDRAWAL_GAS = "operator_withdrawal_gas"  # gas for every withdrawal per day


class LimitExceeded(TooManyRequests):
    code = "rate_limited"

    def __init__(self, limit: Limit, amount: int, retry_after: float) -> None:
        wait = max(1, math.ceil(retry_after))
        super().__init__(
            f"limit {limit.value} ({amount}) reached: retry in {wait} s",
            limit=limit.value,
            amount=amount,
            retry_after=wait,
        )


class LimiterUnavailable(Unavailable):
    code = "limiter_unavailable"

    def __init__(self, reason: str) -> None:
        super().__init__(f"the rate limiter's storage cannot be reached: {reason}", reason=reason)


def amounts(settings: Settings) -> dict[Limit, RateLimitItem]:
    """Each limit's amount and window, from the settings."""
    per_minute = {
        Limit.API_KEY: settings.rate_limit_per_minute,
        Limit.CONSUMER: settings.rate_limit_per_minute,
        Limit.SIGN_IN: settings.sign_in_per_ip_per_minute,
        Limit.RELAY: settings.relay_per_ip_per_minute,
    }
    per_day = {
        Limit.RELAY_GAS: settings.relay_gas_per_consumer_per_day,
        Limit.WITHDRAWAL_GAS: settings.withdrawal_gas_per_consumer_per_day,
        Limit.OPERATOR_RELAY_GAS: settings.relay_gas_per_day,
        Limit.OPERATOR_WITHDRAWAL_GAS: settings.withdrawal_gas_per_day,
    }
    items: dict[Limit, RateLimitItem] = {
        limit: RateLimitItemPerMinute(amount, namespace=limit.value)
        for limit, amount in per_minute.items()
    }
    items.update(
        (limit, RateLimitItemPerDay(amount, namespace=limit.value))
        for limit, amount in per_day.items()
    )
    return items


def open_storage(settings: Settings) -> Storage:
    """Redis at ``settings.redis_url`` when set, else this process's memory."""
    if settings.redis_url:
        storage = storage_from_string(
            settings.redis_url,
            key_prefix=settings.redis_key_prefix,
            wrap_exceptions=True,
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
        )
    else:
        storage = storage_from_string("memory://")
    assert isinstance(storage, Storage)  # the synchronous family, not limits.aio
    return storage


def client_key(host: str | None) -> str:
    """The key a client address counts under: the address, or its /64 for IPv6."""
    if host is None:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # not an address (a test client's name, a Unix socket)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False))
    return str(address)


class Limiter:
    """Counts hits and spending against named limits in one storage.

    Example:
        >>> limiter = Limiter(storage_from_string("memory://"), amounts(settings))
        >>> limiter.hit(Limit.API_KEY, key_id)
        >>> limiter.check(Limit.RELAY_GAS, consumer)  # refuses once the day's gas is spent
        >>> limiter.spend(Limit.RELAY_GAS, consumer, gas_used)
    """

    def __init__(self, storage: Storage, items: dict[Limit, RateLimitItem]) -> None:
        self.storage = storage
        self._items = items
        self._window = FixedWindowRateLimiter(storage)

    @classmethod
    def from_settings(cls, settings: Settings) -> Limiter:
        return cls(open_storage(settings), amounts(settings))

    def hit(self, limit: Limit, key: str) -> None:
        """Counts one request.

        Raises:
            LimitExceeded: the window's requests are spent (the request must change nothing).
            LimiterUnavailable: the storage cannot be reached.
        """
        item = self._items[limit]
        if not self._call(lambda: self._window.hit(item, key)):
            raise self._exceeded(limit, key)

    def check(self, limit: Limit, key: str) -> None:
        """Refuses when the budget is spent, without counting anything.

        Raises:
            LimitExceeded: nothing is left in the window.
            LimiterUnavailable: the storage cannot be reached.
        """
        item = self._items[limit]
        if not self._call(lambda: self._window.test(item, key)):
            raise self._exceeded(limit, key)

    def spend(self, limit: Limit, key: str, amount: int) -> None:
        """Counts ``amount`` already spent (gas), even past the budget: the next check refuses.

        Raises:
            LimiterUnavailable: the storage cannot be reached.
        """
        if amount > 0:
            item = self._items[limit]
            self._call(lambda: self._window.hit(item, key, cost=amount))

    def remaining(self, limit: Limit, key: str) -> int:
        """What is left of the limit in the current window."""
        item = self._items[limit]
        return self._call(lambda: self._window.get_window_stats(item, key)).remaining

    def _exceeded(self, limit: Limit, key: str) -> LimitExceeded:
        item = self._items[limit]
        stats = self._call(lambda: self._window.get_window_stats(item, key))
        return LimitExceeded(limit, item.amount, stats.reset_time - time.time())

    @staticmethod
    def _call(operation: Callable[[], _T]) -> _T:
        try:
            return operation()
        except StorageError as exc:
            raise LimiterUnavailable(type(exc.storage_error).__name__) from exc
