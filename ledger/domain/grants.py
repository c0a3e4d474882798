"""Grants: what a consumer allows one company on one channel, as signed and as stored."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from ledger.domain.channels import Channel
from ledger.domain.errors import InvalidGrant

ALL_HOURS = (1 << 24) - 1
ALL_DAYS = (1 << 7) - 1
OPEN_ENDED = (1 << 40) - 1  # validUntil meaning "until revoked"
_UINT32 = (1 << 32) - 1


class CompanyStatus(IntEnum):
    NONE = 0
    ACTIVE = 1
    SUSPENDED = 2


@dataclass(frozen=True, slots=True)
class GrantTerms:
    """The terms a consumer signs: the contract's ``GrantTerms`` struct.

    Example:
        >>> GrantTerms(company_id=1, channel=Channel.SMS, max_contacts=4,
        ...            period=365 * 86400).days_mask == ALL_DAYS
        True
    """

    company_id: int
    channel: Channel
    max_contacts: int
    period: int  # seconds
    valid_from: int = 0
    valid_until: int = OPEN_ENDED
    hours_mask: int = ALL_HOURS
    days_mask: int = ALL_DAYS
    notice_hash: bytes = b"\x00" * 32

    def __post_init__(self) -> None:
        # The same rules as the contract, checked before anything is signed or relayed.
        # uint64 on chain; below 2**63 so it fits a signed BIGINT in every database.
        if not 0 < self.company_id < (1 << 63):
            raise InvalidGrant("company id out of range", company_id=self.company_id)
        if not (0 < self.max_contacts <= _UINT32 and 0 < self.period <= _UINT32):
            raise InvalidGrant("max_contacts and period must be positive 32-bit numbers")
        if not 0 <= self.valid_from < self.valid_until <= OPEN_ENDED:
            raise InvalidGrant("valid_from must be before valid_until")
        if not (0 < self.hours_mask <= ALL_HOURS and 0 < self.days_mask <= ALL_DAYS):
            raise InvalidGrant("hours and days masks must allow something")
        if len(self.notice_hash) != 32:
            raise InvalidGrant("notice_hash must be 32 bytes")

    def as_tuple(self) -> tuple[int, int, int, int, int, int, int, int, bytes]:
        """The ABI tuple of the contract's ``GrantTerms``."""
        return (
            self.company_id,
            int(self.channel),
            self.max_contacts,
            self.period,
            self.valid_from,
            self.valid_until,
            self.hours_mask,
            self.days_mask,
            self.notice_hash,
        )


@dataclass(frozen=True, slots=True)
class GrantRecord:
    """A grant as the chain holds it, with whether it is in effect."""

    max_contacts: int  # 0 once revoked
    period: int
    valid_from: int
    valid_until: int
    hours_mask: int
    days_mask: int
    version: int
    epoch: int
    active: bool
