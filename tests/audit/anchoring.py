"""What the anchoring tests share: a ledger on a real anvil node and a log filled directly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ledger.audit import merkle
from ledger.chain.client import Chain
from ledger.db.engine import transaction
from ledger.runtime import Ledger
from ledger.settings import Settings
from ledger.usage import log as usage_log
from ledger.usage.entries import UsageEntryBase


def open_ledger(
    tmp_path: Path,
    url: str,
    name: str = "ledger",
    *,
    database_url: str | None = None,
    **overrides: Any,
) -> Ledger:
    """A ledger on the node at ``url`` with its own database (a fresh one deploys a contract):
    ``database_url``, else the SQLite file ``name`` in ``tmp_path``."""
    settings = Settings(
        chain="rpc",  # type: ignore[arg-type]
        rpc_url=url,
        data_dir=tmp_path,
        database_url=database_url or f"sqlite:///{tmp_path / f'{name}.sqlite3'}",
        **overrides,
    )
    return Ledger.open(settings)


def database_url(ledger: Ledger) -> str:
    """The ledger's database URL, password included: for a second process on the same one."""
    return ledger.engine.url.render_as_string(hide_password=False)


def append(ledger: Ledger, count: int, *, company_id: int = 1) -> list[int]:
    """Appends ``count`` entries of ``company_id`` to the usage log; returns their seqs."""
    seqs = []
    with transaction(ledger.engine) as session:
        for i in range(count):
            entry = UsageEntryBase(
                at=1_800_000_000 + i,
                company_id=company_id,
                contact=f"{i:064x}",
                channel=1,
                decision="allowed",
                reasons="[]",
            )
            seqs.append(usage_log.append(session, entry).seq)
    return seqs


def leaves(ledger: Ledger) -> list[bytes]:
    """Every leaf hash of the log, read the simplest way: what an auditor recomputes from."""
    with transaction(ledger.engine) as session:
        rows = usage_log.entries(session, limit=1 << 30)
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    return [bytes.fromhex(r.entry_hash) for r in rows]


def sent(chain: Chain) -> int:
    """Transactions the operator has sent: a count that moves only when something is sent."""
    return int(chain.w3.eth.get_transaction_count(chain.operator.address))


def assert_chain_anchors_log(ledger: Ledger, size: int) -> None:
    """The chain's newest anchor is the log's first ``size`` entries, by an independent root."""
    root, anchored, _ = ledger.chain.anchor(ledger.settings.log_id)
    assert anchored == size
    assert root == merkle.root(leaves(ledger)[:size])
