"""What a signed-in consumer sees of their own state: grants with quota left, linked contacts."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from ledger.db.engine import transaction
from ledger.domain.channels import Channel
from ledger.domain.window import window_state
from ledger.index.tables import ConsumerRow, GrantRow, LinkRow
from ledger.usage.windows import allowed_times


@dataclass(frozen=True, slots=True)
class GrantView:
    company_id: int
    channel: Channel
    active: bool
    version: int
    max_contacts: int
    period: int
    valid_from: int
    valid_until: int
    used_in_window: int
    remaining: int
    next_free_at: int


@dataclass(frozen=True, slots=True)
class LinkView:
    commitment: str
    block_number: int


def grants_of(engine: Engine, consumer: str, *, now: int) -> list[GrantView]:
    """Every grant the consumer ever set, newest state, with the quota left in its window."""
    with transaction(engine) as session:
        rows = session.exec(
            select(GrantRow)
            .where(GrantRow.consumer == consumer)
            .order_by(col(GrantRow.company_id), col(GrantRow.channel))
        ).all()
        record = session.get(ConsumerRow, consumer)
        epoch = record.epoch if record is not None else 0
        views = []
        for g in rows:
            active = g.max_contacts != 0 and g.epoch == epoch
            used = allowed_times(
                session,
                consumer=consumer,
                company_id=g.company_id,
                channel=g.channel,
                since=now - g.period,
            )
            remaining, free = window_state(
                used, max_contacts=max(g.max_contacts, 1), period=g.period, now=now
            )
            views.append(
                GrantView(
                    company_id=g.company_id,
                    channel=Channel(g.channel),
                    active=active,
                    version=g.version,
                    max_contacts=g.max_contacts,
                    period=g.period,
                    valid_from=g.valid_from,
                    valid_until=g.valid_until,
                    used_in_window=len(used),
                    remaining=remaining if active else 0,
                    next_free_at=free,
                )
            )
    return views


def links_of(engine: Engine, consumer: str) -> list[LinkView]:
    """The commitments currently linked to the consumer (what an unlink message signs)."""
    with transaction(engine) as session:
        rows = session.exec(select(LinkRow).where(LinkRow.consumer == consumer)).all()
    return [
        LinkView(commitment="0x" + r.commitment.removeprefix("0x"), block_number=r.block_number)
        for r in rows
    ]
