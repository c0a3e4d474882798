"""Many ledger events, fast: multicall batches sent straight to a local node.

Used by the indexer benchmark and the indexer tests. Consumers are the node's unlocked
development accounts (``eth_sendTransaction``), so no message is signed; calldata is encoded
with eth-abi directly, which is much faster than web3's contract encoder for tens of
thousands of calls.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import encode
from eth_utils.abi import function_signature_to_4byte_selector
from hexbytes import HexBytes

from ledger.chain.client import Chain
from ledger.domain.grants import ALL_DAYS, ALL_HOURS, OPEN_ENDED

_GAS = 28_000_000  # under the 30M block gas limit of a default anvil node
_TERMS = "(uint64,uint8,uint32,uint32,uint40,uint40,uint24,uint8,bytes32)"
_SELECTORS = {
    name: function_signature_to_4byte_selector(signature)
    for name, signature in {
        "registerCompany": "registerCompany(uint64,string,address)",
        "suspendCompany": "suspendCompany(uint64)",
        "reinstateCompany": "reinstateCompany(uint64)",
        "setGrant": f"setGrant({_TERMS})",
        "revokeGrant": "revokeGrant(uint64,uint8)",
        "revokeAll": "revokeAll()",
        "setGlobalCap": "setGlobalCap(uint32,uint32)",
        "attestLink": "attestLink(address,bytes32)",
        "unlink": "unlink(bytes32)",
        "anchorRoot": "anchorRoot(uint64,uint64,bytes32)",
        "multicall": "multicall(bytes[])",
    }.items()
}
_TYPES = {
    "registerCompany": ["uint64", "string", "address"],
    "suspendCompany": ["uint64"],
    "reinstateCompany": ["uint64"],
    "setGrant": [_TERMS],
    "revokeGrant": ["uint64", "uint8"],
    "revokeAll": [],
    "setGlobalCap": ["uint32", "uint32"],
    "attestLink": ["address", "bytes32"],
    "unlink": ["bytes32"],
    "anchorRoot": ["uint64", "uint64", "bytes32"],
    "multicall": ["bytes[]"],
}


def calldata(method: str, *args: Any) -> bytes:
    """ABI-encoded call of a QuotaLedger function."""
    return _SELECTORS[method] + encode(_TYPES[method], list(args))


def terms(
    company_id: int, channel: int, max_contacts: int = 4, period: int = 86400
) -> tuple[Any, ...]:
    return (
        company_id,
        channel,
        max_contacts,
        period,
        0,
        OPEN_ENDED,
        ALL_HOURS,
        ALL_DAYS,
        b"\x01" * 32,
    )


def commitment(n: int) -> bytes:
    return hashlib.sha256(f"contact-{n}".encode()).digest()


@dataclass
class Workload:
    """Sends batches of calls and counts the events they emitted."""

    chain: Chain
    events: int = 0
    transactions: int = 0

    def send(self, sender: str, calls: list[bytes]) -> None:
        """One multicall from ``sender`` (an unlocked account of the node), mined at once."""
        data = calldata("multicall", calls)
        # An explicit gas limit skips a gas estimate (a second execution of the whole batch).
        tx = {"from": sender, "to": self.chain.address, "data": HexBytes(data), "gas": _GAS}
        tx_hash = self.chain.w3.eth.send_transaction(tx)  # type: ignore[arg-type]
        receipt = self.chain.w3.eth.wait_for_transaction_receipt(tx_hash, poll_latency=0.005)
        if receipt["status"] != 1:
            raise AssertionError(f"workload transaction {tx_hash.hex()} reverted")
        self.events += len(receipt["logs"])
        self.transactions += 1


def fill(
    chain: Chain,
    consumers: list[str],
    *,
    events: int,
    companies: int = 100,
    batch: int = 250,
    register: bool = True,
) -> Workload:
    """Emits at least ``events`` events of every kind the index follows.

    Companies are registered first; then rounds in which each consumer sets ``batch`` grants
    (new ones, then replacements), the operator links contacts to them, some grants are
    revoked, caps set, a company suspended and reinstated, a usage-log root anchored, and now
    and then a consumer revokes everything.
    """
    work = Workload(chain)
    operator = chain.operator.address
    if register:
        registrations = [
            calldata("registerCompany", c, f"Company {c}", operator)
            for c in range(1, companies + 1)
        ]
        work.send(operator, registrations)
    slots = [(c, ch) for c in range(1, companies + 1) for ch in range(4)]
    round_ = 0
    linked = 0
    while work.events < events:
        for i, consumer in enumerate(consumers):
            start = (round_ * batch) % len(slots)
            chosen = [slots[(start + k) % len(slots)] for k in range(batch)]
            grants = [
                calldata("setGrant", terms(c, ch, 1 + (round_ + k) % 9))
                for k, (c, ch) in enumerate(chosen)
            ]
            work.send(consumer, grants)
            revokes = [calldata("revokeGrant", c, ch) for c, ch in chosen[: batch // 4]]
            revokes.append(calldata("setGlobalCap", 10 + round_, 86400))
            if (round_ + i) % 7 == 6:
                revokes.append(calldata("revokeAll"))
            work.send(consumer, revokes)
            links = [
                calldata("attestLink", consumer, commitment(linked + k)) for k in range(batch // 4)
            ]
            # Reassign a few earlier contacts to this consumer: the previous holder loses them.
            links += [
                calldata("attestLink", consumer, commitment(k)) for k in range(0, linked, 97)
            ][:5]
            linked += batch // 4
            admin = [
                calldata("suspendCompany", 1 + round_ % companies),
                # The block number grows with every transaction: so does the anchored size.
                calldata("anchorRoot", 1, 1 + chain.w3.eth.block_number, b"\x02" * 32),
            ]
            work.send(operator, links + admin)
            work.send(operator, [calldata("reinstateCompany", 1 + round_ % companies)])
            if work.events >= events:
                break
        round_ += 1
    return work
