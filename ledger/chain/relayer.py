"""Relaying: consumers' signed messages and the operator's own writes, journaled.

A signed message is verified off-chain (signature, deadline, version or nonce) and then
simulated before it is sent, so a bad one gets a clear error and costs no gas. Every transaction
the operator sends is journaled with its calldata and block: if the node later loses blocks (an
unclean stop of a local node), the journal replays what the chain forgot. A relay returns only
once ``on_mined`` has seen its block (the runtime makes the event index cover it), so a check
made right after a relayed grant or revocation sees it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from eth_account.messages import encode_typed_data
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from sqlalchemy import BigInteger
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel
from web3.types import TxReceipt

from ledger.chain.client import Chain
from ledger.consent import messages
from ledger.db.engine import transaction
from ledger.domain.errors import InvalidSignature, StaleEpoch, StaleNonce, StaleVersion


class OperatorTx(SQLModel, table=True):
    """One transaction the operator sent: enough to send it again."""

    __tablename__ = "operator_tx"

    id: int | None = Field(default=None, primary_key=True)
    sent_at: datetime
    method: str
    calldata: str  # hex, without 0x
    tx_hash: str
    block_number: int = Field(sa_type=BigInteger, index=True)
    block_hash: str


class Relayer:
    """Sends the operator's transactions and relays consumers' signed messages.

    Example:
        >>> relayer = Relayer(chain, engine)
        >>> relayer.relay(messages.set_grant(consumer, terms, version=0, epoch=0, deadline=d), sig)
    """

    def __init__(
        self,
        chain: Chain,
        engine: Engine,
        *,
        on_mined: Callable[[int], None] | None = None,
        max_ttl: int = 86400,
    ) -> None:
        self.chain = chain
        self.engine = engine
        self.on_mined = on_mined
        self.max_ttl = max_ttl  # seconds a signed message may still have to live when relayed

    def submit(self, method: str, *args: Any) -> TxReceipt:
        """Simulates, sends and journals one contract call from the operator.

        Returns once the transaction is mined, journaled and seen by ``on_mined``.
        """
        contract = self.chain.contract
        receipt = self.chain.transact(getattr(contract.functions, method)(*args))
        calldata = bytes.fromhex(contract.encode_abi(method, args=list(args))[2:])
        journal(self.engine, method, calldata, receipt)
        if self.on_mined is not None:
            self.on_mined(int(receipt["blockNumber"]))
        return receipt

    # ----- operator writes -----

    def register_company(self, company_id: int, name: str, admin: str) -> TxReceipt:
        return self.submit("registerCompany", company_id, name, to_checksum_address(admin))

    def suspend_company(self, company_id: int) -> TxReceipt:
        return self.submit("suspendCompany", company_id)

    def reinstate_company(self, company_id: int) -> TxReceipt:
        return self.submit("reinstateCompany", company_id)

    def attest_link(self, consumer: str, commitment: bytes) -> TxReceipt:
        return self.submit("attestLink", to_checksum_address(consumer), commitment)

    # ----- consumers' signed messages -----

    def relay(self, message: messages.Message, signature: bytes) -> TxReceipt:
        """Relays a consumer's signed message (every kind goes the same way).

        Raises:
            InvalidSignature, ExpiredSignature, DeadlineTooFar, StaleEpoch, StaleVersion,
            StaleNonce, InvalidGrant: the message is refused and no gas is spent.
        """
        message.admit()
        self._verify(message.typed_data(self.chain.domain), message, signature)
        self._check_guard(message)
        return self.submit(message.kind.method, *message.call_args(signature))

    def _check_guard(self, message: messages.Message) -> None:
        # The epoch voids whatever was signed before a revoke-all; a version belongs to one
        # grant, a nonce to the consumer: a replayed or superseded message is refused here
        # rather than reverted on chain.
        epoch = self.chain.epoch(message.consumer)
        if message.epoch != epoch:
            raise StaleEpoch(message.epoch, epoch)
        if message.kind.guard == "version":
            current = self.chain.grant_version(message.consumer, *message.grant)
            if current != message.guard:
                raise StaleVersion(message.guard, current)
        else:
            current = self.chain.nonce(message.consumer)
            if current != message.guard:
                raise StaleNonce(to_checksum_address(message.consumer), current)

    def _verify(self, doc: dict[str, Any], message: messages.Message, signature: bytes) -> None:
        messages.check_deadline(message.deadline, int(time.time()), self.max_ttl)
        consumer = message.consumer
        if len(signature) == 65 and messages.recover(doc, signature) == to_checksum_address(
            consumer
        ):
            return
        # Not the EOA's signature: it may still be a smart-contract wallet's (ERC-1271).
        if self.chain.has_code(consumer):
            signable = encode_typed_data(full_message=doc)
            digest = keccak(b"\x19" + signable.version + signable.header + signable.body)
            if self.chain.is_valid_erc1271(consumer, digest, signature):
                return
        raise InvalidSignature(consumer)


def journal(engine: Engine, method: str, calldata: bytes, receipt: TxReceipt) -> None:
    """Records a mined operator transaction."""
    with transaction(engine) as session:
        session.add(
            OperatorTx(
                sent_at=datetime.now(UTC),
                method=method,
                calldata=calldata.hex(),
                tx_hash=bytes(receipt["transactionHash"]).hex(),
                block_number=int(receipt["blockNumber"]),
                block_hash=bytes(receipt["blockHash"]).hex(),
            )
        )
