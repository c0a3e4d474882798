"""The decision: may this company contact this consumer on this channel now?

Pure functions over a snapshot of chain state and the usage counts; no I/O here, so the
rules are tested exhaustively and the same code serves checks, scrubs and audit replay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from ledger.domain.channels import Channel
from ledger.domain.grants import ALL_DAYS, ALL_HOURS, CompanyStatus, GrantRecord
from ledger.domain.law import CallingWindow, Regime, rule_for
from ledger.domain.state import CompanyRecord, ConsumerRecord
from ledger.domain.window import window_state


@dataclass(frozen=True, slots=True)
class Reason:
    """A machine-readable reason code with a human message."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class OppositionStatus:
    """What the opposition lists say about the contact at the time of a check.

    The national list is the one of the number's region; the company list is the asking
    company's own do-not-call list. Staleness is judged against the decision's ``now`` so
    that an audit replay reaches the same answer from the same metadata.
    """

    version: str | None = None  # the region's current list; None when none is loaded
    listed: bool = False
    fetched_at: int | None = None
    max_age: int | None = None  # seconds
    company_version: str | None = None  # None when the company keeps no list here
    company_listed: bool = False

    def is_stale(self, now: int) -> bool:
        if self.version is None or self.fetched_at is None or self.max_age is None:
            return False
        return now - self.fetched_at > self.max_age


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
    opposition: OppositionStatus = field(default_factory=OppositionStatus)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reasons: list[Reason]
    consumer: str | None = None
    remaining: int | None = None
    next_free_at: int | None = None
    grant_version: int | None = None
    block_number: int | None = None
    list_versions: tuple[str, ...] = ()  # the opposition-list snapshots this answer read

    @property
    def codes(self) -> list[str]:
        return [r.code for r in self.reasons]


def decide(snap: Snapshot) -> Decision:
    """Applies DESIGN rule 4 to a snapshot."""
    if snap.company.status is CompanyStatus.NONE:
        return _refuse(snap, Reason("company_unknown", f"no company {snap.company_id}"))
    if snap.company.status is CompanyStatus.SUSPENDED:
        return _refuse(snap, Reason("company_suspended", f"company {snap.company_id} is suspended"))

    opp = snap.opposition
    company_lists = () if opp.company_version is None else (opp.company_version,)
    if opp.company_listed:
        # The company's own do-not-call list wins even over a signed grant. A do-not-call
        # request to one company is the consumer's most specific word to it and may postdate
        # the grant (consent can be revoked by any reasonable means); nothing here orders the
        # two, and the company controls its list: removing the number lets the grant apply.
        return _refuse(
            snap,
            Reason(
                "company_do_not_call",
                f"on company {snap.company_id}'s own do-not-call list ({opp.company_version})",
            ),
            lists=company_lists,
        )

    grant = snap.grant
    if grant is None or not grant.active:
        return _without_grant(snap)
    return _with_grant(snap, grant, company_lists)


def _with_grant(snap: Snapshot, grant: GrantRecord, company_lists: tuple[str, ...]) -> Decision:
    refusals: list[Reason] = []
    if snap.now < grant.valid_from:
        refusals.append(Reason("grant_not_yet_valid", f"grant starts at {grant.valid_from}"))
    if snap.now >= grant.valid_until:
        refusals.append(Reason("grant_expired", f"grant ended at {grant.valid_until}"))
    refusals.extend(_schedule_refusals(grant, snap.time_zone, snap.now))
    what = f"quota of {grant.max_contacts} {snap.channel.name.lower()}"
    remaining, next_free, spent = _window(
        snap.window, "quota_exhausted", what, grant.max_contacts, grant.period, snap.now
    )
    refusals.extend(spent)
    cap = snap.consumer_record
    if cap is not None and cap.cap_max > 0:
        what = f"consumer's cap of {cap.cap_max} contacts"
        _, cap_free, reached = _window(
            snap.cap_window, "global_cap_reached", what, cap.cap_max, cap.cap_period, snap.now
        )
        refusals.extend(reached)
        if reached:
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
        # A signed grant is express consent: it overrides the national list, which is not read.
        list_versions=company_lists,
    )


def _window(
    times: list[int], code: str, what: str, max_contacts: int, period: int, now: int
) -> tuple[int, int, list[Reason]]:
    """(remaining, next free, the refusal when the rolling window is full) of a quota or cap."""
    remaining, next_free = window_state(times, max_contacts=max_contacts, period=period, now=now)
    if remaining > 0:
        return remaining, next_free, []
    message = f"{what} per {_days(period)} is used up until {next_free}"
    return remaining, next_free, [Reason(code, message)]


def _refuse(snap: Snapshot, *reasons: Reason, lists: tuple[str, ...] = ()) -> Decision:
    return Decision(
        False,
        list(reasons),
        consumer=snap.consumer,
        block_number=snap.block_number,
        list_versions=lists,
    )


def _without_grant(snap: Snapshot) -> Decision:
    rule = rule_for(snap.region, datetime.fromtimestamp(snap.now, UTC))
    opp = snap.opposition
    company_lists = () if opp.company_version is None else (opp.company_version,)
    missing = (
        Reason("no_grant", "no active grant for this company and channel")
        if snap.consumer
        else Reason("contact_not_linked", "no consumer has linked this contact")
    )
    if rule.regime is Regime.OPT_IN:
        return _refuse(
            snap, missing, Reason("consent_required", rule.reference), lists=company_lists
        )
    # Opt-out regimes need a fresh opposition list; without one the answer is no (fail closed).
    if opp.version is None:
        unavailable = Reason(
            "opposition_list_unavailable", f"no opposition list loaded ({rule.reference})"
        )
        return _refuse(snap, missing, unavailable, lists=company_lists)
    lists = (opp.version, *company_lists)
    if opp.is_stale(snap.now):
        stale = Reason(
            "opposition_list_stale",
            f"list {opp.version} fetched at {opp.fetched_at} is older than "
            f"{_days(opp.max_age or 0)} ({rule.reference})",
        )
        return _refuse(snap, missing, stale, lists=lists)
    if opp.listed:
        listed = Reason("on_opposition_list", f"on opposition list {opp.version}")
        return _refuse(snap, missing, listed, lists=lists)
    if rule.window is not None:
        refusals = _window_refusals(rule.window, snap.time_zone, snap.now)
        if refusals:
            return _refuse(snap, missing, *refusals, lists=lists)
    return Decision(
        True,
        [Reason("not_on_opposition_list", f"not on opposition list {opp.version}")],
        consumer=snap.consumer,
        block_number=snap.block_number,
        list_versions=lists,
    )


def _window_refusals(window: CallingWindow, time_zone: str | None, now: int) -> list[Reason]:
    if time_zone is None:
        return [Reason("time_zone_unknown", f"statutory hours apply ({window.reference})")]
    local = datetime.fromtimestamp(now, ZoneInfo(time_zone))
    hour_ok, day_ok = window.allows(local.hour, local.weekday())
    refusals = []
    if not hour_ok:
        refusals.append(
            Reason(
                "outside_statutory_hours",
                f"{local:%H:%M} {time_zone} is outside {window.reference}",
            )
        )
    if not day_ok:
        refusals.append(
            Reason("outside_statutory_days", f"{local:%A} is excluded by {window.reference}")
        )
    return refusals


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
