"""Germany: UWG § 7 (unreasonable harassment) and § 7a (documenting consent)."""

from __future__ import annotations

from ledger.domain.bases import BasisKind
from ledger.domain.channels import Channel
from ledger.domain.law.rules import BasisRule, Scope

REGIONS = frozenset({"DE"})

BASES = (
    BasisRule(
        "DE-UWG-7-2-1-consent",
        "UWG § 7 (2) Nr. 1: prior express consent for marketing calls to consumers",
        Scope(REGIONS, frozenset({Channel.CALL})),
    ),
    BasisRule(
        "DE-UWG-7-2-2-consent",
        "UWG § 7 (2) Nr. 2, (3): prior express consent for e-mail and SMS; soft opt-in",
        Scope(REGIONS, frozenset({Channel.SMS, Channel.EMAIL, Channel.MESSAGING})),
        admits=frozenset({BasisKind.SOFT_OPT_IN}),
    ),
)

LIMITS = ()
