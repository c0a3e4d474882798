"""United Kingdom: the Privacy and Electronic Communications Regulations 2003 (PECR)."""

from __future__ import annotations

from ledger.domain.bases import BasisKind
from ledger.domain.channels import Channel
from ledger.domain.law.rules import BasisRule, Scope

REGIONS = frozenset({"GB"})

BASES = (
    BasisRule(
        "GB-PECR-21-tps",
        "PECR reg. 21: Telephone Preference Service",
        Scope(REGIONS, frozenset({Channel.CALL})),
        admits=frozenset({BasisKind.OPPOSITION_LIST, BasisKind.APPOINTMENT}),
        list_max_age_days=28,
        note="screened against TPS within 28 days before the call; a requested call is solicited",
    ),
    BasisRule(
        "GB-PECR-22-consent",
        "PECR reg. 22: prior consent for marketing by e-mail or SMS",
        Scope(REGIONS, frozenset({Channel.SMS, Channel.EMAIL, Channel.MESSAGING})),
        admits=frozenset({BasisKind.SOFT_OPT_IN}),
    ),
)

LIMITS = ()
