"""The decision: may this company contact this consumer on this channel at this moment?

Pure functions over a snapshot of ledger state, the usage counts and the opposition lists; no
I/O here, so the rules are tested exhaustively (``tests/law/vectors.yaml``) and the same code
serves checks, scrubs and audit replay. The order (DESIGN rule 4, README "The decision"):

1. unknown or suspended company: refused;
2. the company's own do-not-call list, then a revocation by the consumer with no later grant:
   refused in every regime;
3. the basis the law of the region and channel needs (``domain.law``): a signed grant, a
   declared basis the law admits and whose facts hold, or (opt-out regimes) a fresh national
   list without the number; otherwise refused;
4. the statutory limits (hours, holidays, frequency, pause after a refusal) for every contact
   they cover, unless the basis exempts it; a grant's own hours, days, quota and the
   consumer's global cap narrow them further, never widen them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ledger.domain.bases import BasisKind, Declared
from ledger.domain.channels import Channel
from ledger.domain.grants import ALL_DAYS, ALL_HOURS, CompanyStatus, GrantRecord
from ledger.domain.law import registry
from ledger.domain.law.calendar import days_between, holiday_name, local
from ledger.domain.law.rules import BasisRule, LimitKind, LimitRule
from ledger.domain.state import CompanyRecord, ConsumerRecord
from ledger.domain.window import window_state

DAY = 86400


@dataclass(frozen=True, slots=True)
class Reason:
    """A machine-readable reason code with a human message and, for a rule of law, its id."""

    code: str
    message: str
    rule: str | None = None
    reference: str | None = None


def _because(rule: BasisRule | LimitRule, code: str, message: str) -> Reason:
    return Reason(code, message, rule=rule.id, reference=rule.reference)


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
    max_age: int | None = None  # seconds, as imported (an operator may set less than the law)
    company_version: str | None = None  # None when the company keeps no list here
    company_listed: bool = False

    def age_days(self, now: int, time_zone: str | None) -> int | None:
        """Days from the copy's download to ``now``, by the reading that refuses.

        "No more than 31 days before the call" reads as calendar days on the called party's
        calendar or as elapsed time; LAW.md says to take the reading that refuses, so the age
        is the larger: whole calendar days in ``time_zone``, or elapsed days rounded up.
        """
        if self.fetched_at is None:
            return None
        elapsed = -(-(now - self.fetched_at) // DAY)
        return max(days_between(self.fetched_at, now, time_zone), elapsed)

    def is_stale(self, now: int, time_zone: str | None, legal_days: int | None = None) -> bool:
        """Older than the law allows (``legal_days``), or than the copy's own shorter limit."""
        age = self.age_days(now, time_zone)
        if self.version is None or age is None:
            return False
        limits = [d for d in (legal_days, _whole_days(self.max_age)) if d is not None]
        return bool(limits) and age > min(limits)


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
    declared: Declared | None = None  # a basis other than a grant, declared by the company
    # Allowed contacts by this company to this contact on this channel (any basis), oldest
    # first, over the longest statutory frequency period, and its last reported refusal.
    company_contacts: list[int] = field(default_factory=list)
    last_refusal_at: int | None = None


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
    basis: BasisKind | None = None  # what made (or would have made) the contact lawful
    rules: tuple[str, ...] = ()  # ids of the rules of law applied, in order

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
        # The company's own do-not-call list wins even over a signed grant: a do-not-call
        # request is the consumer's most specific word to that company and may postdate the
        # grant. The company controls its list: removing the number lets the grant apply.
        rule = registry.COMPANY_DO_NOT_CALL
        message = f"on company {snap.company_id}'s own do-not-call list ({opp.company_version})"
        return _refuse(snap, _because(rule, "company_do_not_call", message), lists=company_lists)
    revoked = _revocation(snap)
    if revoked is not None:
        return _refuse(snap, revoked, lists=company_lists)
    law = registry.basis_rule(snap.region, snap.channel, snap.now)
    grant = snap.grant
    if grant is not None and grant.active:
        decision = _with_grant(snap, grant, law, company_lists)
    else:
        decision = _without_grant(snap, law, company_lists)
    return _limited(snap, decision)


def _revocation(snap: Snapshot) -> Reason | None:
    """A revocation of this company's grant on this channel, or a revoke-all, not granted since.

    A grant set after a revoke-all is active again, so an inactive grant, or no grant from a
    consumer who revoked everything, is a revocation still in force.
    """
    if snap.consumer is None:
        return None
    grant = snap.grant
    rule = registry.REVOCATION
    channel = snap.channel.name.lower()
    if grant is not None and grant.version > 0 and not grant.active:
        return _because(
            rule, "revoked", f"the consumer revoked company {snap.company_id}'s {channel} grant"
        )
    never_granted = grant is None or grant.version == 0
    record = snap.consumer_record
    if never_granted and record is not None and record.epoch > 0:
        return _because(rule, "revoked", "the consumer revoked every grant (revoke-all)")
    return None


def _with_grant(
    snap: Snapshot, grant: GrantRecord, law: BasisRule, company_lists: tuple[str, ...]
) -> Decision:
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
    allows = _because(
        law, "grant_allows", f"signed grant v{grant.version}: {remaining} left before this contact"
    )
    return Decision(
        allowed=not refusals,
        reasons=refusals or [allows],
        consumer=snap.consumer,
        remaining=remaining,
        next_free_at=next_free,
        grant_version=grant.version,
        block_number=snap.block_number,
        # A signed grant is express consent: it overrides the national list, which is not read.
        list_versions=company_lists,
        basis=BasisKind.CONSENT,
        rules=(law.id,),
    )


def _without_grant(snap: Snapshot, law: BasisRule, company_lists: tuple[str, ...]) -> Decision:
    missing = (
        Reason("no_grant", "no active grant for this company and channel")
        if snap.consumer
        else Reason("contact_not_linked", "no consumer has linked this contact")
    )
    if snap.declared is not None:
        return _declared(snap, snap.declared, law, company_lists)
    if not law.opt_out:
        required = _because(law, "consent_required", law.reference)
        return _refuse(snap, missing, required, lists=company_lists, law=law)
    # Opt-out regimes need a fresh opposition list; without one the answer is no (fail closed).
    opp = snap.opposition
    if opp.version is None:
        message = f"no opposition list loaded ({law.reference})"
        unavailable = _because(law, "opposition_list_unavailable", message)
        return _refuse(snap, missing, unavailable, lists=company_lists, law=law)
    lists = (opp.version, *company_lists)
    if opp.is_stale(snap.now, snap.time_zone, law.list_max_age_days):
        age = opp.age_days(snap.now, snap.time_zone)
        message = (
            f"list {opp.version} downloaded {age} days ago; the law allows "
            f"{law.list_max_age_days} ({law.reference})"
        )
        return _refuse(
            snap, missing, _because(law, "opposition_list_stale", message), lists=lists, law=law
        )
    if opp.listed:
        listed = _because(law, "on_opposition_list", f"on opposition list {opp.version}")
        return _refuse(snap, missing, listed, lists=lists, law=law)
    absent = _because(law, "not_on_opposition_list", f"not on opposition list {opp.version}")
    return _allow(snap, absent, lists, law, BasisKind.OPPOSITION_LIST)


def _declared(
    snap: Snapshot, declared: Declared, law: BasisRule, lists: tuple[str, ...]
) -> Decision:
    kind = declared.kind
    if kind not in law.admits:
        message = f"{kind.value} is not a basis here: {law.reference}"
        refusal = _because(law, "basis_not_admitted", message)
        return _refuse(snap, refusal, lists=lists, law=law, basis=kind)
    problem = declared.problem(snap.now)
    if problem is not None:
        refusal = _because(law, "basis_invalid", problem)
        return _refuse(snap, refusal, lists=lists, law=law, basis=kind)
    admitted = _because(law, "basis_admitted", f"declared {kind.value}, admitted by {law.id}")
    return _allow(snap, admitted, lists, law, kind)


def _limited(snap: Snapshot, decision: Decision) -> Decision:
    """Applies the statutory limits in force to an answer that has a basis."""
    # Limits narrow a lawful answer; a refusal for want of a basis has nothing to narrow.
    if decision.basis is None or not (decision.allowed or decision.basis is BasisKind.CONSENT):
        return decision
    applied: list[str] = []
    refusals: list[Reason] = []
    for rule in registry.limits(snap.region, snap.channel, snap.now):
        if decision.basis in rule.exempt:
            continue
        applied.append(rule.id)
        refusals.extend(_LIMITS[rule.kind](rule, snap))
    rules = (*decision.rules, *applied)
    if not refusals:
        return replace(decision, rules=rules)
    kept = [] if decision.allowed else decision.reasons
    return replace(decision, allowed=False, reasons=[*kept, *refusals], rules=rules)


def _hours(rule: LimitRule, snap: Snapshot) -> list[Reason]:
    if snap.time_zone is None or snap.region is None:
        return [_because(rule, "time_zone_unknown", f"statutory hours apply ({rule.reference})")]
    moment = local(snap.now, snap.time_zone)
    refusals = []
    clock = moment.time()
    if not any(start <= clock < end for start, end in rule.spans):
        message = f"{moment:%H:%M} {snap.time_zone} is outside {rule.reference}"
        refusals.append(_because(rule, "outside_statutory_hours", message))
    if not rule.days >> moment.weekday() & 1:
        message = f"{moment:%A} is excluded by {rule.reference}"
        refusals.append(_because(rule, "outside_statutory_days", message))
    holiday = holiday_name(snap.region, moment.date()) if rule.public_holidays else None
    if holiday is not None:
        message = f"{moment.date()} is a public holiday ({holiday}) in {snap.region}"
        refusals.append(_because(rule, "public_holiday", message))
    return refusals


def _frequency(rule: LimitRule, snap: Snapshot) -> list[Reason]:
    period = rule.period_days * DAY
    recent = [t for t in snap.company_contacts if t > snap.now - period]
    what = f"{rule.reference}: {rule.max_contacts} {snap.channel.name.lower()}"
    _, _, over = _window(recent, "statutory_frequency", what, rule.max_contacts, period, snap.now)
    return [_because(rule, r.code, r.message) for r in over]


def _pause(rule: LimitRule, snap: Snapshot) -> list[Reason]:
    refused = snap.last_refusal_at
    if refused is None or snap.now >= refused + rule.period_days * DAY:
        return []
    until = refused + rule.period_days * DAY
    message = f"the consumer refused at {refused}: no call before {until} ({rule.reference})"
    return [_because(rule, "refused_recently", message)]


_LIMITS = {
    LimitKind.HOURS: _hours,
    LimitKind.FREQUENCY: _frequency,
    LimitKind.PAUSE_AFTER_REFUSAL: _pause,
}


def _window(
    times: list[int], code: str, what: str, max_contacts: int, period: int, now: int
) -> tuple[int, int, list[Reason]]:
    """(remaining, next free, the refusal when the rolling window is full) of a quota or cap."""
    remaining, next_free = window_state(times, max_contacts=max_contacts, period=period, now=now)
    if remaining > 0:
        return remaining, next_free, []
    message = f"{what} per {_days(period)} is used up until {next_free}"
    return remaining, next_free, [Reason(code, message)]


def _allow(
    snap: Snapshot, reason: Reason, lists: tuple[str, ...], law: BasisRule, basis: BasisKind
) -> Decision:
    return Decision(
        True,
        [reason],
        consumer=snap.consumer,
        block_number=snap.block_number,
        list_versions=lists,
        basis=basis,
        rules=(law.id,),
    )


def _refuse(
    snap: Snapshot,
    *reasons: Reason,
    lists: tuple[str, ...] = (),
    law: BasisRule | None = None,
    basis: BasisKind | None = None,
) -> Decision:
    rules = tuple(dict.fromkeys(r.rule for r in reasons if r.rule is not None))
    if law is not None and law.id not in rules:
        rules = (*rules, law.id)
    return Decision(
        False,
        list(reasons),
        consumer=snap.consumer,
        block_number=snap.block_number,
        list_versions=lists,
        basis=basis,
        rules=rules,
    )


def _schedule_refusals(grant: GrantRecord, time_zone: str | None, now: int) -> list[Reason]:
    if grant.hours_mask == ALL_HOURS and grant.days_mask == ALL_DAYS:
        return []
    if time_zone is None:
        return [Reason("time_zone_unknown", "grant limits hours or days but the zone is unknown")]
    moment = local(now, time_zone)
    refusals = []
    if not grant.hours_mask >> moment.hour & 1:
        refusals.append(Reason("outside_allowed_hours", f"{moment:%H:%M} {time_zone} not allowed"))
    if not grant.days_mask >> moment.weekday() & 1:
        refusals.append(Reason("outside_allowed_days", f"{moment:%A} not allowed"))
    return refusals


def _whole_days(seconds: int | None) -> int | None:
    return None if seconds is None else seconds // DAY


def _days(seconds: int) -> str:
    return f"{seconds // DAY} days" if seconds % DAY == 0 else f"{seconds} s"
