"""The phone parse that finds the region once answers exactly what phonenumbers' public calls do."""

from __future__ import annotations

import numpy as np
import phonenumbers
import pytest
from phonenumbers import PhoneNumberType, timezone

from ledger.domain import contacts
from ledger.domain.errors import InvalidContact


def _reference(raw: str, region: str) -> contacts.Contact | None:
    """parse_phone as it was written before: each public phonenumbers call on its own."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    zones = [z for z in timezone.time_zones_for_number(number) if z != "Etc/Unknown"]
    kind = phonenumbers.number_type(number)
    names = [n for n in dir(PhoneNumberType) if getattr(PhoneNumberType, n) == kind]
    return contacts.Contact(
        kind=contacts.ContactKind.PHONE,
        value=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        region=phonenumbers.region_code_for_number(number),
        number_type=names[0].lower() if names else "unknown",
        time_zone=zones[0] if len(zones) == 1 else None,
    )


def _samples() -> list[tuple[str, str]]:
    rng = np.random.default_rng(13)
    out = [
        ("06 12 34 56 78", "FR"),
        ("+1 800 555 0100", "US"),
        ("(202) 555-0143", "US"),
        ("020 7946 0000", "GB"),
        ("+44 7624 123456", "GB"),  # Isle of Man: its own region under +44
        ("+800 1234 5678", "FR"),  # non-geographic entity
        ("+49 30 123456", "DE"),
        ("+33 9 12 34 56 78", "FR"),
        ("+1 684 733 1234", "US"),  # American Samoa, a NANP region of its own
        ("not a number", "FR"),
    ]
    codes = [1, 33, 44, 49, 34, 39, 61, 81, 86, 91, 7, 55, 52, 27, 800, 882]
    for _ in range(3000):
        code = int(rng.choice(codes))
        digits = "".join(str(d) for d in rng.integers(0, 10, int(rng.integers(6, 12))))
        out.append((f"+{code} {digits}", "US"))
    return out


@pytest.mark.parametrize("region", ["US", "FR"])
def test_the_fast_parse_matches_the_public_calls_on_thousands_of_numbers(region: str) -> None:
    checked = valid = 0
    for raw, _ in _samples():
        expected = _reference(raw, region)
        try:
            got: contacts.Contact | None = contacts.parse_phone(raw, default_region=region)
        except InvalidContact:
            got = None
        assert got == expected, raw
        checked += 1
        valid += got is not None
    assert valid > 300 and checked - valid > 300  # both branches were exercised
