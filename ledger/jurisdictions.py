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
class Rule:
    region: str
    regime: Regime
    since: datetime
    reference: str


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

RULES: tuple[Rule, ...] = (
    Rule("FR", Regime.OPT_OUT, _EPOCH, "C. conso. L.223-1 (Bloctel)"),
    Rule(
        "FR",
        Regime.OPT_IN,
        datetime(2026, 8, 11, tzinfo=UTC),
        "loi n° 2025-594, art. 13; C. conso. L.223-1",
    ),
    Rule("US", Regime.OPT_OUT, _EPOCH, "47 CFR 64.1200(c)(2) (National Do-Not-Call Registry)"),
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
