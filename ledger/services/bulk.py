"""Many checks at once: a batch of contacts, or a CSV file scrubbed row by row.

An invalid contact is an answer for its row, not a failure of the whole batch.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ledger.domain.channels import Channel
from ledger.domain.errors import InvalidInput
from ledger.services.checks import Checker, CheckResult

SCRUB_COLUMNS = ["allowed", "reasons", "normalized"]


@dataclass(frozen=True, slots=True)
class Item:
    contact: str
    channel: Channel


@dataclass(frozen=True, slots=True)
class Outcome:
    index: int
    result: CheckResult | None = None
    error: InvalidInput | None = None


def check_many(
    checker: Checker, *, company_id: int, items: Iterable[Item], record: bool = False
) -> list[Outcome]:
    """Checks each item; an item whose contact is invalid gets its error instead of a decision."""
    outcomes = []
    for index, item in enumerate(items):
        try:
            result = checker.check(
                company_id=company_id, contact=item.contact, channel=item.channel, record=record
            )
        except InvalidInput as exc:
            outcomes.append(Outcome(index, error=exc))
        else:
            outcomes.append(Outcome(index, result=result))
    return outcomes


def scrub_rows(
    checker: Checker, *, company_id: int, channel: Channel, rows: Iterable[list[str]], column: int
) -> Iterator[list[str]]:
    """Appends allowed / reasons / normalised contact to each row (nothing is recorded)."""
    for row in rows:
        if column >= len(row):
            yield [*row, "false", "missing_column", ""]
            continue
        try:
            result = checker.check(company_id=company_id, contact=row[column], channel=channel)
        except InvalidInput as exc:
            yield [*row, "false", exc.code, ""]
            continue
        decision = result.decision
        yield [*row, str(decision.allowed).lower(), " ".join(decision.codes), result.contact.value]


def csv_line(row: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(row)
    return out.getvalue()
