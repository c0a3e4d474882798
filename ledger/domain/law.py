"""Which regime governs unsolicited contact of a number: prior consent or opposition list.

Rules are data with their legal reference. A region not listed here needs consent: the safe
default for a product whose job is never to allow a contact it cannot justify.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum


class Regime(StrEnum):
    OPT_IN = "opt_in"  # no contact without the consumer's prior consent
    OPT_OUT = "opt_out"  # contact allowed unless the number is on the opposition list


@dataclass(frozen=True, slots=True)
class CallingWindow:
    """When the law allows unsolicited contact without consent, in the called party's time.

    ``spans`` are local ``[start, end)`` hours; ``days`` a weekday mask (bit 0 = Monday).
    A signed grant replaces this with the consumer's own hours and days.
    """

    spans: tuple[tuple[int, int], ...]
    days: int
    reference: str

    def allows(self, hour: int, weekday: int) -> tuple[bool, bool]:
        """(hour allowed, day allowed)."""
        return any(a <= hour < b for a, b in self.spans), bool(self.days >> weekday & 1)


@dataclass(frozen=True, slots=True)
class Rule:
    region: str
    regime: Regime
    since: datetime
    reference: str
    window: CallingWindow | None = None  # statutory hours for contacts without consent


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_EVERY_DAY = 0b1111111
_MONDAY_TO_FRIDAY = 0b0011111

RULES: tuple[Rule, ...] = (
    Rule("FR", Regime.OPT_OUT, _EPOCH, "C. conso. L.223-1 (Bloctel)"),
    Rule(
        "FR",
        Regime.OPT_OUT,
        datetime(2023, 3, 1, tzinfo=UTC),
        "C. conso. L.223-1 (Bloctel)",
        # Public holidays are also excluded by the décret; not modelled (the regime ended).
        CallingWindow(((10, 13), (14, 20)), _MONDAY_TO_FRIDAY, "décret n° 2022-1313"),
    ),
    Rule(
        "FR",
        Regime.OPT_IN,
        datetime(2026, 8, 11, tzinfo=UTC),
        "loi n° 2025-594, art. 13; C. conso. L.223-1",
    ),
    Rule(
        "US",
        Regime.OPT_OUT,
        _EPOCH,
        "47 CFR 64.1200(c)(2) (National Do-Not-Call Registry)",
        CallingWindow(((8, 21),), _EVERY_DAY, "47 CFR 64.1200(c)(1)"),
    ),
    Rule("GB", Regime.OPT_OUT, _EPOCH, "PECR reg. 21 (Telephone Preference Service)"),
)

DEFAULT = Rule("*", Regime.OPT_IN, _EPOCH, "no rule known for this region: consent required")


def rule_for(region: str | None, at: datetime) -> Rule:
    """The rule in force for ``region`` at ``at`` (the newest whose ``since`` has passed)."""
    current = DEFAULT
    for rule in RULES:
        if (
            rule.region == region
            and rule.since <= at
            and (current is DEFAULT or rule.since >= current.since)
        ):
            current = rule
    return current
