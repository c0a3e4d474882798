"""Comparing the event index with the chain: helpers shared by the indexer tests.

The keys to compare are found from the chain's own logs (decoded independently of the index
tables), and every key's state is read both from the contract's views and from the index at
the same block, so a row the index lost, invented or got wrong shows up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from ledger.chain.client import Chain
from ledger.db.engine import transaction
from ledger.index.events import decode
from ledger.index.state import IndexedState
from ledger.index.tables import ENTITIES, BlockRow, CheckpointRow, LogRow


@dataclass
class Keys:
    companies: set[int] = field(default_factory=set)
    grants: set[tuple[str, int, int]] = field(default_factory=set)
    consumers: set[str] = field(default_factory=set)
    links: set[bytes] = field(default_factory=set)
    anchors: set[int] = field(default_factory=set)
    logs: set[tuple[str, int]] = field(default_factory=set)  # (tx hash, log index)


def chain_keys(chain: Chain, to_block: int) -> Keys:
    """Every key the contract's logs up to ``to_block`` touched."""
    keys = Keys()
    for raw in chain.logs(0, to_block):
        keys.logs.add((raw.tx_hash.hex(), raw.log_index))
        event = decode(raw)
        assert event is not None, raw
        a = event.args
        if "companyId" in a:
            keys.companies.add(a["companyId"])
        if "consumer" in a:
            keys.consumers.add(a["consumer"])
        if event.name in {"GrantSet", "GrantRevoked"}:
            keys.grants.add((a["consumer"], a["companyId"], a["channel"]))
        if event.name in {"ContactLinked", "ContactUnlinked"}:
            keys.links.add(a["commitment"])
        if event.name == "ContactLinked" and int(a["previousConsumer"], 16):
            keys.consumers.add(a["previousConsumer"])
        if event.name == "RootAnchored":
            keys.anchors.add(a["logId"])
    return keys


def assert_index_matches_chain(
    state: IndexedState, chain: Chain, *, block: int | None = None
) -> Keys:
    """Every key's state in the index equals the contract's views at the index's block."""
    at = state.head().number if block is None else block
    keys = chain_keys(chain, at)
    for company_id in keys.companies:
        assert state.company(company_id, at) == chain.company(company_id, at), company_id
    for consumer, company_id, channel in keys.grants:
        indexed = state.grant(consumer, company_id, channel, at)
        assert indexed == chain.grant(consumer, company_id, channel, at), (
            consumer,
            company_id,
            channel,
        )
    for consumer in keys.consumers:
        assert state.consumer(consumer, at) == chain.consumer(consumer, at), consumer
    for commitment in keys.links:
        assert state.link(commitment, at) == chain.link(commitment, at), commitment.hex()
    for log_id in keys.anchors:
        assert anchor(state.engine, log_id) == chain.anchor(log_id, at), log_id
    return keys


def anchor(engine: Engine, log_id: int) -> tuple[bytes, int, int]:
    table = ENTITIES[-1].current_table
    with transaction(engine) as session:
        row = (
            session.connection()
            .execute(select(table).where(table.c.log_id == log_id))
            .mappings()
            .one()
        )
    return bytes.fromhex(row["root"]), int(row["tree_size"]), int(row["anchored_at"])


def dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every index row, sorted (when the checkpoint was synced left out)."""
    tables = [t for e in ENTITIES for t in (e.current_table, e.history_table)]
    tables += [LogRow.__table__, BlockRow.__table__]  # type: ignore[attr-defined]
    found: dict[str, list[tuple[Any, ...]]] = {}
    with transaction(engine) as session:
        conn = session.connection()
        for table in tables:
            found[table.name] = sorted((tuple(r) for r in conn.execute(select(table))), key=repr)
        cp = CheckpointRow.__table__  # type: ignore[attr-defined]
        found[cp.name] = [
            tuple(r)
            for r in conn.execute(
                select(cp).with_only_columns(*(c for c in cp.c if c.name != "synced_at"))
            )
        ]
    return found


def logged(engine: Engine) -> list[tuple[str, int]]:
    """(tx hash, log index) of every indexed log, duplicates included."""
    with transaction(engine) as session:
        rows = session.connection().execute(select(LogRow.tx_hash, LogRow.log_index))  # type: ignore[call-overload]
        return [(str(tx), int(i)) for tx, i in rows]
