"""Local time and public holidays at the called party's number.

Public holidays come from the ``holidays`` package (computed, no download), per region: the
French overseas departments add their own days (abolition of slavery: Mayotte 27 April,
Martinique 22 May, Guadeloupe 27 May, Guyane 10 June, Réunion 20 December).
"""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

# phonenumbers' region code -> the country and subdivision the holidays package knows it by.
# Metropolitan France: a number does not tell Alsace-Moselle (Good Friday, 26 December) from
# the rest, so its extra days are applied to every metropolitan number (the reading that refuses).
_HOLIDAY_CALENDARS: dict[str, tuple[tuple[str, str | None], ...]] = {
    "FR": (("FR", None), ("FR", "57")),
    "GP": (("FR", "971"),),
    "MQ": (("FR", "972"),),
    "GF": (("FR", "973"),),
    "RE": (("FR", "974"),),
    "YT": (("FR", "976"),),
    "BL": (("FR", "BL"),),
    "MF": (("FR", "MF"),),
    "PM": (("FR", "PM"),),
}


def local(at: int, time_zone: str) -> datetime:
    """The moment ``at`` (unix seconds) on the wall clock of ``time_zone``."""
    return datetime.fromtimestamp(at, ZoneInfo(time_zone))


def days_between(earlier: int, later: int, time_zone: str | None) -> int:
    """Calendar days from ``earlier`` to ``later`` on the wall clock of ``time_zone``.

    The texts count a list copy's age in days before the call, on the called party's calendar.
    With no zone known, the count is the largest some zone would give (the reading that
    refuses): the number of midnights the interval can cross, i.e. elapsed days rounded up.
    """
    if time_zone is None:
        return -(-(later - earlier) // 86400)
    zone = ZoneInfo(time_zone)
    return (
        datetime.fromtimestamp(later, zone).date() - datetime.fromtimestamp(earlier, zone).date()
    ).days


def holiday_name(region: str, day: date) -> str | None:
    """The public holiday ``day`` is in ``region``, or None (also for a region with no calendar)."""
    for country, subdiv in _HOLIDAY_CALENDARS.get(region, ()):
        name = _calendar(country, subdiv, day.year).get(day)
        if name is not None:
            return str(name)
    return None


@lru_cache(maxsize=256)
def _calendar(country: str, subdiv: str | None, year: int) -> holidays.HolidayBase:
    return holidays.country_holidays(country, subdiv=subdiv, years=year)
