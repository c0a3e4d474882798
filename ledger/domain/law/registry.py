"""The rules in force for a region, a channel and a moment.

A region or channel with no rule needs consent (``DEFAULT``): the safe default for a product
whose job is never to allow a contact it cannot justify. Revocations and companies' own
do-not-call lists bind in every regime (``REVOCATION``, ``COMPANY_DO_NOT_CALL``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from ledger.domain.channels import Channel
from ledger.domain.law import france, germany, united_kingdom, united_states
from ledger.domain.law.rules import ALL_CHANNELS, BasisRule, LimitRule, Scope

BASES: tuple[BasisRule, ...] = (
    *france.BASES,
    *united_states.BASES,
    *united_kingdom.BASES,
    *germany.BASES,
)
LIMITS: tuple[LimitRule, ...] = (
    *france.LIMITS,
    *united_states.LIMITS,
    *united_kingdom.LIMITS,
    *germany.LIMITS,
)

_EVERYWHERE = Scope(frozenset({"*"}), ALL_CHANNELS)

DEFAULT = BasisRule(
    "ANY-consent",
    "GDPR art. 6(1)(a), 7 and national law: no rule known for this region and channel",
    _EVERYWHERE,
    note="a region or channel with no rule here needs the consumer's consent",
)
REVOCATION = BasisRule(
    "ANY-revocation",
    "47 CFR 64.1200(d)(3); FCC 24-24; PECR reg. 21(1)(a); GDPR art. 7(3), 21(3)",
    _EVERYWHERE,
    note="a revocation (one grant, or revoke-all) is a do-not-contact request to that company "
    "on that channel (revoke-all: every channel) until a later grant",
)
COMPANY_DO_NOT_CALL = BasisRule(
    "ANY-company-dnc",
    "47 CFR 64.1200(d)(3); PECR reg. 21(1)(a); GDPR art. 21(3)",
    _EVERYWHERE,
    note="the company's own do-not-call list wins even over a signed grant",
)
EVERY_RULE: tuple[BasisRule | LimitRule, ...] = (
    COMPANY_DO_NOT_CALL,
    REVOCATION,
    *BASES,
    DEFAULT,
    *LIMITS,
)


def basis_rule(region: str | None, channel: Channel, at: int) -> BasisRule:
    """The rule saying which basis a contact needs (``DEFAULT`` when none covers it)."""
    moment = datetime.fromtimestamp(at, UTC)
    for rule in BASES:
        if rule.scope.covers(region, channel, moment):
            return rule
    return DEFAULT


def limits(region: str | None, channel: Channel, at: int) -> list[LimitRule]:
    """The statutory limits in force for a contact."""
    moment = datetime.fromtimestamp(at, UTC)
    return [rule for rule in LIMITS if rule.scope.covers(region, channel, moment)]
