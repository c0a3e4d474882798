"""The decision rules, table-driven, and the rolling window against a brute-force reference."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.domain.channels import Channel
from ledger.domain.decision import OppositionStatus, Snapshot, decide
from ledger.domain.grants import ALL_DAYS, ALL_HOURS, OPEN_ENDED, CompanyStatus, GrantRecord
from ledger.domain.state import CompanyRecord, ConsumerRecord
from ledger.domain.window import window_state

# Wednesday 2026-09-02 12:00 Paris time (10:00 UTC).
NOON_PARIS = int(datetime(2026, 9, 2, 10, 0, tzinfo=UTC).timestamp())
ACTIVE = CompanyRecord("0x" + "11" * 20, CompanyStatus.ACTIVE)


def grant(**kw: int | bool) -> GrantRecord:
    base = {
        "max_contacts": 4,
        "period": 86400 * 365,
        "valid_from": 0,
        "valid_until": OPEN_ENDED,
        "hours_mask": ALL_HOURS,
        "days_mask": ALL_DAYS,
        "version": 1,
        "epoch": 0,
        "active": True,
    }
    return GrantRecord(**{**base, **kw})  # type: ignore[arg-type]


def snap(**kw: object) -> Snapshot:
    base = Snapshot(
        now=NOON_PARIS,
        company_id=1,
        company=ACTIVE,
        channel=Channel.SMS,
        region="FR",
        time_zone="Europe/Paris",
        consumer="0x" + "22" * 20,
        grant=grant(),
        consumer_record=ConsumerRecord(0, 0, 0, 1),
        block_number=7,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


HOURS_10_TO_13 = sum(1 << h for h in range(10, 13))
WEEKDAYS = 0b0011111
NOON_NEW_YORK = NOON_PARIS + 6 * 3600  # 16:00 UTC
DAY = 86400
# Saturday 2026-07-04 / Friday 2026-07-03, 12:00 Paris: FR was opt-out then (Bloctel).
SATURDAY_PARIS_2026 = NOON_PARIS - 60 * DAY
FRIDAY_PARIS_2026 = SATURDAY_PARIS_2026 - DAY


def listed(
    listed: bool = False, *, age: int = DAY, max_age: int = 31 * DAY, company: bool | None = None
) -> OppositionStatus:
    """A loaded national list fetched ``age`` seconds before NOON_PARIS (and a company list)."""
    return OppositionStatus(
        version="US-1",
        listed=listed,
        fetched_at=NOON_PARIS - age,
        max_age=max_age,
        company_version=None if company is None else "C1-1",
        company_listed=bool(company),
    )


def us(**kw: object) -> Snapshot:
    """A call to an unlinked US number at noon in New York (calls are the opt-out channel)."""
    base = {
        "channel": Channel.CALL,
        "consumer": None,
        "grant": None,
        "region": "US",
        "time_zone": "America/New_York",
        "now": NOON_NEW_YORK,
    }
    return snap(**{**base, **kw})


@pytest.mark.parametrize(
    ("case", "snapshot", "allowed", "codes"),
    [
        ("fresh grant", snap(), True, ["grant_allows"]),
        ("quota used", snap(window=[NOON_PARIS - 10] * 4), False, ["quota_exhausted"]),
        ("old contacts aged out", snap(window=[]), True, ["grant_allows"]),
        (
            "unknown company",
            snap(company=CompanyRecord("0x" + "00" * 20, CompanyStatus.NONE)),
            False,
            ["company_unknown"],
        ),
        (
            "suspended company",
            snap(company=replace(ACTIVE, status=CompanyStatus.SUSPENDED)),
            False,
            ["company_suspended"],
        ),
        (
            "not yet valid",
            snap(grant=grant(valid_from=NOON_PARIS + 1)),
            False,
            ["grant_not_yet_valid"],
        ),
        ("expired", snap(grant=grant(valid_until=NOON_PARIS)), False, ["grant_expired"]),
        ("inside hours", snap(grant=grant(hours_mask=1 << 12)), True, ["grant_allows"]),
        (
            "outside hours",
            snap(grant=grant(hours_mask=HOURS_10_TO_13 & ~(1 << 12))),
            False,
            ["outside_allowed_hours"],
        ),
        ("weekday allowed", snap(grant=grant(days_mask=WEEKDAYS)), True, ["grant_allows"]),
        ("weekend only", snap(grant=grant(days_mask=0b1100000)), False, ["outside_allowed_days"]),
        (
            "zone unknown with hours",
            snap(time_zone=None, grant=grant(hours_mask=1)),
            False,
            ["time_zone_unknown"],
        ),
        ("zone unknown, no limits", snap(time_zone=None), True, ["grant_allows"]),
        (
            "global cap reached",
            snap(
                consumer_record=ConsumerRecord(0, 2, 86400 * 30, 1), cap_window=[NOON_PARIS - 5] * 2
            ),
            False,
            ["global_cap_reached"],
        ),
        (
            "global cap not reached",
            snap(consumer_record=ConsumerRecord(0, 2, 86400 * 30, 1), cap_window=[NOON_PARIS - 5]),
            True,
            ["grant_allows"],
        ),
        (
            "revoked grant, FR opt-in",
            snap(grant=grant(active=False, max_contacts=0)),
            False,
            ["revoked"],
        ),
        (
            "unlinked, FR opt-in",
            snap(consumer=None, grant=None),
            False,
            ["contact_not_linked", "consent_required"],
        ),
        (
            "unlinked FR before 2026-08-11: opt-out, no list loaded",
            snap(consumer=None, grant=None, channel=Channel.CALL, now=NOON_PARIS - 86400 * 60),
            False,
            ["contact_not_linked", "opposition_list_unavailable"],
        ),
        (
            "US opt-out without a list fails closed",
            snap(consumer=None, grant=None, region="US", channel=Channel.CALL),
            False,
            ["contact_not_linked", "opposition_list_unavailable"],
        ),
        (
            "unknown region needs consent",
            snap(grant=None, region="ZZ"),
            False,
            ["no_grant", "consent_required"],
        ),
        # ----- opposition lists (opt-out regimes) -----
        (
            "US, fresh list, not listed, inside statutory hours",
            us(opposition=listed()),
            True,
            ["not_on_opposition_list"],
        ),
        (
            "US, on the national list",
            us(opposition=listed(True)),
            False,
            ["contact_not_linked", "on_opposition_list"],
        ),
        (
            "US, linked but no grant, on the list",
            us(consumer="0x" + "22" * 20, opposition=listed(True)),
            False,
            ["no_grant", "on_opposition_list"],
        ),
        (
            "US, list older than its 31 days",
            us(opposition=listed(age=32 * DAY)),
            False,
            ["contact_not_linked", "opposition_list_stale"],
        ),
        (
            "US, stale and listed: staleness is named first",
            us(opposition=listed(True, age=32 * DAY)),
            False,
            ["contact_not_linked", "opposition_list_stale"],
        ),
        (
            "US, list exactly at its maximum age is still usable",
            us(opposition=listed(age=31 * DAY - 6 * 3600)),
            True,
            ["not_on_opposition_list"],
        ),
        (
            "US, 06:00 local is outside 8:00-21:00",
            us(opposition=listed(), now=NOON_PARIS),
            False,
            ["outside_statutory_hours"],
        ),
        (
            "US, zone unknown under statutory hours",
            us(opposition=listed(), time_zone=None),
            False,
            ["time_zone_unknown"],
        ),
        (
            "GB, fresh TPS, not listed: no statutory hours",
            us(region="GB", time_zone="Europe/London", opposition=listed(max_age=28 * DAY)),
            True,
            ["not_on_opposition_list"],
        ),
        (
            "GB, TPS older than 28 days",
            us(region="GB", opposition=listed(age=29 * DAY, max_age=28 * DAY)),
            False,
            ["contact_not_linked", "opposition_list_stale"],
        ),
        (
            "FR before 2026-08-11, Bloctel fresh, a Friday noon",
            snap(
                grant=None,
                channel=Channel.CALL,
                now=FRIDAY_PARIS_2026,
                opposition=replace(listed(), fetched_at=FRIDAY_PARIS_2026 - DAY),
            ),
            True,
            ["not_on_opposition_list"],
        ),
        (
            "FR before 2026-08-11, a Saturday is excluded",
            snap(
                grant=None,
                channel=Channel.CALL,
                now=SATURDAY_PARIS_2026,
                opposition=replace(listed(), fetched_at=SATURDAY_PARIS_2026 - DAY),
            ),
            False,
            ["outside_statutory_days"],
        ),
        (
            "FR since 2026-08-11: a fresh list does not replace consent",
            snap(grant=None, opposition=listed()),
            False,
            ["no_grant", "consent_required"],
        ),
        # ----- a signed grant and the lists -----
        (
            "a signed grant overrides the national list",
            snap(region="US", opposition=listed(True)),
            True,
            ["grant_allows"],
        ),
        (
            "a signed grant does not need a fresh list",
            snap(region="US", opposition=listed(age=90 * DAY)),
            True,
            ["grant_allows"],
        ),
        (
            "the company's own do-not-call list overrides a grant",
            snap(opposition=listed(company=True)),
            False,
            ["company_do_not_call"],
        ),
        (
            "the company's own list refuses without a grant too",
            us(opposition=listed(company=True)),
            False,
            ["company_do_not_call"],
        ),
        (
            "a suspended company is named before its own list",
            snap(
                company=replace(ACTIVE, status=CompanyStatus.SUSPENDED),
                opposition=listed(company=True),
            ),
            False,
            ["company_suspended"],
        ),
    ],
)
def test_decision_rules(case: str, snapshot: Snapshot, allowed: bool, codes: list[str]) -> None:
    decision = decide(snapshot)
    assert (decision.allowed, decision.codes) == (allowed, codes), case
    assert decision.block_number == 7


@pytest.mark.parametrize(
    ("case", "snapshot", "versions"),
    [
        ("no list consulted", snap(), ()),
        ("no list loaded", us(), ()),
        ("national list read", us(opposition=listed()), ("US-1",)),
        ("national and company lists read", us(opposition=listed(company=False)), ("US-1", "C1-1")),
        ("a grant reads only the company list", snap(opposition=listed(company=False)), ("C1-1",)),
        ("company list refusal", snap(opposition=listed(company=True)), ("C1-1",)),
        ("stale list is named", us(opposition=listed(age=40 * DAY)), ("US-1",)),
    ],
)
def test_each_decision_names_the_list_versions_it_read(
    case: str, snapshot: Snapshot, versions: tuple[str, ...]
) -> None:
    assert decide(snapshot).list_versions == versions, case


def test_quota_reason_names_the_quota_and_when_it_frees() -> None:
    first = NOON_PARIS - 1000
    decision = decide(snap(window=[first, first + 1, first + 2, first + 3]))
    assert decision.remaining == 0
    assert decision.next_free_at == first + 86400 * 365
    assert "quota of 4 sms per 365 days" in decision.reasons[0].message


def test_a_signed_grant_answers_with_remaining_quota_and_version() -> None:
    decision = decide(snap(window=[NOON_PARIS - 50]))
    assert (decision.remaining, decision.grant_version, decision.next_free_at) == (3, 1, NOON_PARIS)


def brute_force_allows(times: list[int], max_contacts: int, period: int) -> list[bool]:
    """Reference: t is allowed while fewer than max allowed requests lie in (t - period, t]."""
    allowed: list[int] = []
    answers = []
    for t in times:
        ok = sum(1 for a in allowed if t - period < a <= t) < max_contacts
        answers.append(ok)
        if ok:
            allowed.append(t)
    return answers


@settings(max_examples=300, deadline=None)
@given(
    gaps=st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=60),
    max_contacts=st.integers(min_value=1, max_value=6),
    period=st.integers(min_value=1, max_value=120),
)
def test_rolling_window_allows_exactly_what_brute_force_allows(
    gaps: list[int], max_contacts: int, period: int
) -> None:
    times, t = [], 1_000_000
    for gap in gaps:
        t += gap
        times.append(t)
    expected = brute_force_allows(times, max_contacts, period)
    g = grant(max_contacts=max_contacts, period=period)
    recorded: list[int] = []
    for t, want in zip(times, expected, strict=True):
        window = [a for a in recorded if a > t - period]
        decision = decide(snap(now=t, grant=g, window=window))
        assert decision.allowed == want
        if decision.allowed:
            recorded.append(t)
        else:
            # The promised next free time is exactly when the reference would allow again.
            free = decision.next_free_at
            assert free is not None and free > t
            assert brute_force_allows([*recorded, free], max_contacts, period)[-1]
            assert not brute_force_allows([*recorded, free - 1], max_contacts, period)[-1]


def test_window_state_counts_a_contact_for_exactly_one_period() -> None:
    assert window_state([100], max_contacts=1, period=10, now=105) == (0, 110)
    assert window_state([], max_contacts=1, period=10, now=110) == (1, 110)
