"""The ledger's state at any block, rebuilt from the chain's events alone: what a replay reads.

An auditor does not read the operator's event index. ``ChainHistory.read`` runs the product's
own indexer (the same decoding and projection, ``ledger.index``) over the contract's logs
fetched from a node into a fresh temporary database, then loads every entity's history into
memory as timelines sorted by block: the state at block ``B`` is a bisection, not a query,
so that reading what an entry's decision read costs microseconds.

Example:
    >>> history = ChainHistory.read(Chain.connect(url, operator_key=key, attempts=3))
    >>> link = history.link(commitment, block)
    >>> history.grant(link.consumer, 1, int(Channel.SMS), block).active
"""

from __future__ import annotations

import tempfile
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from ledger.chain.client import Chain
from ledger.db.engine import connect, make_engine
from ledger.domain.grants import CompanyStatus, GrantRecord
from ledger.domain.state import BlockRef, CompanyRecord, ConsumerRecord, LinkRecord
from ledger.index.indexer import Indexer, Progress
from ledger.index.tables import (
    COMPANY,
    CONSUMER,
    ENTITIES,
    GRANT,
    LINK,
    BlockRow,
    CheckpointRow,
    Entity,
    LogRow,
    table_of,
)

T = TypeVar("T")

_NO_COMPANY = CompanyRecord(COMPANY.empty["admin"], CompanyStatus.NONE)
_NO_CONSUMER = ConsumerRecord(0, 0, 0, 0)
_NO_LINK = LinkRecord(None, 0)
# A grant's stored fields: max_contacts, period, valid_from, valid_until, hours, days, version,
# epoch. Whether it is active depends on the consumer's epoch at the block read.
_GrantFields = tuple[int, int, int, int, int, int, int, int]
_NO_GRANT: _GrantFields = (0, 0, 0, 0, 0, 0, 0, 0)


@dataclass(slots=True)
class Timeline(Generic[T]):
    """One key's states after each change, in chain order."""

    blocks: list[int] = field(default_factory=list)
    states: list[T] = field(default_factory=list)

    def at(self, block: int) -> T | None:
        """The state once every change up to and including ``block`` applied (None: none yet)."""
        i = bisect_right(self.blocks, block)
        return self.states[i - 1] if i else None


@dataclass(frozen=True, slots=True)
class ChainHistory:
    """Every company, grant, consumer and contact link of the ledger, at any block up to
    ``head``, as the chain's events made them.

    The reads follow ``ledger.domain.state.LedgerState``: a grant is active when it is set,
    not revoked, and not cleared by a revoke-all (its epoch is the consumer's epoch), as the
    contract's ``isGrantActive`` says.
    """

    head: BlockRef
    start_block: int
    events: int  # contract logs applied
    companies: dict[int, Timeline[CompanyRecord]]
    grants: dict[tuple[str, int, int], Timeline[_GrantFields]]
    consumers: dict[str, Timeline[ConsumerRecord]]
    links: dict[str, Timeline[LinkRecord]]

    @classmethod
    def read(
        cls, chain: Chain, *, start_block: int = 0, progress: Progress | None = None
    ) -> ChainHistory:
        """Indexes the contract's events from ``start_block`` to the node's head, apart from
        any database of the operator's.

        Args:
            chain: the node and the contract (only its logs and headers are read).
            start_block: the first block to read (the deployment block, or 0 to trust nothing).
            progress: called after each chunk of logs with (block, head, events so far).

        Returns:
            The history, up to the head the indexer reached.

        Raises:
            ChainUnavailable: the node cannot be reached.
        """
        with tempfile.TemporaryDirectory(prefix="ql-chain-") as folder:
            engine = make_engine(f"sqlite:///{Path(folder) / 'chain.sqlite3'}", pool_size=1)
            try:
                SQLModel.metadata.create_all(engine, tables=_index_tables())
                report = Indexer(chain, engine, start_block=start_block).sync(progress=progress)
                with connect(engine, read_only=True) as conn:
                    return cls._load(conn, start_block, report.events)
            finally:
                engine.dispose()

    @classmethod
    def _load(cls, conn: Connection, start_block: int, events: int) -> ChainHistory:
        checkpoint = conn.execute(select(table_of(CheckpointRow))).mappings().first()
        head = (
            BlockRef(start_block - 1, b"", 0)
            if checkpoint is None
            else BlockRef(
                int(checkpoint["block_number"]),
                bytes.fromhex(checkpoint["block_hash"]),
                int(checkpoint["block_timestamp"]),
            )
        )
        return cls(
            head=head,
            start_block=start_block,
            events=events,
            companies=_timelines(
                conn, COMPANY, lambda r: CompanyRecord(str(r["admin"]), CompanyStatus(r["status"]))
            ),
            grants=_timelines(conn, GRANT, _grant_fields),
            consumers=_timelines(
                conn,
                CONSUMER,
                lambda r: ConsumerRecord(
                    int(r["epoch"]), int(r["cap_max"]), int(r["cap_period"]), int(r["link_count"])
                ),
            ),
            links=_timelines(
                conn,
                LINK,
                lambda r: LinkRecord(
                    None if r["consumer"] is None else str(r["consumer"]), int(r["linked_at"])
                ),
            ),
        )

    # ----- LedgerState reads -----

    def company(self, company_id: int, block: int) -> CompanyRecord:
        timeline = self.companies.get(company_id)
        state = None if timeline is None else timeline.at(block)
        return _NO_COMPANY if state is None else state

    def link(self, commitment: bytes | str, block: int) -> LinkRecord:
        key = commitment if isinstance(commitment, str) else commitment.hex()
        timeline = self.links.get(key)
        state = None if timeline is None else timeline.at(block)
        return _NO_LINK if state is None else state

    def consumer(self, consumer: str, block: int) -> ConsumerRecord:
        timeline = self.consumers.get(consumer)
        state = None if timeline is None else timeline.at(block)
        return _NO_CONSUMER if state is None else state

    def grant(self, consumer: str, company_id: int, channel: int, block: int) -> GrantRecord:
        timeline = self.grants.get((consumer, company_id, channel))
        fields = None if timeline is None else timeline.at(block)
        g = _NO_GRANT if fields is None else fields
        epoch = self.consumer(consumer, block).epoch
        return GrantRecord(*g, active=g[0] != 0 and g[7] == epoch)


def _index_tables() -> list[Table]:
    tables = [table_of(model) for model in (LogRow, BlockRow, CheckpointRow)]
    for entity in ENTITIES:
        tables += [entity.current_table, entity.history_table]
    return tables


def _grant_fields(row: dict[str, Any]) -> _GrantFields:
    return (
        int(row["max_contacts"]),
        int(row["period"]),
        int(row["valid_from"]),
        int(row["valid_until"]),
        int(row["hours_mask"]),
        int(row["days_mask"]),
        int(row["version"]),
        int(row["epoch"]),
    )


def _timelines(
    conn: Connection, entity: Entity, state: Callable[[dict[str, Any]], T]
) -> dict[Any, Timeline[T]]:
    """Every key's history of ``entity``, in chain order (the index stores it whole)."""
    history = entity.history_table
    query = select(history).order_by(history.c.block_number, history.c.log_index)
    found: dict[Any, Timeline[T]] = {}
    for row in conn.execute(query).mappings():
        values = tuple(row[k] for k in entity.key)
        key = values[0] if len(values) == 1 else values
        timeline = found.get(key)
        if timeline is None:
            timeline = found[key] = Timeline()
        timeline.blocks.append(int(row["block_number"]))
        timeline.states.append(state(dict(row)))
    return found
