"""Contact points: parsing, normalisation and the salted on-chain commitment.

A phone number becomes E.164 with its region, type and time zone; an e-mail address is
trimmed and its domain lower-cased. On chain a contact only ever appears as
``commitment(contact, salt)``: an HMAC under the operator's secret salt, so the same
contact always maps to the same commitment (the newest verified link wins) while the
commitment cannot be reversed by enumerating phone numbers.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumberType, timezone
from phonenumbers.phonenumberutil import _number_type_helper
from phonenumbers.timezone import _country_level_time_zones_for_number

from ledger.domain.errors import InvalidContact

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
_EMAIL = re.compile(rf"^[^@\s]{{1,64}}@{_LABEL}(?:\.{_LABEL})+$")
_MAX_INPUT = 254


class ContactKind(StrEnum):
    PHONE = "phone"
    EMAIL = "email"


@dataclass(frozen=True, slots=True)
class Contact:
    """A normalised contact point.

    Example:
        >>> c = parse_phone("06 12 34 56 78", default_region="FR")
        >>> (c.value, c.region, c.time_zone)
        ('+33612345678', 'FR', 'Europe/Paris')
    """

    kind: ContactKind
    value: str  # E.164 for phones, normalised address for e-mail
    region: str | None = None  # ISO 3166 alpha-2, phones only
    number_type: str | None = None
    time_zone: str | None = None  # IANA zone, when the number pins one

    @property
    def uri(self) -> str:
        """``tel:+33...`` or ``mailto:...``: the string the commitment is taken over."""
        return f"tel:{self.value}" if self.kind is ContactKind.PHONE else f"mailto:{self.value}"


def parse_phone(raw: str, *, default_region: str) -> Contact:
    """Parses a phone number written in any usual format.

    Args:
        raw: the number as typed ("+33 6 12 34 56 78", "06.12.34.56.78", "(202) 555-0143").
        default_region: region assumed when the number has no "+" prefix.

    Returns:
        The normalised contact.

    Raises:
        InvalidContact: the input is not a valid, dialable number.
    """
    # phonenumbers' is_valid_number, number_type and time_zones_for_number each find the
    # region again (a scan of every NANP region for a +1 number) and match the number against
    # its patterns again: done once here, the same answers cost half the time, and bulk checks
    # parse millions of numbers.
    number, region, number_type = _parse_valid(raw, default_region)
    zones = [z for z in _time_zones(number, number_type) if z != "Etc/Unknown"]
    return Contact(
        kind=ContactKind.PHONE,
        value=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        region=region,
        number_type=_TYPE_NAMES.get(number_type, "unknown"),
        # Several zones (a US toll-free number, say): the number does not pin one.
        time_zone=zones[0] if len(zones) == 1 else None,
    )


def _time_zones(number: phonenumbers.PhoneNumber, number_type: int) -> list[str]:
    """``timezone.time_zones_for_number`` given the number's type, already known."""
    if number_type == PhoneNumberType.UNKNOWN:
        return ["Etc/Unknown"]
    if not phonenumbers.is_number_type_geographical(number_type, number.country_code or 0):
        return list(_country_level_time_zones_for_number(number))
    return list(timezone.time_zones_for_geographical_number(number))


def e164_number(raw: str, *, default_region: str) -> int:
    """The E.164 form of a phone number as an integer: ``"06 12 34 56 78"`` -> 33612345678.

    The same parsing and validity as ``parse_phone``, without the time zone and number type
    a single check needs: bulk work (opposition lists, scrubs) calls this millions of times.
    E.164 has no leading zero and at most 15 digits, so the integer is exact and fits 64 bits.

    Raises:
        InvalidContact: the input is not a valid, dialable number.
    """
    number, _, _ = _parse_valid(raw, default_region)
    return int(f"{number.country_code}{phonenumbers.national_significant_number(number)}")


def _parse_valid(raw: str, default_region: str) -> tuple[phonenumbers.PhoneNumber, str, int]:
    """The parsed number, its region and its type; raises ``InvalidContact`` unless valid."""
    if not raw or len(raw) > _MAX_INPUT:
        raise InvalidContact(raw, "empty or too long")
    try:
        number = phonenumbers.parse(raw, default_region.upper())
    except phonenumbers.NumberParseException as exc:
        raise InvalidContact(raw, f"not a phone number ({exc.error_type})") from exc
    # phonenumbers.is_valid_number, keeping the region and the type it works out on the way.
    region = phonenumbers.region_code_for_number(number)
    country = number.country_code or 0  # always set on a parsed number
    metadata = (
        None
        if region is None
        else PhoneMetadata.metadata_for_region_or_calling_code(country, region.upper())
    )
    if (
        region is None
        or metadata is None
        or (
            region != phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY
            and country != phonenumbers.country_code_for_valid_region(region)
        )
    ):
        raise InvalidContact(raw, "not a valid number for its region")
    number_type = _number_type_helper(phonenumbers.national_significant_number(number), metadata)
    if number_type == PhoneNumberType.UNKNOWN:
        raise InvalidContact(raw, "not a valid number for its region")
    return number, region, number_type


def parse_email(raw: str) -> Contact:
    """Normalises an e-mail address (trimmed, domain lower-cased).

    Raises:
        InvalidContact: the input is not an e-mail address.
    """
    value = raw.strip()
    if len(value) > _MAX_INPUT or not _EMAIL.match(value):
        raise InvalidContact(raw, "not an e-mail address")
    local, domain = value.rsplit("@", 1)
    return Contact(kind=ContactKind.EMAIL, value=f"{local}@{domain.lower()}")


def parse_contact(raw: str, *, default_region: str) -> Contact:
    """An e-mail address if it has an "@", a phone number otherwise."""
    return parse_email(raw) if "@" in raw else parse_phone(raw, default_region=default_region)


def commitment(contact: Contact, salt: bytes) -> bytes:
    """The 32-byte salted commitment that stands for ``contact`` on chain."""
    return hmac.new(salt, contact.uri.encode(), hashlib.sha256).digest()


_TYPE_NAMES = {
    getattr(PhoneNumberType, name): name.lower()
    for name in sorted(dir(PhoneNumberType), reverse=True)
    if not name.startswith("_") and isinstance(getattr(PhoneNumberType, name), int)
}
