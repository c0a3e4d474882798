"""Days and holidays on the called party's calendar."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from ledger.domain.law.calendar import days_between, holiday_name


def at(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp())


def test_days_are_counted_on_the_called_partys_calendar() -> None:
    # 2026-08-01 21:00 New York is already 2026-08-02 in UTC.
    fetched, call = at("2026-08-01T21:00:00-04:00"), at("2026-09-02T10:00:00-04:00")
    assert days_between(fetched, call, "America/New_York") == 32
    assert days_between(fetched, call, "UTC") == 31


@pytest.mark.parametrize(
    ("fetched", "call"),
    [
        ("2026-03-01T09:30:00+00:00", "2026-03-01T10:30:00+00:00"),  # crosses midnight at +14
        ("2026-03-01T11:30:00+00:00", "2026-03-01T12:30:00+00:00"),  # crosses midnight at -12
        ("2026-03-01T00:00:00+00:00", "2026-03-01T01:00:00+00:00"),  # crosses it at -00:30
        ("2026-03-01T00:00:00+00:00", "2026-04-01T00:00:00+00:00"),  # exactly 31 days
    ],
)
def test_without_a_zone_the_count_is_the_largest_any_zone_gives(fetched: str, call: str) -> None:
    offsets = [timezone(timedelta(minutes=m)) for m in range(-12 * 60, 14 * 60 + 1, 15)]
    largest = max(
        (
            datetime.fromisoformat(call).astimezone(z).date()
            - datetime.fromisoformat(fetched).astimezone(z).date()
        ).days
        for z in offsets
    )
    assert days_between(at(fetched), at(call), None) == largest


@pytest.mark.parametrize(
    ("region", "day", "holiday"),
    [
        ("FR", date(2026, 7, 14), True),
        ("FR", date(2026, 7, 15), False),
        ("RE", date(2026, 12, 20), True),  # abolition of slavery, Réunion only
        ("FR", date(2026, 12, 20), False),
        ("US", date(2026, 7, 4), False),  # no calendar applied outside the French rules
    ],
)
def test_public_holidays_per_region(region: str, day: date, holiday: bool) -> None:
    assert (holiday_name(region, day) is not None) is holiday
