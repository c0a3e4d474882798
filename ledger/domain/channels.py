"""Contact channels: how a company reaches a consumer."""

from __future__ import annotations

from enum import IntEnum

from ledger.domain.errors import InvalidGrant


class Channel(IntEnum):
    """Contact channels, numbered as in the contract's ``Channel`` enum."""

    CALL = 0
    SMS = 1
    EMAIL = 2
    MESSAGING = 3

    @classmethod
    def parse(cls, name: str) -> Channel:
        try:
            return cls[name.upper()]
        except KeyError:
            raise InvalidGrant(f"unknown channel {name!r}", channel=name) from None
