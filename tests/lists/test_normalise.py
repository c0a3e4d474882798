"""E.164 integers of many numbers at once, as the single-contact path would parse them."""

from __future__ import annotations

from ledger.domain import contacts
from ledger.lists.normalise import normalise_many
from tests.lists.list_helpers import values


def test_normalise_many_matches_the_single_contact_path() -> None:
    raws = ["06 12 34 56 78", "+44 20 7946 0000", "nope", "+33 1 23 45 67 89"]
    numbers, valid = normalise_many(raws, default_region="FR")
    assert valid.tolist() == [True, True, False, True]
    assert values(numbers[valid]) == [
        int(contacts.parse_phone(r, default_region="FR").value[1:])
        for r, ok in zip(raws, valid, strict=True)
        if ok
    ]
