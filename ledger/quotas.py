"""The decision: may this company contact this consumer on this channel now?

Pure functions over a snapshot of chain state and the usage counts; no I/O here, so the
rules are tested exhaustively and the same code serves checks, scrubs and audit replay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from ledger.grants import ALL_DAYS, ALL_HOURS, Channel, CompanyStatus, GrantRecord
from ledger.jurisdictions import Regime, rule_for
from ledger.state import CompanyRecord, ConsumerRecord


@dataclass(frozen=True, slots=True)
class Reason:
    """A machine-readable reason code with a human message."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything a decision reads, pinned to one block."""

    now: int
    company_id: int
    company: CompanyRecord
    channel: Channel
    region: str | None
    time_zone: str | None
    consumer: str | None  # the newest verified holder of the contact, if linked
    grant: GrantRecord | None
    consumer_record: ConsumerRecord | None
    block_number: int
    window: list[int] = field(default_factory=list)  # allowed contacts in the grant's window
    cap_window: list[int] = field(default_factory=list)  # allowed contacts in the cap's window


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reasons: list[Reason]
    consumer: str | None = None
    remaining: int | None = None
    next_free_at: int | None = None
    grant_version: int | None = None
    block_number: int | None = None

    @property
    def codes(self) -> list[str]:
        return [r.code for r in self.reasons]


def window_state(times: list[int], *, max_contacts: int, period: int, now: int) -> tuple[int, int]:
    """(remaining, next_free_at) of a rolling window holding ``times`` (oldest first).

    A contact at ``t`` occupies the window over ``[t, t + period)``.
    """
    used = len(times)
    remaining = max(max_contacts - used, 0)
    if remaining > 0:
        return remaining, now
    # The window frees a unit when the contact that put it at its maximum ages out.
    return 0, times[used - max_contacts] + period


def decide(snap: Snapshot) -> Decision:
    """Applies DESIGN rule 4 to a snapshot."""
    if snap.company.status is CompanyStatus.NONE:
        return _refuse(snap, Reason("company_unknown", f"no company {snap.company_id}"))
    if snap.company.status is CompanyStatus.SUSPENDED:
        return _refuse(snap, Reason("company_suspended", f"company {snap.company_id} is suspended"))

    grant = snap.grant
    if grant is None or not grant.active:
        return _without_grant(snap)

    refusals: list[Reason] = []
    if snap.now < grant.valid_from:
        refusals.append(Reason("grant_not_yet_valid", f"grant starts at {grant.valid_from}"))
    if snap.now >= grant.valid_until:
        refusals.append(Reason("grant_expired", f"grant ended at {grant.valid_until}"))
    refusals.extend(_schedule_refusals(grant, snap.time_zone, snap.now))

    remaining, next_free = window_state(
        snap.window, max_contacts=grant.max_contacts, period=grant.period, now=snap.now
    )
    if remaining == 0:
        refusals.append(
            Reason(
                "quota_exhausted",
                f"quota of {grant.max_contacts} {snap.channel.name.lower()} per "
                f"{_days(grant.period)} is used up until {next_free}",
            )
        )
    cap = snap.consumer_record
    if cap is not None and cap.cap_max > 0:
        cap_left, cap_free = window_state(
            snap.cap_window, max_contacts=cap.cap_max, period=cap.cap_period, now=snap.now
        )
        if cap_left == 0:
            refusals.append(
                Reason(
                    "global_cap_reached",
                    f"consumer's cap of {cap.cap_max} contacts per {_days(cap.cap_period)} "
                    f"is reached until {cap_free}",
                )
            )
            next_free = max(next_free, cap_free)
    reasons = refusals or [
        Reason(
            "grant_allows", f"signed grant v{grant.version}: {remaining} left before this contact"
        )
    ]
    return Decision(
        allowed=not refusals,
        reasons=reasons,
        consumer=snap.consumer,
        remaining=remaining,
        next_free_at=next_free,
        grant_version=grant.version,
        block_number=snap.block_number,
    )


def _refuse(snap: Snapshot, *reasons: Reason) -> Decision:
    return Decision(False, list(reasons), consumer=snap.consumer, block_number=snap.block_number)


def _without_grant(snap: Snapshot) -> Decision:
    rule = rule_for(snap.region, datetime.fromtimestamp(snap.now, UTC))
    missing = (
        Reason("no_grant", "no active grant for this company and channel")
        if snap.consumer
        else Reason("contact_not_linked", "no consumer has linked this contact")
    )
    if rule.regime is Regime.OPT_IN:
        return _refuse(snap, missing, Reason("consent_required", rule.reference))
    # Opt-out regimes need the opposition list; until one is loaded the answer is no.
    stale = Reason("opposition_list_unavailable", f"no opposition list loaded ({rule.reference})")
    return _refuse(snap, missing, stale)


def _schedule_refusals(grant: GrantRecord, time_zone: str | None, now: int) -> list[Reason]:
    if grant.hours_mask == ALL_HOURS and grant.days_mask == ALL_DAYS:
        return []
    if time_zone is None:
        return [Reason("time_zone_unknown", "grant limits hours or days but the zone is unknown")]
    local = datetime.fromtimestamp(now, ZoneInfo(time_zone))
    refusals = []
    if not grant.hours_mask >> local.hour & 1:
        refusals.append(Reason("outside_allowed_hours", f"{local:%H:%M} {time_zone} not allowed"))
    if not grant.days_mask >> local.weekday() & 1:
        refusals.append(Reason("outside_allowed_days", f"{local:%A} not allowed"))
    return refusals


def _days(seconds: int) -> str:
    return f"{seconds // 86400} days" if seconds % 86400 == 0 else f"{seconds} s"
