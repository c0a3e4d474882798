"""Rolling-window counts from the log: the allowed contacts a quota or a cap has used.

The arithmetic of the window (what is left, when a unit frees up) is ``domain.window``; this
module reads the times it works on, with statements compiled once (``db.prepared``) since
every check runs them.
"""

from __future__ import annotations

from sqlalchemy import bindparam
from sqlalchemy.engine import Connection
from sqlmodel import Session, col, func, select

from ledger.db.prepared import Prepared
from ledger.usage.entries import EntryKind, Outcome, UsageEntry
from ledger.usage.locks import connection_of


def _window(*, by_company: bool, by_channel: bool, newest: bool = False) -> Prepared:
    query = select(UsageEntry.at).where(
        col(UsageEntry.consumer) == bindparam("consumer"),
        col(UsageEntry.decision) == EntryKind.ALLOWED.value,
        col(UsageEntry.at) > bindparam("since"),
    )
    if by_company:
        query = query.where(col(UsageEntry.company_id) == bindparam("company_id"))
    if by_channel:
        query = query.where(col(UsageEntry.channel) == bindparam("channel"))
    if newest:
        return Prepared(query.order_by(col(UsageEntry.at).desc()).limit(bindparam("newest")))
    return Prepared(query.order_by(col(UsageEntry.at)))


_WINDOWS = {
    (by_company, by_channel, newest): _window(
        by_company=by_company, by_channel=by_channel, newest=newest
    )
    for by_company in (False, True)
    for by_channel in (False, True)
    for newest in (False, True)
}


def allowed_times(
    db: Session | Connection,
    *,
    consumer: str,
    since: int,
    company_id: int | None = None,
    channel: int | None = None,
    newest: int | None = None,
) -> list[int]:
    """Times of allowed contacts with ``at > since``, oldest first.

    With ``company_id`` and ``channel`` this is one grant's rolling window; without, the
    consumer's global cap window.

    Args:
        newest: only the newest this many. ``window_state`` of a quota of ``max_contacts``
            answers the same from the newest ``max_contacts`` times as from all of them, and a
            check then reads at most its quota's worth of rows however long the log has grown.
    """
    query = _WINDOWS[company_id is not None, channel is not None, newest is not None]
    rows = query.rows(
        connection_of(db),
        consumer=consumer,
        since=since,
        company_id=company_id,
        channel=channel,
        newest=newest,
    )
    times = [int(at) for (at,) in rows]
    if newest is not None:
        times.reverse()  # read newest first, to stop at the limit
    return times


# The statutory counters (FR D.223-9) count by company and contact point, linked or not: the
# law limits calls to a person whether or not that person holds a wallet.
_BY_CONTACT = Prepared(
    select(UsageEntry.at)
    .where(
        col(UsageEntry.contact) == bindparam("contact"),
        col(UsageEntry.company_id) == bindparam("company_id"),
        col(UsageEntry.channel) == bindparam("channel"),
        col(UsageEntry.decision) == EntryKind.ALLOWED.value,
        col(UsageEntry.at) > bindparam("since"),
    )
    .order_by(col(UsageEntry.at))
)
_LAST_REFUSAL = Prepared(
    select(func.max(UsageEntry.at)).where(
        col(UsageEntry.contact) == bindparam("contact"),
        col(UsageEntry.company_id) == bindparam("company_id"),
        col(UsageEntry.channel) == bindparam("channel"),
        col(UsageEntry.decision) == EntryKind.OUTCOME.value,
        col(UsageEntry.outcome) == Outcome.REFUSED_BY_CONSUMER.value,
    )
)


def contact_times(
    db: Session | Connection, *, contact: str, company_id: int, channel: int, since: int
) -> list[int]:
    """Times of this company's allowed contacts to ``contact`` (a commitment) after ``since``."""
    rows = _BY_CONTACT.rows(
        connection_of(db), contact=contact, company_id=company_id, channel=channel, since=since
    )
    return [int(at) for (at,) in rows]


def last_refusal(
    db: Session | Connection, *, contact: str, company_id: int, channel: int
) -> int | None:
    """When the consumer at ``contact`` last refused this company (a reported outcome), if ever."""
    row = _LAST_REFUSAL.first(
        connection_of(db), contact=contact, company_id=company_id, channel=channel
    )
    return None if row is None or row[0] is None else int(row[0])
