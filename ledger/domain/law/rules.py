"""The kinds of rule: which basis a contact needs, and the statutory limits on contacts.

Every rule has a stable id (recorded in the usage log, so an audit replays a decision under the
rules then in force), its legal reference, and a scope: regions, channels and a validity period
whose bounds are instants in the jurisdiction's own time zone (France switched to opt-in at
00:00 Europe/Paris on 11 August 2026, not at midnight UTC).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from enum import StrEnum

from ledger.domain.bases import BasisKind
from ledger.domain.channels import Channel

ALL_CHANNELS = frozenset(Channel)
MONDAY_TO_FRIDAY = 0b0011111
EVERY_DAY = 0b1111111


@dataclass(frozen=True, slots=True)
class Scope:
    """Where and when a rule applies."""

    regions: frozenset[str]
    channels: frozenset[Channel]
    valid_from: datetime | None = None  # aware; inclusive
    valid_until: datetime | None = None  # aware; exclusive

    def covers(self, region: str | None, channel: Channel, at: datetime) -> bool:
        return (
            region in self.regions
            and channel in self.channels
            and (self.valid_from is None or at >= self.valid_from)
            and (self.valid_until is None or at < self.valid_until)
        )


class LimitKind(StrEnum):
    HOURS = "hours"  # statutory window of local hours and days
    FREQUENCY = "frequency"  # at most N contacts per rolling period, by company and contact
    PAUSE_AFTER_REFUSAL = "pause_after_refusal"  # none for N days after the consumer refused


@dataclass(frozen=True, slots=True)
class BasisRule:
    """What a contact needs in a scope: consent, or one of the bases the law admits.

    ``admits`` are the bases besides consent (a signed grant is always enough);
    ``OPPOSITION_LIST`` among them makes the regime opt-out: a number absent from a national
    list copy no older than ``list_max_age_days`` (counted in calendar days) may be contacted.
    """

    id: str
    reference: str
    scope: Scope
    admits: frozenset[BasisKind] = frozenset()
    list_max_age_days: int | None = None
    note: str = ""

    @property
    def opt_out(self) -> bool:
        return BasisKind.OPPOSITION_LIST in self.admits


@dataclass(frozen=True, slots=True)
class LimitRule:
    """A statutory limit on every contact in its scope, consented or not, unless exempt."""

    id: str
    reference: str
    scope: Scope
    kind: LimitKind
    exempt: frozenset[BasisKind] = frozenset()
    spans: tuple[tuple[time, time], ...] = ()  # HOURS: local [start, end) spans
    days: int = EVERY_DAY  # HOURS: weekday mask, bit 0 = Monday
    public_holidays: bool = False  # HOURS: never on the region's public holidays
    max_contacts: int = 0  # FREQUENCY
    period_days: int = 0  # FREQUENCY, PAUSE_AFTER_REFUSAL
    note: str = field(default="")
