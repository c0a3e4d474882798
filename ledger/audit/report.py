"""The audit report's data: what a regulator reads about one company, or all, over a period.

Pure reads of the usage log and the event index, in one snapshot: contacts per day and channel,
the grants' quotas against the contacts made under them, refusals by reason, and how far the
on-chain anchors cover the log. Two findings come from elsewhere and are inputs, so that the
report never re-runs an audit on its own terms: ``violations`` (the independent replay of every
decision) and ``verification`` (the re-hash of the log against its anchors). An audit that was
not run is reported as "not run", never as a pass. ``report_html`` renders the result.

Example:
    >>> with transaction(engine) as session:
    ...     data = build_report(session, period=Period.last_days(30, now=now), company_id=1,
    ...                         log_id=1, now=now)
    >>> data.model_dump(mode="json")["totals"]
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Select, func, select
from sqlalchemy.engine import Connection
from sqlmodel import Session, col

from ledger.audit.replay import FindingKind, ReplayReport
from ledger.audit.verify import Result
from ledger.domain.channels import Channel
from ledger.domain.errors import InvalidInput
from ledger.index.tables import AnchorHistoryRow, AnchorRow, CompanyRow, GrantRow
from ledger.usage.entries import EntryKind, UsageEntry

DAY = 86400
MAX_DAYS = 3660  # ten years: one bar per day must still make a chart a person can read
_Query = TypeVar("_Query", bound=Select[*tuple[Any, ...]])


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class Period(_Frozen):
    """Unix seconds ``[since, until)``: the contacts the report counts."""

    since: int = Field(ge=0)
    until: int = Field(ge=0)

    @classmethod
    def last_days(cls, days: int, *, now: int) -> Period:
        """The ``days`` whole UTC days up to and including today."""
        end = (now // DAY + 1) * DAY
        return cls(since=end - days * DAY, until=end)

    @classmethod
    def of_dates(cls, first: date, last: date) -> Period:
        """From the start of ``first`` to the end of ``last`` (UTC days, both included)."""
        start = datetime(first.year, first.month, first.day, tzinfo=UTC)
        end = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
        return cls(since=int(start.timestamp()), until=int(end.timestamp()))

    @classmethod
    def asked(cls, *, days: int, first: date | None, last: date | None, now: int) -> Period:
        """The period a user asked for: ``first`` to ``last``, or else the last ``days`` days.

        Raises:
            InvalidInput: only one of ``first`` and ``last``, or ``last`` before ``first``.
        """
        if first is None and last is None:
            return cls.last_days(days, now=now)
        if first is None or last is None:
            raise InvalidInput("give both the first and the last day, or neither")
        if last < first:
            raise InvalidInput(
                f"the last day {last} is before the first {first}", first=str(first), last=str(last)
            )
        if (last - first).days >= MAX_DAYS:
            raise InvalidInput(
                f"a report covers at most {MAX_DAYS} days", first=str(first), last=str(last)
            )
        return cls.of_dates(first, last)

    def days(self) -> list[date]:
        """Every UTC day the period touches, in order."""
        first, last = self.since // DAY, (max(self.until, self.since + 1) - 1) // DAY
        return [date.fromordinal(date(1970, 1, 1).toordinal() + d) for d in range(first, last + 1)]


class ReportFormat(StrEnum):
    HTML = "html"  # one self-contained page (``ledger.audit.report_html``)
    JSON = "json"  # the ``Report`` model as JSON


class AuditStatus(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    NOT_RUN = "not run"


class Verification(_Frozen):
    """What re-hashing the log against its anchors found (``ledger.audit.verify``)."""

    status: AuditStatus = AuditStatus.NOT_RUN
    entries_checked: int | None = None
    first_bad_seq: int | None = None  # the first entry that does not match, when failed
    detail: str = ""


class Violation(_Frozen):
    """A recorded decision the replay from the chain does not agree with."""

    seq: int
    at: int
    company_id: int
    channel: str
    kind: FindingKind  # violation, wrongly refused, mismatch, unknown block
    recorded: str  # the decision recorded (allowed, refused)
    replayed: str  # the decision the chain and the log give
    reasons: list[str]  # the replayed decision's reason codes: why it decides so

    @property
    def broke_a_rule(self) -> bool:
        """An allowed contact the chain says was not allowed."""
        return self.kind in {FindingKind.VIOLATION, FindingKind.UNKNOWN_BLOCK}


class Violations(_Frozen):
    """The replay's findings for the report's company and period (``ledger.audit.replay``)."""

    status: AuditStatus = AuditStatus.NOT_RUN
    entries_replayed: int | None = None
    items: list[Violation] = []


class Totals(_Frozen):
    entries: int  # decisions recorded in the period (outcomes are not decisions)
    allowed: int
    refused: int
    outcomes: int


class DayCount(_Frozen):
    day: date
    channel: str
    allowed: int
    refused: int


class ChannelQuota(_Frozen):
    """A channel's grants in force against the contacts made under them."""

    channel: str
    grants: int  # grants in force at the end of the period (not revoked, not expired)
    allowance: int  # their quotas added up: contacts allowed per each grant's own period
    contacts: int  # allowed contacts in the report period, on any basis
    under_grant: int  # of which under a grant (consent)
    busiest_used: int  # the most contacts one grant took in one of its rolling windows
    busiest_quota: int  # that grant's quota
    at_quota: int  # grants that used their whole quota in some window


class ReasonCount(_Frozen):
    code: str
    count: int


class Anchoring(_Frozen):
    """How far the on-chain anchors cover the whole log (not only the report's company)."""

    log_id: int
    log_size: int
    anchored_size: int  # 0: never anchored
    anchored_at: int | None  # block time of the last anchor
    anchors: int  # anchor transactions indexed
    oldest_unanchored_at: int | None  # time of the first entry past the anchor
    lag_seconds: int | None  # how long that entry has waited for an anchor, at ``generated_at``

    @property
    def unanchored(self) -> int:
        return max(self.log_size - self.anchored_size, 0)


class Report(_Frozen):
    """Everything the audit report shows, JSON-ready (``model_dump(mode="json")``)."""

    generated_at: int
    period: Period
    company_id: int | None  # None: every company
    company_name: str | None
    totals: Totals
    days: list[DayCount]
    quotas: list[ChannelQuota]
    refusals: list[ReasonCount]
    violations: Violations
    anchoring: Anchoring
    verification: Verification


def build_report(
    session: Session,
    *,
    period: Period,
    company_id: int | None,
    log_id: int,
    now: int,
    violations: Violations | None = None,
    verification: Verification | None = None,
) -> Report:
    """Reads the report's data for ``company_id`` (None: all companies) over ``period``.

    Args:
        session: a session on the ledger's database (call inside one transaction, so that
            every figure comes from the same snapshot).
        period: the contacts counted.
        company_id: the company reported on, or None for every company.
        log_id: the usage log's id in the contract's anchors.
        now: unix time the report is made at (grants in force, anchor lag).
        violations: the replay's findings; None reports the replay as not run.
        verification: the verifier's result; None reports verification as not run.

    Returns:
        The report's data.
    """
    conn = session.connection()
    company_name = None
    if company_id is not None:
        company_name = conn.execute(
            select(col(CompanyRow.name)).where(col(CompanyRow.company_id) == company_id)
        ).scalar()
    return Report(
        generated_at=now,
        period=period,
        company_id=company_id,
        company_name=company_name,
        totals=_totals(conn, period, company_id),
        days=_day_counts(conn, period, company_id),
        quotas=_quotas(conn, period, company_id, now),
        refusals=_refusals(conn, period, company_id),
        violations=violations if violations is not None else Violations(),
        anchoring=_anchoring(conn, log_id, now),
        verification=verification if verification is not None else Verification(),
    )


_AT, _COMPANY, _DECISION = col(UsageEntry.at), col(UsageEntry.company_id), col(UsageEntry.decision)
_CHANNEL, _CONSUMER = col(UsageEntry.channel), col(UsageEntry.consumer)


def _in_period(query: _Query, period: Period, company_id: int | None) -> _Query:
    query = query.where(_AT >= period.since, _AT < period.until)
    if company_id is not None:
        query = query.where(_COMPANY == company_id)
    return query


def _totals(conn: Connection, period: Period, company_id: int | None) -> Totals:
    query = _in_period(select(_DECISION, func.count()).group_by(_DECISION), period, company_id)
    counts = {str(kind): int(n) for kind, n in conn.execute(query)}
    allowed, refused = counts.get(EntryKind.ALLOWED, 0), counts.get(EntryKind.REFUSED, 0)
    return Totals(
        entries=allowed + refused,
        allowed=allowed,
        refused=refused,
        outcomes=counts.get(EntryKind.OUTCOME, 0),
    )


def _day_counts(conn: Connection, period: Period, company_id: int | None) -> list[DayCount]:
    """One row per day and channel that had a decision, in day then channel order."""
    day = (_AT // DAY).label("day")
    query = _in_period(
        select(day, _CHANNEL, _DECISION, func.count())
        .where(_DECISION != EntryKind.OUTCOME.value)
        .group_by(day, _CHANNEL, _DECISION),
        period,
        company_id,
    )
    cells: dict[tuple[int, int], Counter[str]] = defaultdict(Counter)
    for d, channel, decision, n in conn.execute(query):
        cells[int(d), int(channel)][str(decision)] += int(n)
    epoch = date(1970, 1, 1).toordinal()
    return [
        DayCount(
            day=date.fromordinal(epoch + d),
            channel=_channel_name(channel),
            allowed=counts[EntryKind.ALLOWED],
            refused=counts[EntryKind.REFUSED],
        )
        for (d, channel), counts in sorted(cells.items())
    ]


def _refusals(conn: Connection, period: Period, company_id: int | None) -> list[ReasonCount]:
    """Refusals by reason code; a refusal that gave several reasons counts under each."""
    query = _in_period(
        select(col(UsageEntry.reasons)).where(_DECISION == EntryKind.REFUSED.value),
        period,
        company_id,
    )
    counts: Counter[str] = Counter()
    for (reasons,) in conn.execute(query):
        counts.update(set(json.loads(reasons)) or {"unspecified"})
    return [ReasonCount(code=c, count=n) for c, n in sorted(counts.items(), key=_most_first)]


def _most_first(item: tuple[str, int]) -> tuple[int, str]:
    return -item[1], item[0]


_GrantKey = tuple[str, int, int]  # consumer (lower case), company, channel


def _quotas(
    conn: Connection, period: Period, company_id: int | None, now: int
) -> list[ChannelQuota]:
    """Per channel: the grants in force, and how close the contacts under them came to quota."""
    grants = select(
        col(GrantRow.consumer),
        col(GrantRow.company_id),
        col(GrantRow.channel),
        col(GrantRow.max_contacts),
        col(GrantRow.period),
    ).where(
        col(GrantRow.max_contacts) > 0,  # 0 once revoked
        col(GrantRow.valid_from) <= now,
        col(GrantRow.valid_until) > now,
    )
    if company_id is not None:
        grants = grants.where(col(GrantRow.company_id) == company_id)
    in_force: dict[_GrantKey, tuple[int, int]] = {
        (consumer.lower(), int(company), int(channel)): (int(most), int(window))
        for consumer, company, channel, most, window in conn.execute(grants)
    }
    allowed = _in_period(
        select(_CHANNEL, _CONSUMER, _COMPANY, col(UsageEntry.grant_version), _AT).where(
            _DECISION == EntryKind.ALLOWED.value
        ),
        period,
        company_id,
    )
    contacts: Counter[int] = Counter()
    under_grant: Counter[int] = Counter()
    times: dict[_GrantKey, list[int]] = defaultdict(list)
    for channel, consumer, company, version, at in conn.execute(allowed):
        contacts[channel] += 1
        if version is not None and consumer is not None:
            under_grant[channel] += 1
            times[consumer.lower(), company, channel].append(at)
    rows = []
    for channel in Channel:
        mine = [(key, terms) for key, terms in in_force.items() if key[2] == channel]
        if not (mine or contacts[channel]):
            continue
        peaks = [(_peak(times.get(key, []), window), most) for key, (most, window) in mine]
        used, quota = max(peaks, default=(0, 0), key=_fullest)
        rows.append(
            ChannelQuota(
                channel=_channel_name(channel),
                grants=len(mine),
                allowance=sum(most for _, (most, _window) in mine),
                contacts=contacts[channel],
                under_grant=under_grant[channel],
                busiest_used=used,
                busiest_quota=quota,
                at_quota=sum(1 for used_, quota_ in peaks if used_ >= quota_),
            )
        )
    return rows


def _fullest(peak: tuple[int, int]) -> tuple[float, int]:
    used, quota = peak
    return used / quota if quota else 0.0, used


def _peak(times: Iterable[int], period: int) -> int:
    """The most contacts in any rolling window of ``period`` seconds (as the quota counts)."""
    ordered, most, start = sorted(times), 0, 0
    for end, at in enumerate(ordered):
        while ordered[start] <= at - period:
            start += 1
        most = max(most, end - start + 1)
    return most


def _anchoring(conn: Connection, log_id: int, now: int) -> Anchoring:
    log_size = int(conn.execute(select(func.count()).select_from(UsageEntry)).scalar_one())
    anchor = conn.execute(
        select(col(AnchorRow.tree_size), col(AnchorRow.anchored_at)).where(
            col(AnchorRow.log_id) == log_id
        )
    ).first()
    anchored, anchored_at = (int(anchor[0]), int(anchor[1])) if anchor is not None else (0, None)
    count = conn.execute(
        select(func.count())
        .select_from(AnchorHistoryRow)
        .where(col(AnchorHistoryRow.log_id) == log_id)
    ).scalar_one()
    # Leaf index = seq - 1, so the first entry an anchor of size n does not cover is n + 1.
    first_out = conn.execute(select(_AT).where(col(UsageEntry.seq) == anchored + 1)).scalar()
    return Anchoring(
        log_id=log_id,
        log_size=log_size,
        anchored_size=anchored,
        anchored_at=anchored_at,
        anchors=int(count),
        oldest_unanchored_at=first_out,
        lag_seconds=max(now - first_out, 0) if first_out is not None else None,
    )


def _channel_name(channel: int) -> str:
    try:
        return Channel(channel).name.lower()
    except ValueError:
        return f"channel {channel}"


def channels_of(days: Sequence[DayCount]) -> list[str]:
    """The channels present in ``days``, in the contract's channel order."""
    order = {c.name.lower(): int(c) for c in Channel}
    return sorted({d.channel for d in days}, key=lambda name: (order.get(name, 99), name))


def violations_of(conn: Connection, replayed: ReplayReport, period: Period) -> Violations:
    """The replay's findings about entries in ``period``, as the report lists them.

    Args:
        conn: the log's database (each finding's time, company and channel are read there).
        replayed: a replay of the report's company (``ledger.audit.replay.replay_log``).
        period: the report's period: findings about entries outside it are left out.
    """
    seqs = [f.seq for f in replayed.findings]
    where: dict[int, tuple[int, int, int]] = {}
    for start in range(0, len(seqs), 500):
        query = select(col(UsageEntry.seq), _AT, _COMPANY, _CHANNEL).where(
            col(UsageEntry.seq).in_(seqs[start : start + 500])
        )
        where.update(
            {int(seq): (int(at), int(c), int(ch)) for seq, at, c, ch in conn.execute(query)}
        )
    items = []
    for finding in replayed.findings:
        at, company, channel = where.get(finding.seq, (0, 0, -1))
        if not period.since <= at < period.until:
            continue
        items.append(
            Violation(
                seq=finding.seq,
                at=at,
                company_id=company,
                channel=_channel_name(channel),
                kind=finding.kind,
                recorded=str(finding.recorded.get("decision")),
                replayed=str(finding.chain.get("decision")),
                reasons=[r["code"] for r in finding.reasons],
            )
        )
    return Violations(
        status=AuditStatus.FAILED if items else AuditStatus.PASSED,
        entries_replayed=replayed.decisions,
        items=items,
    )


def verification_of(result: Result) -> Verification:
    """What ``ledger.audit.verify.verify`` found, as the report states it."""
    if result.problem is None:
        anchors = f"{result.anchors} {'anchor' if result.anchors == 1 else 'anchors'} checked"
        return Verification(status=AuditStatus.PASSED, entries_checked=result.size, detail=anchors)
    return Verification(
        status=AuditStatus.FAILED,
        entries_checked=result.size,
        first_bad_seq=result.problem.seq,
        detail=result.problem.line(),
    )
