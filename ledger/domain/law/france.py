"""France: C. conso. L.223-1 (opt-in for telephone canvassing from 11 August 2026), décret
n° 2022-1313 (D.223-9: hours, days, holidays, 4 calls per 30 days, 60 days after a refusal),
CPCE L.34-5 (SMS, e-mail, automated calls: prior consent, soft opt-in)."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from ledger.domain.bases import BasisKind
from ledger.domain.channels import Channel
from ledger.domain.law.rules import (
    MONDAY_TO_FRIDAY,
    BasisRule,
    LimitKind,
    LimitRule,
    Scope,
)

PARIS = ZoneInfo("Europe/Paris")
# The overseas departments and regions are France for L.223-1 and D.223-9; phonenumbers gives
# them their own region codes. The collectivités of Saint-Barthélemy, Saint-Martin and
# Saint-Pierre-et-Miquelon are included too: the consumer code applies there, and including
# them can only refuse more.
REGIONS = frozenset({"FR", "GP", "MQ", "GF", "RE", "YT", "BL", "MF", "PM"})
CALLS = frozenset({Channel.CALL})
WRITTEN = frozenset({Channel.SMS, Channel.EMAIL, Channel.MESSAGING})

OPT_IN_FROM = datetime(2026, 8, 11, tzinfo=PARIS)
DECRET_FROM = datetime(2023, 3, 1, tzinfo=PARIS)
# D.223-9's limits do not apply within an ongoing contract, nor to a call the consumer asked for.
DECRET_EXEMPT = frozenset({BasisKind.ONGOING_CONTRACT, BasisKind.APPOINTMENT})

BASES = (
    BasisRule(
        "FR-L223-1-bloctel",
        "C. conso. L.223-1 (before loi n° 2025-594): Bloctel opposition list",
        Scope(REGIONS, CALLS, valid_until=OPT_IN_FROM),
        admits=frozenset(
            {BasisKind.OPPOSITION_LIST, BasisKind.ONGOING_CONTRACT, BasisKind.APPOINTMENT}
        ),
        list_max_age_days=30,
        note="a cleaned file is valid at most 30 days; Bloctel ends on 10 August 2026",
    ),
    BasisRule(
        "FR-L223-1-consent",
        "loi n° 2025-594 du 30 juin 2025, art. 13; C. conso. L.223-1",
        Scope(REGIONS, CALLS, valid_from=OPT_IN_FROM),
        admits=frozenset({BasisKind.ONGOING_CONTRACT, BasisKind.APPOINTMENT}),
        note="from 11 August 2026 00:00 Europe/Paris; ongoing contract only about its subject",
    ),
    BasisRule(
        "FR-L34-5-consent",
        "CPCE L.34-5: prior consent for SMS, e-mail and automated messages",
        Scope(REGIONS, WRITTEN),
        admits=frozenset({BasisKind.SOFT_OPT_IN}),
        note="soft opt-in: existing customer, similar products, opt-out offered each time",
    ),
)

LIMITS = (
    LimitRule(
        "FR-D223-9-hours",
        "décret n° 2022-1313, C. conso. D.223-9: Monday-Friday 10:00-13:00 and 14:00-20:00",
        Scope(REGIONS, CALLS, valid_from=DECRET_FROM),
        LimitKind.HOURS,
        exempt=DECRET_EXEMPT,
        spans=((time(10), time(13)), (time(14), time(20))),
        days=MONDAY_TO_FRIDAY,
        public_holidays=True,
        note="never on Saturday, Sunday or a public holiday (overseas days included)",
    ),
    LimitRule(
        "FR-D223-9-frequency",
        "décret n° 2022-1313, C. conso. D.223-9: at most 4 calls or attempts per 30 days",
        Scope(REGIONS, CALLS, valid_from=DECRET_FROM),
        LimitKind.FREQUENCY,
        exempt=DECRET_EXEMPT,
        max_contacts=4,
        period_days=30,
        note="by the same professional to the same consumer, answered or not",
    ),
    LimitRule(
        "FR-D223-9-refusal",
        "décret n° 2022-1313, C. conso. D.223-9: no new call for 60 days after a refusal",
        Scope(REGIONS, CALLS, valid_from=DECRET_FROM),
        LimitKind.PAUSE_AFTER_REFUSAL,
        exempt=DECRET_EXEMPT,
        period_days=60,
        note="counted from the report of the refusal (refused_by_consumer), the later moment",
    ),
)
