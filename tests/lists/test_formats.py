"""Reading list files: one number a line, CSV columns, the FTC's DNC flat file."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.domain.errors import InvalidContact, InvalidList
from ledger.lists.formats import ImportMode, ListFormat, parse_numbers
from tests.lists.list_helpers import NYC, WHITE_HOUSE, phone, values


@pytest.mark.parametrize(
    ("case", "fmt", "lines", "kw", "adds", "removes", "invalid"),
    [
        (
            "lines in any usual format, duplicates once, comments and blanks skipped",
            ListFormat.LINES,
            ["(202) 456-1111", "+1 202 456 1111", "", "# header", "212.555.0100"],
            {},
            [WHITE_HOUSE, NYC],
            [],
            0,
        ),
        (
            "lines: invalid numbers counted, never raised",
            ListFormat.LINES,
            ["202 456 1111", "not a number", "+1 123", "x" * 300],
            {},
            [WHITE_HOUSE],
            [],
            3,
        ),
        (
            "lines in remove mode are removals",
            ListFormat.LINES,
            ["202 456 1111"],
            {"mode": ImportMode.REMOVE},
            [],
            [WHITE_HOUSE],
            0,
        ),
        (
            "csv by 0-based column",
            ListFormat.CSV,
            ["Ann,202-456-1111,x", "Bob,212 555 0100", "Cy"],
            {"column": 1},
            [WHITE_HOUSE, NYC],
            [],
            1,
        ),
        (
            "csv by header name, quoted cells",
            ListFormat.CSV,
            ['name,"Phone"', '"Doe, Ann","(202) 456-1111"', "Bob,+1 212 555 0100"],
            {"column": "phone"},
            [WHITE_HOUSE, NYC],
            [],
            0,
        ),
        (
            "csv header row skipped when asked",
            ListFormat.CSV,
            ["number", "2024561111"],
            {"header": True},
            [WHITE_HOUSE],
            [],
            0,
        ),
        (
            "dnc full list: area code, number",
            ListFormat.DNC,
            ["202,4561111", "212,5550100", "2024561111"],
            {},
            [WHITE_HOUSE, NYC],
            [],
            0,
        ),
        (
            "dnc: malformed area codes and exchanges are invalid",
            ListFormat.DNC,
            ["102,4561111", "202,1561111", "20,4561111", "202,456111", "abc,defghij"],
            {},
            [],
            [],
            5,
        ),
        (
            "dnc: a removal flag in a full list is invalid",
            ListFormat.DNC,
            ["202,4561111", "212,5550100,D"],
            {},
            [WHITE_HOUSE],
            [],
            1,
        ),
        (
            "dnc change list: flags decide",
            ListFormat.DNC,
            ["202,4561111,A", "212,5550100,D", "415,5552671"],
            {"mode": ImportMode.DELTA},
            [WHITE_HOUSE, 14155552671],
            [NYC],
            0,
        ),
        (
            "dnc: both flags on a line is invalid",
            ListFormat.DNC,
            ["202,4561111,A,D"],
            {"mode": ImportMode.DELTA},
            [],
            [],
            1,
        ),
    ],
)
def test_parse_numbers(
    case: str,
    fmt: ListFormat,
    lines: list[str],
    kw: dict[str, object],
    adds: list[int],
    removes: list[int],
    invalid: int,
) -> None:
    parsed = parse_numbers(lines, fmt=fmt, default_region="US", **kw)  # type: ignore[arg-type]
    assert values(parsed.additions) == sorted(adds), case
    assert values(parsed.removals) == sorted(removes), case
    assert parsed.invalid == invalid, case


def test_invalid_lines_are_reported_by_number_never_by_content() -> None:
    parsed = parse_numbers(
        ["202 456 1111", "bad", "", "worse"], fmt=ListFormat.LINES, default_region="US"
    )
    assert (parsed.lines, parsed.invalid, parsed.invalid_lines) == (3, 2, [2, 4])


def test_a_csv_field_beyond_the_csv_limit_refuses_the_file() -> None:
    with pytest.raises(InvalidList):
        parse_numbers(['"' + "1" * 200_000 + '"'], fmt=ListFormat.CSV, default_region="US")


def test_an_unknown_csv_column_name_is_refused() -> None:
    with pytest.raises(InvalidList):
        parse_numbers(["a,b", "1,2"], fmt=ListFormat.CSV, default_region="US", column="phone")


@settings(max_examples=400, deadline=None)
@given(area=st.integers(200, 999), local=st.integers(2_000_000, 9_999_999))
def test_the_dnc_fast_path_keeps_every_number_a_check_could_ask_about(
    area: int, local: int
) -> None:
    # A number the check side accepts must be found under the same key, or it would be
    # allowed although listed; the converse (extra keys) is harmless.
    [line] = [f"{area},{local}"]
    fast = values(parse_numbers([line], fmt=ListFormat.DNC, default_region="US").additions)
    try:
        checked = phone(f"+1{area}{local}")
    except InvalidContact:
        return
    assert fast == [int(checked.value[1:])]
