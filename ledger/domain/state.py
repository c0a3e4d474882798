"""What a decision reads from the ledger, and the interface of whatever serves it.

Two implementations: ``Chain`` (direct contract calls pinned to a block) and the event index
(``IndexedState``), which answers from SQL and refuses with ``LedgerStale`` when it lags.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ledger.domain.grants import CompanyStatus, GrantRecord


@dataclass(frozen=True, slots=True)
class ConsumerRecord:
    epoch: int
    cap_max: int
    cap_period: int
    link_count: int


@dataclass(frozen=True, slots=True)
class CompanyRecord:
    admin: str
    status: CompanyStatus


@dataclass(frozen=True, slots=True)
class LinkRecord:
    consumer: str | None  # None when the commitment is not linked
    linked_at: int


@dataclass(frozen=True, slots=True)
class BlockRef:
    number: int
    hash: bytes
    timestamp: int


class LedgerState(Protocol):
    """Reads of ledger state, all pinned to the block that ``head`` returned.

    ``head`` raises ``ChainUnavailable`` or ``LedgerStale`` when the state cannot be trusted;
    the decision then refuses, never allows.
    """

    def head(self) -> BlockRef: ...

    def company(self, company_id: int, block: int) -> CompanyRecord: ...

    def link(self, commitment: bytes, block: int) -> LinkRecord: ...

    def grant(self, consumer: str, company_id: int, channel: int, block: int) -> GrantRecord: ...

    def consumer(self, consumer: str, block: int) -> ConsumerRecord: ...
