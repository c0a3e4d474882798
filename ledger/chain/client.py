"""The chain client: one connection to an EVM node, the operator's transactions, contract reads.

Every write is simulated with ``eth_call`` before it is signed, so a message the contract
would refuse raises its domain exception and costs no gas. A transaction that still reverts
once mined (another transaction got there first) is replayed as an ``eth_call`` at its block
to name the contract's error. Operator nonces are taken from the node under a lock, so
concurrent relays from one key never collide. Transient RPC failures (connection refused,
timeouts, 429/5xx) are retried a bounded number of times with exponential backoff, behind a
circuit breaker (``breaker``): a timeout, or failures in a row, open it, and while it is open
every call fails at once instead of waiting on the node. Error texts are redacted
(``redact``): node URLs carry API keys.

Example:
    >>> chain = Chain.connect("http://127.0.0.1:8545", operator_key=DEV_OPERATOR_KEY)
    >>> chain.deploy()
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from eth_account import Account
from eth_account.datastructures import SignedTransaction
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.providers.base import JSONBaseProvider
from web3.types import BlockIdentifier, RPCEndpoint, TxParams, TxReceipt

from ledger.chain import contract
from ledger.chain.breaker import CircuitBreaker, Fault
from ledger.chain.redact import redact
from ledger.chain.ws_provider import WebSocketSyncProvider
from ledger.consent.messages import Domain
from ledger.domain.errors import ChainUnavailable, ContractReverted, LedgerError
from ledger.domain.grants import CompanyStatus, GrantRecord
from ledger.domain.state import BlockRef, CompanyRecord, ConsumerRecord, LinkRecord

T = TypeVar("T")

_RECEIPT_TIMEOUT = 30.0
# web3's default of 0.1 s between receipt polls would add up to that much to every relay on a
# local node that mines at once.
_RECEIPT_POLL = 0.01
_NONCE_RETRIES = 5
_BACKOFF = 0.1  # seconds before the first retry; doubles each time
_TRANSIENT_HTTP = {429, 502, 503, 504}


class QueryRefused(ChainUnavailable):
    """The node answered a query with an error (e.g. an ``eth_getLogs`` range too large)."""

    code = "query_refused"


@dataclass(frozen=True, slots=True)
class HeadSighting:
    """The node's head as the client last read it, and when."""

    block: BlockRef
    at: float  # monotonic seconds, for its age
    wall: float  # Unix seconds, to compare with times other processes wrote


@dataclass(frozen=True, slots=True)
class BlockHeader:
    number: int
    hash: bytes
    parent_hash: bytes
    timestamp: int


@dataclass(frozen=True, slots=True)
class RawLog:
    """One log of the ledger contract, undecoded."""

    block_number: int
    block_hash: bytes
    tx_hash: bytes
    log_index: int
    topics: tuple[bytes, ...]
    data: bytes
    block_timestamp: int | None  # anvil and recent nodes include it; others do not


class Chain:
    """A connection to the node and the deployed ledger contract."""

    def __init__(
        self,
        w3: Web3,
        operator: LocalAccount,
        address: str | None = None,
        *,
        attempts: int = 3,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.w3 = w3
        self.operator = operator
        self.attempts = max(1, attempts)
        self.breaker = breaker or CircuitBreaker(fault=_fault)
        # An in-process chain (eth-tester) answers without I/O: it cannot stall its callers.
        self.in_process = False
        self._sighting: HeadSighting | None = None
        self._nonce_lock = threading.Lock()
        self._contract: Contract | None = None
        self._chain_id: int | None = None
        # Raw JSON-RPC (no web3 result formatting) is several times faster for large log
        # queries; the in-process eth-tester provider only speaks formatted requests.
        self._raw = isinstance(w3.provider, JSONBaseProvider)
        if address is not None:
            self.use(address)

    # ----- connecting -----

    @classmethod
    def connect(
        cls, url: str, *, operator_key: str, timeout: float = 5.0, attempts: int = 3
    ) -> Chain:
        """Connects to a JSON-RPC node by ``http(s)://`` or ``ws(s)://`` URL."""
        if url.startswith(("ws://", "wss://")):
            w3 = Web3(WebSocketSyncProvider(url, timeout=timeout))
        elif url.startswith(("http://", "https://")):
            # Retries are ours (see _rpc): one policy, and a bounded time to "unavailable".
            provider = Web3.HTTPProvider(
                url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None
            )
            w3 = Web3(provider)
        else:
            raise ValueError(
                f"unsupported JSON-RPC URL {redact(url)!r}: use http(s):// or ws(s)://"
            )
        return cls(w3, Account.from_key(operator_key), attempts=attempts)

    @classmethod
    def connect_http(cls, url: str, *, operator_key: str, timeout: float = 5.0) -> Chain:
        """Connects to a JSON-RPC node over HTTP."""
        return cls.connect(url, operator_key=operator_key, timeout=timeout)

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
        chain = cls(w3, operator)
        chain.in_process = True
        return chain

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
        receipt = self._send(dict(self._rpc(lambda: ctor.build_transaction(self._tx_fields()))))
        address = str(receipt["contractAddress"])
        self.use(address)
        return address

    def has_code(self, address: str) -> bool:
        return bool(self._rpc(lambda: self.w3.eth.get_code(to_checksum_address(address))))

    # ----- writes -----

    def transact(self, fn: ContractFunction) -> TxReceipt:
        """Simulates, then signs and sends a contract call from the operator.

        Raises:
            LedgerError: the domain exception of the contract's revert, before any gas is spent
                (or, when another transaction made it revert once mined, after).
            ChainUnavailable: the node cannot be reached.
        """
        self._simulate(fn)
        tx = self._rpc(lambda: fn.build_transaction(self._tx_fields()), map_reverts=True)
        return self._send(dict(tx))

    def send_calldata(self, calldata: bytes) -> TxReceipt:
        """Simulates and sends raw calldata to the ledger contract (journal replay)."""
        call = {"from": self.operator.address, "to": self.address, "data": calldata}
        self._rpc(lambda: self.w3.eth.call(call), map_reverts=True)  # type: ignore[arg-type]
        gas = self._rpc(lambda: self.w3.eth.estimate_gas(call), map_reverts=True)  # type: ignore[arg-type]
        return self._send({**call, "gas": gas, **self._fee_fields(), "chainId": self.chain_id})

    # ----- reads (pinned to one block so a decision sees one consistent state) -----

    def head(self) -> BlockRef:
        """Asks the node for its head (remembered: ``last_head``)."""
        block = self._rpc(lambda: self.w3.eth.get_block("latest"))
        head = BlockRef(int(block["number"]), bytes(block["hash"]), int(block["timestamp"]))
        self._sighting = HeadSighting(head, time.monotonic(), time.time())
        return head

    @property
    def last_head(self) -> HeadSighting | None:
        """The head the last successful ``head`` read, and when: no request is made."""
        return self._sighting

    def header(self, number: int) -> BlockHeader | None:
        """The header of block ``number``, or None when the chain is shorter than that."""

        def fetch() -> BlockHeader | None:
            try:
                block = self.w3.eth.get_block(number)
            except Exception as exc:  # BlockNotFound: the chain is shorter than that
                if type(exc).__name__ == "BlockNotFound":
                    return None
                raise
            return BlockHeader(
                int(block["number"]),
                bytes(block["hash"]),
                bytes(block["parentHash"]),
                int(block["timestamp"]),
            )

        found: BlockHeader | None = self._rpc(fetch)
        return found

    def block_hash(self, number: int) -> bytes | None:
        header = self.header(number)
        return None if header is None else header.hash

    def logs(
        self, from_block: int, to_block: int, *, topics: Sequence[bytes | None] | None = None
    ) -> list[RawLog]:
        """Every log of the ledger contract in blocks ``from_block..to_block`` (inclusive).

        Args:
            from_block: the first block.
            to_block: the last block.
            topics: only the logs whose topics match, position by position (None: any), as
                ``eth_getLogs`` filters them (e.g. one event of one log id).

        Raises:
            QueryRefused: the node refused the query (too many results, range too large).
            ChainUnavailable: the node cannot be reached.
        """
        wanted = None if topics is None else [None if t is None else "0x" + t.hex() for t in topics]
        if not self._raw:
            formatted: dict[str, Any] = {
                "address": self.contract.address,
                "fromBlock": from_block,
                "toBlock": to_block,
            }
            if wanted is not None:
                formatted["topics"] = wanted
            found = self._rpc(lambda: self.w3.eth.get_logs(formatted))  # type: ignore[arg-type]
            return [_formatted_log(entry) for entry in found]
        query: dict[str, Any] = {
            "address": self.address,
            "fromBlock": hex(from_block),
            "toBlock": hex(to_block),
        }
        if wanted is not None:
            query["topics"] = wanted
        response = self._rpc(
            lambda: self.w3.provider.make_request(RPCEndpoint("eth_getLogs"), [query])
        )
        if "error" in response:
            raise QueryRefused(redact(str(response["error"]))[:300])
        return [_raw_log(entry) for entry in response["result"]]

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

    def anchor(self, log_id: int, block: BlockIdentifier = "latest") -> tuple[bytes, int, int]:
        """(root, tree size, anchored at) of usage log ``log_id``."""
        root, size, at = self._call(self.contract.functions.anchorOf(log_id), block)
        return bytes(root), int(size), int(at)

    def epoch(self, consumer: str) -> int:
        """The consumer's epoch: every signed message carries it; a revoke-all moves it on."""
        return self.consumer(consumer).epoch

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

        def ask() -> bytes | None:
            try:
                return bytes(target.functions.isValidSignature(digest, signature).call())
            except Exception as exc:
                if _is_transient(exc):
                    raise  # the node, not the wallet: unavailable, not "invalid"
                return None  # a wallet that reverts or is no wallet at all: not valid

        answer: bytes | None = self._rpc(ask)
        return answer == bytes.fromhex("1626ba7e")

    # ----- plumbing -----

    def _call(self, fn: ContractFunction, block: BlockIdentifier) -> Any:
        return self._rpc(lambda: fn.call(block_identifier=block))

    def _simulate(self, fn: ContractFunction) -> None:
        self._rpc(lambda: fn.call({"from": self.operator.address}), map_reverts=True)

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
                HexBytes(tx_hash), timeout=_RECEIPT_TIMEOUT, poll_latency=_RECEIPT_POLL
            )
        )
        if receipt["status"] != 1:
            raise self._explain_revert(tx, receipt)
        return receipt

    def _explain_revert(self, tx: dict[str, Any], receipt: TxReceipt) -> LedgerError:
        """The contract's error for a mined transaction that reverted.

        Replayed as an ``eth_call`` on the state at the end of its block, which includes the
        transactions before it in that block (typically the one that made it revert).
        """
        tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()
        if tx.get("to") is not None:
            call = {k: tx[k] for k in ("from", "to", "data", "value", "gas") if k in tx}
            try:
                self._rpc(
                    lambda: self.w3.eth.call(call, block_identifier=receipt["blockNumber"]),  # type: ignore[arg-type]
                    map_reverts=True,
                )
            except ChainUnavailable:
                pass
            except LedgerError as exc:
                return exc
        return ContractReverted(f"transaction {tx_hash} reverted after simulation passed")

    def _sign_and_send(self, tx: dict[str, Any]) -> bytes:
        """Signs with the operator's next nonce as the node counts it, and sends.

        The nonce is read from the node (pending) under the lock for every transaction: after
        a reorg or a node restart the node may have forgotten transactions a local counter
        would still count, and a nonce past the node's stays queued forever.
        """
        with self._nonce_lock:
            for attempt in range(_NONCE_RETRIES):
                nonce = self._rpc(
                    lambda: self.w3.eth.get_transaction_count(self.operator.address, "pending")
                )
                signed = self.operator.sign_transaction({**tx, "nonce": nonce})
                if self._send_raw(signed):
                    return bytes(signed.hash)
                # Another process with the same key took this nonce: read it again.
                if attempt + 1 == _NONCE_RETRIES:
                    break
        raise ChainUnavailable(f"no free operator nonce after {_NONCE_RETRIES} attempts")

    def _send_raw(self, signed: SignedTransaction) -> bool:
        """Sends one signed transaction; False when its nonce is taken by another one.

        Re-sending the same signed bytes is harmless, so transient failures are retried; a
        retry that finds the transaction already known (or mined) means an earlier attempt
        got through.
        """
        for attempt in range(self.attempts):
            try:
                self.breaker.call(lambda: self.w3.eth.send_raw_transaction(signed.raw_transaction))
                return True
            except LedgerError:
                raise  # the circuit is open
            except Exception as exc:
                if _is_transient(exc) and attempt + 1 < self.attempts and self._may_retry():
                    time.sleep(_BACKOFF * 2**attempt)
                    continue
                if _is_transient(exc):
                    raise _unavailable(exc) from exc
                text = str(exc).lower()
                if "already known" in text or "already imported" in text:
                    return True
                if _is_nonce_clash(exc):
                    return attempt > 0 and self._is_known(bytes(signed.hash))
                raise _unavailable(exc) from exc
        raise AssertionError("unreachable")

    def _is_known(self, tx_hash: bytes) -> bool:
        try:
            self._rpc(lambda: self.w3.eth.get_transaction(HexBytes(tx_hash)))
        except ChainUnavailable:
            return False
        return True

    def _rpc(self, call: Callable[[], T], *, map_reverts: bool = False) -> T:
        """Runs one node call, retrying transient failures with exponential backoff.

        Raises:
            LedgerError: with ``map_reverts``, the domain exception of a contract revert.
            ChainUnavailable: the node cannot be reached, or answered with an error.
        """
        for attempt in range(self.attempts):
            try:
                return self.breaker.call(call)
            except LedgerError:
                raise  # a domain error, or the circuit is open: no retry
            except Exception as exc:
                if _is_transient(exc) and attempt + 1 < self.attempts and self._may_retry():
                    time.sleep(_BACKOFF * 2**attempt)
                    continue
                if map_reverts and not _is_transient(exc):
                    data = contract.revert_data(exc)
                    if data is not None:
                        raise contract.decode_revert(data) from exc
                raise _unavailable(exc) from exc
        raise AssertionError("unreachable")

    def _may_retry(self) -> bool:
        """Whether a retry may help: not once the failure opened the breaker (a timeout does)."""
        return self.breaker.reason == ""


def _fault(exc: BaseException) -> Fault | None:
    """What a failed node call says about the node: None when the node answered."""
    if isinstance(exc, LedgerError) or not _is_transient(exc):
        return None
    return Fault.SLOW if _timed_out(exc) else Fault.FAILED


def _timed_out(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(5):  # the timeout may be wrapped (the websocket provider's ConnectionError)
        if seen is None:
            return False
        if isinstance(seen, requests.Timeout | TimeoutError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _is_transient(exc: BaseException) -> bool:
    """A failure worth retrying: the request may not have reached a healthy node."""
    if isinstance(exc, requests.HTTPError):
        response = exc.response
        return response is not None and response.status_code in _TRANSIENT_HTTP
    return isinstance(exc, requests.ConnectionError | requests.Timeout | OSError | TimeoutError)


def _is_nonce_clash(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "nonce too low" in text or "replacement transaction" in text


def _unavailable(exc: BaseException) -> ChainUnavailable:
    return ChainUnavailable(redact(f"{type(exc).__name__}: {exc}")[:300])


def _raw_log(entry: dict[str, Any]) -> RawLog:
    stamp = entry.get("blockTimestamp")
    return RawLog(
        block_number=int(entry["blockNumber"], 16),
        block_hash=bytes.fromhex(entry["blockHash"][2:]),
        tx_hash=bytes.fromhex(entry["transactionHash"][2:]),
        log_index=int(entry["logIndex"], 16),
        topics=tuple(bytes.fromhex(t[2:]) for t in entry["topics"]),
        data=bytes.fromhex(entry["data"][2:]),
        block_timestamp=None if stamp is None else int(stamp, 16),
    )


def _formatted_log(entry: Any) -> RawLog:
    return RawLog(
        block_number=int(entry["blockNumber"]),
        block_hash=bytes(entry["blockHash"]),
        tx_hash=bytes(entry["transactionHash"]),
        log_index=int(entry["logIndex"]),
        topics=tuple(bytes(t) for t in entry["topics"]),
        data=bytes(entry["data"]),
        block_timestamp=None,
    )
