from __future__ import annotations

import pytest

from ledger.domain.contacts import ContactKind, commitment, parse_contact, parse_email, parse_phone
from ledger.domain.errors import InvalidContact


@pytest.mark.parametrize(
    ("raw", "region", "e164", "number_region", "zone"),
    [
        ("+33 6 12 34 56 78", "FR", "+33612345678", "FR", "Europe/Paris"),
        ("06.12.34.56.78", "FR", "+33612345678", "FR", "Europe/Paris"),
        ("0033612345678", "FR", "+33612345678", "FR", "Europe/Paris"),
        ("(202) 555-0143", "US", "+12025550143", "US", "America/New_York"),
        ("+1 415 555 2671", "FR", "+14155552671", "US", "America/Los_Angeles"),
        ("020 7946 0018", "GB", "+442079460018", "GB", "Europe/London"),
    ],
)
def test_phone_numbers_normalise_to_e164(
    raw: str, region: str, e164: str, number_region: str, zone: str
) -> None:
    contact = parse_phone(raw, default_region=region)
    assert (contact.value, contact.region, contact.time_zone) == (e164, number_region, zone)
    assert contact.kind is ContactKind.PHONE


@pytest.mark.parametrize("raw", ["", "12", "hello", "+33 6 12", "+999 123456789", "1" * 300])
def test_invalid_phone_numbers_are_refused(raw: str) -> None:
    with pytest.raises(InvalidContact) as info:
        parse_phone(raw, default_region="FR")
    assert raw not in info.value.message or raw == ""  # never echo the contact


def test_email_domain_is_lower_cased_and_local_part_kept() -> None:
    assert parse_email("  Jane.Doe@Example.ORG ").value == "Jane.Doe@example.org"


@pytest.mark.parametrize("raw", ["no-at-sign", "a@b", "a@@b.fr", "a b@c.fr", "@c.fr"])
def test_invalid_emails_are_refused(raw: str) -> None:
    with pytest.raises(InvalidContact):
        parse_email(raw)


def test_commitment_is_stable_across_formats_and_depends_on_salt() -> None:
    a = parse_contact("+33 6 12 34 56 78", default_region="FR")
    b = parse_contact("06 12 34 56 78", default_region="FR")
    assert commitment(a, b"salt") == commitment(b, b"salt")
    assert commitment(a, b"salt") != commitment(a, b"other")
    assert len(commitment(a, b"salt")) == 32
    assert b"612345678" not in commitment(a, b"salt")
