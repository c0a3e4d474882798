"""United States: 47 CFR 64.1200 (TCPA rules) and the Telemarketing Sales Rule."""

from __future__ import annotations

from datetime import time

from ledger.domain.bases import BasisKind
from ledger.domain.channels import Channel
from ledger.domain.law.rules import BasisRule, LimitKind, LimitRule, Scope

REGIONS = frozenset({"US"})
CALLS = frozenset({Channel.CALL})
WRITTEN = frozenset({Channel.SMS, Channel.EMAIL, Channel.MESSAGING})
# The TCPA's "call" includes a text to a phone number (FCC 03-153, para. 165); whether the
# calling hours of (c)(1) reach texts is disputed, so they do here (the reading that refuses).
TO_A_PHONE = frozenset({Channel.CALL, Channel.SMS, Channel.MESSAGING})

BASES = (
    BasisRule(
        "US-64.1200-c2-dnc",
        "47 CFR 64.1200(c)(2): National Do-Not-Call Registry; (f)(5) established business "
        "relationship",
        Scope(REGIONS, CALLS),
        admits=frozenset(
            {
                BasisKind.OPPOSITION_LIST,
                BasisKind.EXISTING_BUSINESS_RELATIONSHIP,
                BasisKind.APPOINTMENT,
            }
        ),
        list_max_age_days=31,
        note="the registry copy must be from a download at most 31 days before the call",
    ),
    BasisRule(
        "US-64.1200-a2-consent",
        "47 CFR 64.1200(a)(2): prior express written consent for telemarketing texts",
        Scope(REGIONS, WRITTEN),
        note="texts are read as autodialled (the reading that refuses); e-mail likewise",
    ),
)

LIMITS = (
    LimitRule(
        "US-64.1200-c1-hours",
        "47 CFR 64.1200(c)(1): no solicitation before 8:00 or after 21:00 local time",
        Scope(REGIONS, TO_A_PHONE),
        LimitKind.HOURS,
        exempt=frozenset({BasisKind.APPOINTMENT}),
        spans=((time(8), time(21)),),
        note="local time at the called party's number; several zones and no way to tell: refused;"
        " texts and messaging too (the reading that refuses)",
    ),
)
