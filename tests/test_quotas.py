"""The decision rules, table-driven, and the rolling window against a brute-force reference."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.grants import ALL_DAYS, ALL_HOURS, OPEN_ENDED, Channel, CompanyStatus, GrantRecord
from ledger.quotas import Snapshot, decide, window_state
from ledger.state import CompanyRecord, ConsumerRecord

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
            snap(grant=grant(active=False)),
            False,
            ["no_grant", "consent_required"],
        ),
        (
            "unlinked, FR opt-in",
            snap(consumer=None, grant=None),
            False,
            ["contact_not_linked", "consent_required"],
        ),
        (
            "unlinked FR before 2026-08-11: opt-out, no list loaded",
            snap(consumer=None, grant=None, now=NOON_PARIS - 86400 * 60),
            False,
            ["contact_not_linked", "opposition_list_unavailable"],
        ),
        (
            "US opt-out without a list fails closed",
            snap(consumer=None, grant=None, region="US"),
            False,
            ["contact_not_linked", "opposition_list_unavailable"],
        ),
        (
            "unknown region needs consent",
            snap(grant=None, region="ZZ"),
            False,
            ["no_grant", "consent_required"],
        ),
    ],
)
def test_decision_rules(case: str, snapshot: Snapshot, allowed: bool, codes: list[str]) -> None:
    decision = decide(snapshot)
    assert (decision.allowed, decision.codes) == (allowed, codes), case
    assert decision.block_number == 7


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
