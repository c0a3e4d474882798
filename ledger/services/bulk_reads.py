"""Set-based reads for bulk checks: one query per chunk of contacts instead of one per row.

The links of many commitments at one block (from the event index), and the statutory counters
of many contact points (from the usage log). Each answers what the per-row read would, for
every row of the chunk: ``IndexedState.link``, ``usage.windows.contact_times`` and
``last_refusal``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Connection
from sqlmodel import col

from ledger.domain.state import LinkRecord
from ledger.index.tables import LINK
from ledger.usage.entries import EntryKind, Outcome, UsageEntry

IN_LIST = 900  # values per IN list: well under every backend's limit on bound parameters

_LINKS = LINK.current_table
_LINK_HISTORY = LINK.history_table
_CURRENT_LINKS = select(
    _LINKS.c.commitment, _LINKS.c.consumer, _LINKS.c.linked_at, _LINKS.c.block_number
).where(_LINKS.c.commitment.in_(bindparam("keys", expanding=True)))
_LINK_BEFORE = (
    select(_LINK_HISTORY.c.consumer, _LINK_HISTORY.c.linked_at)
    .where(
        _LINK_HISTORY.c.commitment == bindparam("commitment"),
        _LINK_HISTORY.c.block_number <= bindparam("block"),
    )
    .order_by(_LINK_HISTORY.c.block_number.desc(), _LINK_HISTORY.c.log_index.desc())
    .limit(1)
)
_UNLINKED = LinkRecord(None, 0)


def links_at(conn: Connection, commitments: Sequence[str], block: int) -> dict[str, LinkRecord]:
    """The link of each hex commitment at ``block`` (absent: never linked by then)."""
    out: dict[str, LinkRecord] = {}
    for keys in _slices(sorted(set(commitments))):
        for commitment, consumer, linked_at, changed in conn.execute(
            _CURRENT_LINKS, {"keys": keys}
        ):
            if int(changed) > block:
                # Changed after the block: its state then is the newest history row before.
                row = conn.execute(_LINK_BEFORE, {"commitment": commitment, "block": block}).first()
                consumer, linked_at = (None, 0) if row is None else (row[0], row[1])
            out[str(commitment)] = (
                _UNLINKED if consumer is None else LinkRecord(str(consumer), int(linked_at))
            )
    return out


_U = UsageEntry
_CONTACT_TIMES = (
    select(col(_U.contact), col(_U.at))
    .where(
        col(_U.contact).in_(bindparam("keys", expanding=True)),
        col(_U.company_id) == bindparam("company_id"),
        col(_U.channel) == bindparam("channel"),
        col(_U.decision) == EntryKind.ALLOWED.value,
        col(_U.at) > bindparam("since"),
    )
    .order_by(col(_U.at))
)
_LAST_REFUSALS = (
    select(col(_U.contact), func.max(col(_U.at)))
    .where(
        col(_U.contact).in_(bindparam("keys", expanding=True)),
        col(_U.company_id) == bindparam("company_id"),
        col(_U.channel) == bindparam("channel"),
        col(_U.decision) == EntryKind.OUTCOME.value,
        col(_U.outcome) == Outcome.REFUSED_BY_CONSUMER.value,
    )
    .group_by(col(_U.contact))
)


def contact_times_many(
    conn: Connection, *, contacts: Sequence[str], company_id: int, channel: int, since: int
) -> dict[str, list[int]]:
    """``contact_times`` of each commitment (those with none are absent), oldest first."""
    out: dict[str, list[int]] = {}
    for keys in _slices(sorted(set(contacts))):
        params = {"keys": keys, "company_id": company_id, "channel": channel, "since": since}
        for contact, at in conn.execute(_CONTACT_TIMES, params):
            out.setdefault(str(contact), []).append(int(at))
    return out


def last_refusals(
    conn: Connection, *, contacts: Sequence[str], company_id: int, channel: int
) -> dict[str, int]:
    """``last_refusal`` of each commitment that has one."""
    out: dict[str, int] = {}
    for keys in _slices(sorted(set(contacts))):
        params = {"keys": keys, "company_id": company_id, "channel": channel}
        for contact, at in conn.execute(_LAST_REFUSALS, params):
            if at is not None:
                out[str(contact)] = int(at)
    return out


def _slices(keys: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(keys), IN_LIST):
        yield keys[i : i + IN_LIST]
