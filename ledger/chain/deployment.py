"""Deploy the ledger contract once, find it again, and notice a chain that lost blocks.

A local anvil node persists its state to a file every ``anvil_state_interval`` seconds and on
a clean exit; a hard kill loses at most that window. On every start the operator's journal
is compared with the chain: transactions whose block is gone (or was replaced) are sent again
in their original order; one the contract now refuses (an expired signature, say) is reported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import BigInteger
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel, col, select

from ledger.chain.client import Chain
from ledger.chain.relayer import OperatorTx, journal
from ledger.db.engine import transaction
from ledger.domain.errors import DeploymentMismatch, LedgerError

log = logging.getLogger(__name__)


class DeploymentRow(SQLModel, table=True):
    """The ledger contract this database belongs to."""

    __tablename__ = "deployment"

    id: int = Field(default=1, primary_key=True)
    chain_id: int = Field(sa_type=BigInteger)
    address: str
    block_number: int = Field(sa_type=BigInteger)
    block_hash: str


@dataclass
class Recovery:
    """What a start found and mended."""

    deployed: bool = False
    redeployed: bool = False
    replayed: list[int] = field(default_factory=list)  # journal ids sent again
    dropped: list[tuple[int, str]] = field(default_factory=list)  # (journal id, why)

    @property
    def lost_blocks(self) -> bool:
        return self.redeployed or bool(self.replayed or self.dropped)


def ensure_deployed(
    chain: Chain, engine: Engine, *, configured_address: str | None = None
) -> Recovery:
    """Points ``chain`` at the ledger contract, deploying it on first use.

    Raises:
        DeploymentMismatch: the database belongs to another chain, or the configured address
            holds no contract.
    """
    recovery = Recovery()
    if configured_address is not None:
        if not chain.has_code(configured_address):
            raise DeploymentMismatch(f"no contract at {configured_address}")
        chain.use(configured_address)
        _remember(engine, chain, block_number=0)
        return recovery

    with transaction(engine) as session:
        row = session.get(DeploymentRow, 1)
        known = (
            None if row is None else (row.chain_id, row.address, row.block_number, row.block_hash)
        )
    if known is None:
        _deploy(chain, engine)
        recovery.deployed = True
        return recovery

    chain_id, address, block_number, block_hash = known
    if chain_id != chain.chain_id:
        raise DeploymentMismatch(
            f"database is for chain {chain_id}, node is chain {chain.chain_id}"
        )
    if chain.has_code(address) and _block_is(chain, block_number, block_hash):
        chain.use(address)
    else:
        # The chain forgot the deployment itself: deploy again and replay the whole journal.
        log.warning("ledger contract %s is gone from chain %s: redeploying", address, chain_id)
        _deploy(chain, engine)
        recovery.redeployed = True
    _replay_lost(chain, engine, recovery, everything=recovery.redeployed)
    return recovery


def deployed_at(engine: Engine) -> int:
    """The block the ledger contract was deployed in (0 when configured by address): where the
    event index starts."""
    with transaction(engine) as session:
        row = session.get(DeploymentRow, 1)
        return 0 if row is None else row.block_number


def deployed_address(engine: Engine) -> str | None:
    """The ledger contract this database was deployed with (None: configured by address)."""
    with transaction(engine) as session:
        row = session.get(DeploymentRow, 1)
        return None if row is None else row.address


def _deploy(chain: Chain, engine: Engine) -> None:
    address = chain.deploy()
    head = chain.head()
    _remember(engine, chain, block_number=head.number, block_hash=head.hash.hex(), address=address)


def _remember(
    engine: Engine,
    chain: Chain,
    *,
    block_number: int,
    block_hash: str = "",
    address: str | None = None,
) -> None:
    with transaction(engine) as session:
        row = session.get(DeploymentRow, 1) or DeploymentRow(
            chain_id=chain.chain_id, address="", block_number=0, block_hash=""
        )
        row.chain_id = chain.chain_id
        row.address = address or chain.address
        row.block_number = block_number
        row.block_hash = block_hash
        session.add(row)


def _block_is(chain: Chain, number: int, expected_hash: str) -> bool:
    if not expected_hash:
        return True
    actual = chain.block_hash(number)
    return actual is not None and actual.hex() == expected_hash


def _replay_lost(chain: Chain, engine: Engine, recovery: Recovery, *, everything: bool) -> None:
    with transaction(engine) as session:
        entries = list(session.exec(select(OperatorTx).order_by(col(OperatorTx.id))).all())
    lost = [e for e in entries if everything or not _block_is(chain, e.block_number, e.block_hash)]
    for entry in lost:
        assert entry.id is not None
        try:
            receipt = chain.send_calldata(bytes.fromhex(entry.calldata))
        except LedgerError as exc:
            log.warning("journal entry %s (%s) not replayed: %s", entry.id, entry.method, exc)
            recovery.dropped.append((entry.id, exc.code))
            receipt = None
        # The entry's block is gone: it is replaced by its replay, or by nothing.
        with transaction(engine) as session:
            session.delete(session.get(OperatorTx, entry.id))
        if receipt is not None:
            journal(engine, entry.method, bytes.fromhex(entry.calldata), receipt)
            recovery.replayed.append(entry.id)
    if lost:
        log.warning(
            "chain lost blocks: %d operator transactions replayed, %d refused",
            len(recovery.replayed),
            len(recovery.dropped),
        )
