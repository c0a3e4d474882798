"""The chain client: one connection to an EVM node, the operator's transactions, contract reads.

Every write is simulated with ``eth_call`` before it is signed, so a message the contract
would refuse raises its domain exception and costs no gas. Operator nonces are handed out
under a lock, so concurrent relays from one key never collide.

Example:
    >>> chain = Chain.connect_memory(operator_key=DEV_OPERATOR_KEY)
    >>> chain.deploy()
"""

from __future__ import annotations

import threading
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.types import BlockIdentifier, TxParams, TxReceipt

from ledger import contract
from ledger.errors import ChainUnavailable, ContractReverted, LedgerError
from ledger.grants import CompanyStatus, GrantRecord
from ledger.messages import Domain
from ledger.state import BlockRef, CompanyRecord, ConsumerRecord, LinkRecord

_RECEIPT_TIMEOUT = 30.0
_NONCE_RETRIES = 5


class Chain:
    """A connection to the node and the deployed ledger contract."""

    def __init__(self, w3: Web3, operator: LocalAccount, address: str | None = None) -> None:
        self.w3 = w3
        self.operator = operator
        self._nonce_lock = threading.Lock()
        self._next_nonce: int | None = None
        self._contract: Contract | None = None
        self._chain_id: int | None = None
        if address is not None:
            self.use(address)

    # ----- connecting -----

    @classmethod
    def connect_http(cls, url: str, *, operator_key: str, timeout: float = 5.0) -> Chain:
        """Connects to a JSON-RPC node over HTTP."""
        w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout}))
        return cls(w3, Account.from_key(operator_key))

    @classmethod
    def connect_memory(cls, *, operator_key: str) -> Chain:
        """The in-process eth-tester chain (tests and ``--chain memory``); funds the operator."""
        from web3.providers.eth_tester import EthereumTesterProvider

        w3 = Web3(EthereumTesterProvider())
        operator: LocalAccount = Account.from_key(operator_key)
        funder = w3.eth.accounts[0]
        if funder != operator.address:
            tx = w3.eth.send_transaction(
                {"from": funder, "to": operator.address, "value": w3.to_wei(1000, "ether")}
            )
            w3.eth.wait_for_transaction_receipt(tx)
        return cls(w3, operator)

    def use(self, address: str) -> None:
        """Points the client at a deployed ledger contract."""
        self._contract = self.w3.eth.contract(
            address=to_checksum_address(address), abi=contract.abi()
        )

    @property
    def contract(self) -> Contract:
        if self._contract is None:
            raise ContractReverted("no ledger contract deployed or configured")
        return self._contract

    @property
    def address(self) -> str:
        return str(self.contract.address)

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = self._rpc(lambda: int(self.w3.eth.chain_id))
        return self._chain_id

    @property
    def domain(self) -> Domain:
        return Domain(chain_id=self.chain_id, verifying_contract=self.address)

    # ----- deploying -----

    def deploy(self, *, admin_delay: int = 0) -> str:
        """Deploys QuotaLedger with the operator as admin, registrar, verifier and anchorer.

        Returns:
            The contract address (the client then uses it).
        """
        factory = self.w3.eth.contract(abi=contract.abi(), bytecode=contract.bytecode())
        ctor = factory.constructor(admin_delay, self.operator.address, self.operator.address)
        receipt = self._send(dict(ctor.build_transaction(self._tx_fields())))
        address = str(receipt["contractAddress"])
        self.use(address)
        return address

    def has_code(self, address: str) -> bool:
        return bool(self._rpc(lambda: self.w3.eth.get_code(to_checksum_address(address))))

    # ----- writes -----

    def transact(self, fn: ContractFunction) -> TxReceipt:
        """Simulates, then signs and sends a contract call from the operator.

        Raises:
            LedgerError: the domain exception of the contract's revert, before any gas is spent.
            ChainUnavailable: the node cannot be reached.
        """
        self._simulate(fn)
        return self._send(dict(fn.build_transaction(self._tx_fields())))

    def send_calldata(self, calldata: bytes) -> TxReceipt:
        """Simulates and sends raw calldata to the ledger contract (journal replay)."""
        call = {"from": self.operator.address, "to": self.address, "data": calldata}
        _dry_run(lambda: self.w3.eth.call(call))  # type: ignore[arg-type]
        gas = self._rpc(lambda: self.w3.eth.estimate_gas(call))  # type: ignore[arg-type]
        return self._send({**call, "gas": gas, **self._fee_fields(), "chainId": self.chain_id})

    # ----- reads (pinned to one block so a decision sees one consistent state) -----

    def head(self) -> BlockRef:
        block = self._rpc(lambda: self.w3.eth.get_block("latest"))
        return BlockRef(int(block["number"]), bytes(block["hash"]), int(block["timestamp"]))

    def block_hash(self, number: int) -> bytes | None:
        def fetch() -> bytes | None:
            try:
                return bytes(self.w3.eth.get_block(number)["hash"])
            except Exception as exc:  # BlockNotFound: the chain is shorter than that
                if type(exc).__name__ == "BlockNotFound":
                    return None
                raise

        found: bytes | None = self._rpc(fetch)
        return found

    def grant(
        self, consumer: str, company_id: int, channel: int, block: BlockIdentifier
    ) -> GrantRecord:
        fns = self.contract.functions
        who = to_checksum_address(consumer)
        m, p, vf, vu, hours, days, version, epoch = (
            int(v) for v in self._call(fns.grantOf(who, company_id, channel), block)
        )
        active = bool(self._call(fns.isGrantActive(who, company_id, channel), block))
        return GrantRecord(m, p, vf, vu, hours, days, version, epoch, active)

    def grant_version(self, consumer: str, company_id: int, channel: int) -> int:
        return self.grant(consumer, company_id, channel, "latest").version

    def consumer(self, consumer: str, block: BlockIdentifier = "latest") -> ConsumerRecord:
        raw = self._call(self.contract.functions.consumerOf(to_checksum_address(consumer)), block)
        return ConsumerRecord(*(int(v) for v in raw))

    def company(self, company_id: int, block: BlockIdentifier = "latest") -> CompanyRecord:
        admin, status = self._call(self.contract.functions.companyOf(company_id), block)
        return CompanyRecord(str(admin), CompanyStatus(int(status)))

    def link(self, commitment: bytes, block: BlockIdentifier = "latest") -> LinkRecord:
        consumer, linked_at = self._call(self.contract.functions.linkOf(commitment), block)
        zero = int(consumer, 16) == 0
        return LinkRecord(None if zero else str(consumer), int(linked_at))

    def nonce(self, consumer: str) -> int:
        return int(
            self._call(self.contract.functions.nonces(to_checksum_address(consumer)), "latest")
        )

    def is_valid_erc1271(self, wallet: str, digest: bytes, signature: bytes) -> bool:
        """Asks a smart-contract wallet whether it accepts ``signature`` over ``digest``."""
        abi = [
            {
                "type": "function",
                "name": "isValidSignature",
                "stateMutability": "view",
                "inputs": [{"type": "bytes32", "name": "h"}, {"type": "bytes", "name": "s"}],
                "outputs": [{"type": "bytes4", "name": ""}],
            }
        ]
        target = self.w3.eth.contract(address=to_checksum_address(wallet), abi=abi)
        try:
            answer = target.functions.isValidSignature(digest, signature).call()
        except Exception:  # a wallet that reverts or is no wallet at all: not valid
            return False
        return bytes(answer) == bytes.fromhex("1626ba7e")

    # ----- plumbing -----

    def _call(self, fn: ContractFunction, block: BlockIdentifier) -> Any:
        return self._rpc(lambda: fn.call(block_identifier=block))

    def _simulate(self, fn: ContractFunction) -> None:
        _dry_run(lambda: fn.call({"from": self.operator.address}))

    def _tx_fields(self) -> TxParams:
        return {"from": self.operator.address, "chainId": self.chain_id}

    def _fee_fields(self) -> dict[str, Any]:
        base = int(self._rpc(lambda: self.w3.eth.get_block("latest")).get("baseFeePerGas", 0))
        tip = self.w3.to_wei(1, "gwei")
        return {"maxFeePerGas": 2 * base + tip, "maxPriorityFeePerGas": tip}

    def _send(self, tx: dict[str, Any]) -> TxReceipt:
        tx_hash = self._sign_and_send(tx)
        receipt: TxReceipt = self._rpc(
            lambda: self.w3.eth.wait_for_transaction_receipt(
                HexBytes(tx_hash), timeout=_RECEIPT_TIMEOUT
            )
        )
        if receipt["status"] != 1:
            raise ContractReverted(f"transaction {tx_hash.hex()} reverted after simulation passed")
        return receipt

    def _sign_and_send(self, tx: dict[str, Any]) -> bytes:
        """Sends with the next operator nonce; resynchronises when another process used one."""
        with self._nonce_lock:
            for attempt in range(_NONCE_RETRIES):
                if self._next_nonce is None:
                    self._next_nonce = self._rpc(
                        lambda: self.w3.eth.get_transaction_count(self.operator.address, "pending")
                    )
                signed = self.operator.sign_transaction({**tx, "nonce": self._next_nonce})
                try:
                    tx_hash = bytes(self.w3.eth.send_raw_transaction(signed.raw_transaction))
                except Exception as exc:
                    self._next_nonce = None  # resynchronise from the node
                    if _is_nonce_clash(exc) and attempt + 1 < _NONCE_RETRIES:
                        continue
                    raise _unavailable(exc) from exc
                self._next_nonce += 1
                return tx_hash
        raise AssertionError("unreachable")

    def _rpc(self, call: Any) -> Any:
        try:
            return call()
        except LedgerError:
            raise
        except Exception as exc:
            raise _unavailable(exc) from exc


def _dry_run(call: Any) -> None:
    """Runs an ``eth_call``; a revert becomes its domain exception, anything else unavailability."""
    try:
        call()
    except LedgerError:
        raise
    except Exception as exc:
        data = contract.revert_data(exc)
        if data is None:
            raise _unavailable(exc) from exc
        raise contract.decode_revert(data) from exc


def _is_nonce_clash(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "nonce too low" in text or "already known" in text or "replacement transaction" in text


def _unavailable(exc: BaseException) -> ChainUnavailable:
    return ChainUnavailable(f"{type(exc).__name__}: {exc}"[:300])
