"""Grant changes that concern a company, read from the event index, in chain order.

A company learns of every grant set or revoked for it, and of every revoke-all by a consumer
who ever granted it something, so that it can drop the consumer from its campaigns at once.
The cursor is the position of the event on chain (block, log index): resumable, and stable
across restarts (a reorg replaces events past the fork, which a resumed stream then sees).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select, tuple_

from ledger.db.engine import transaction
from ledger.domain.errors import InvalidInput
from ledger.index.tables import GrantHistoryRow, LogRow

_KINDS = {
    "GrantSet": "grant_set",
    "GrantRevoked": "grant_revoked",
    "AllGrantsRevoked": "all_grants_revoked",
}
_PAGE = 500


@dataclass(frozen=True, slots=True)
class GrantEvent:
    block_number: int
    log_index: int
    type: str
    consumer: str
    channel: int | None  # None for a revoke-all
    version: int | None

    @property
    def id(self) -> str:
        return f"{self.block_number}:{self.log_index}"


def parse_cursor(cursor: str | None) -> tuple[int, int]:
    """``"block:log"`` -> (block, log); None starts before the first event.

    Raises:
        InvalidInput: the cursor is not of that form.
    """
    if not cursor:
        return (-1, -1)
    block, _, log = cursor.partition(":")
    if not (block.isdigit() and log.isdigit()) or len(cursor) > 40:
        raise InvalidInput(
            "cursor must be 'block:log_index', as in an event id", cursor=cursor[:40]
        )
    return (int(block), int(log))


def grant_events(
    engine: Engine, *, company_id: int, after: tuple[int, int], limit: int = 100
) -> list[GrantEvent]:
    """Events concerning ``company_id`` strictly after the ``after`` position, oldest first."""
    found: list[GrantEvent] = []
    cursor = after
    with transaction(engine) as session:
        granted: dict[str, bool] = {}
        while len(found) < limit:
            rows = session.exec(
                select(LogRow)
                .where(col(LogRow.event).in_(list(_KINDS)))
                .where(tuple_(LogRow.block_number, LogRow.log_index) > tuple_(*cursor))
                .order_by(col(LogRow.block_number), col(LogRow.log_index))
                .limit(_PAGE)
            ).all()
            for row in rows:
                args = json.loads(row.args)
                consumer = str(args["consumer"])
                if row.event == "AllGrantsRevoked":
                    if consumer not in granted:
                        granted[consumer] = _ever_granted(session, consumer, company_id)
                    if not granted[consumer]:
                        continue
                    event = GrantEvent(
                        row.block_number, row.log_index, _KINDS[row.event], consumer, None, None
                    )
                elif int(args["companyId"]) == company_id:
                    event = GrantEvent(
                        row.block_number,
                        row.log_index,
                        _KINDS[row.event],
                        consumer,
                        int(args["channel"]),
                        int(args["version"]),
                    )
                else:
                    continue
                found.append(event)
                if len(found) == limit:
                    break
            if len(rows) < _PAGE:
                break
            cursor = (rows[-1].block_number, rows[-1].log_index)
    return found


def _ever_granted(session: Session, consumer: str, company_id: int) -> bool:
    hit = session.exec(
        select(GrantHistoryRow.version).where(
            GrantHistoryRow.consumer == consumer, GrantHistoryRow.company_id == company_id
        )
    ).first()
    return hit is not None
