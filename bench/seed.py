"""Many real grants, fast: consumer keys, EIP-712 signatures and link attestations relayed in
``multicall`` batches, for benchmarks that need a ledger of up to millions of grants.

Everything is what the product would hold after relaying that many consumers' messages: each
consumer has their own key, signs ``SetGrant`` for company 1 on up to four channels, and the
operator attests the link of the consumer's phone number and relays the signed grants. The
contract verifies every signature. Only the speed-ups differ from the relayer's path:

- the EIP-712 digest is built from the message's fields directly (``digest``, tested equal to
  eth-account's) and signed with coincurve when it is installed (libsecp256k1: ~50 us a
  signature, where eth-account takes milliseconds), with eth-keys otherwise;
- calldata is packed by hand (``set_grant_call``, tested equal to the ABI encoder's);
- batches go to the node from a second thread while the next one is signed, and nothing is
  written to the operator's journal: a seeded node is a benchmark's, never restarted.

Run: ``.venv/bin/python -m bench.seed --grants 100000`` (starts a local node in a temporary
directory, seeds, indexes, and prints the rates, the node's memory and its state file size).
"""

from __future__ import annotations

import argparse
import functools
import queue
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.crypto import keccak
from hexbytes import HexBytes

from bench.workload import calldata
from ledger.chain.anvil import AnvilNode
from ledger.consent import messages
from ledger.domain import contacts
from ledger.domain.channels import Channel
from ledger.domain.grants import ALL_DAYS, ALL_HOURS, OPEN_ENDED, CompanyStatus, GrantTerms
from ledger.runtime import Ledger
from ledger.settings import ChainKind, Settings

try:  # optional: ~50x faster signatures than eth-keys' pure-Python backend
    import coincurve
except ImportError:  # pragma: no cover - depends on the environment
    coincurve = None  # type: ignore[assignment]
from eth_keys import keys  # type: ignore[attr-defined]

COMPANY = 1
CHANNELS = (Channel.SMS, Channel.CALL, Channel.EMAIL, Channel.MESSAGING)
# A quota no benchmark uses up, so that every check of a seeded number is allowed.
MAX_CONTACTS, PERIOD = 1_000_000, 3600
NOTICE = keccak(text="bench notice v1")
_GAS = 28_000_000  # under the 30M block gas limit of a default anvil node
# What a batch aims at: under the 15M target of a 30M block, so that the base fee (EIP-1559)
# falls instead of growing 7% a block until the operator cannot pay for gas.
_BATCH_GAS = 14_000_000
_TERMS = "(uint64,uint8,uint32,uint32,uint40,uint40,uint24,uint8,bytes32)"
_SET_GRANT_BY_SIG = function_signature_to_4byte_selector(
    f"setGrantBySig(address,{_TERMS},uint32,uint32,uint256,bytes)"
)
_ATTEST_LINK = function_signature_to_4byte_selector("attestLink(address,bytes32)")


def phone(i: int) -> str:
    """The phone number of consumer ``i`` (valid US numbers, 212-200-0000 onwards; 8M of them)."""
    return f"+1 212 {200 + i // 10_000:03d} {i % 10_000:04d}"


def consumer_key(i: int) -> bytes:
    return keccak(text=f"bench consumer {i}")


def terms(channel: int) -> GrantTerms:
    return GrantTerms(
        company_id=COMPANY,
        channel=Channel(channel),
        max_contacts=MAX_CONTACTS,
        period=PERIOD,
        valid_from=0,
        valid_until=OPEN_ENDED,
        hours_mask=ALL_HOURS,
        days_mask=ALL_DAYS,
        notice_hash=NOTICE,
    )


def _word(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value.rjust(32, b"\x00")
    return int(value).to_bytes(32, "big")


_DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"


def domain_separator(domain: messages.Domain) -> bytes:
    return keccak(
        keccak(text=_DOMAIN_TYPE)
        + keccak(text=messages.DOMAIN_NAME)
        + keccak(text=messages.DOMAIN_VERSION)
        + _word(domain.chain_id)
        + _word(bytes.fromhex(domain.verifying_contract[2:]))
    )


@functools.cache
def _type_hash(kind: messages.Kind) -> bytes:
    fields = ",".join(f"{f['type']} {f['name']}" for f in kind.eip712_fields)
    return keccak(text=f"{kind.primary_type}({fields})")


def digest(message: messages.Message, separator: bytes) -> bytes:
    """The EIP-712 digest a wallet signs for ``message`` (kinds with static fields only).

    Every field of these messages is a static type (uintN, address, bytes32), each one 32-byte
    word in the struct hash: no type-walking encoder is needed.
    """
    consumer = bytes.fromhex(message.consumer[2:])
    words = (consumer, *message.values, message.guard, message.epoch, message.deadline)
    struct = keccak(_type_hash(message.kind) + b"".join(_word(w) for w in words))
    return keccak(b"\x19\x01" + separator + struct)


def sign_digest(digest_: bytes, key: bytes) -> bytes:
    """65 bytes r || s || v (v = 27 or 28), as ``messages.sign`` returns."""
    if coincurve is not None:
        rsv = coincurve.PrivateKey(key).sign_recoverable(digest_, hasher=None)
    else:  # pragma: no cover - depends on the environment
        rsv = keys.PrivateKey(key).sign_msg_hash(digest_).to_bytes()
    return rsv[:64] + bytes([rsv[64] + 27])


def address_of(key: bytes) -> str:
    if coincurve is not None:
        public = coincurve.PrivateKey(key).public_key.format(compressed=False)[1:]
    else:  # pragma: no cover - depends on the environment
        public = keys.PrivateKey(key).public_key.to_bytes()
    return "0x" + keccak(public)[-20:].hex()


def set_grant_call(message: messages.Message, signature: bytes) -> bytes:
    """``setGrantBySig`` calldata for a signed SetGrant (the ABI layout, packed directly).

    Head: consumer, the 9 words of the static terms struct, version, epoch, deadline and the
    offset of the signature (14 words); tail: its length and its 65 bytes padded to 96.
    """
    consumer = bytes.fromhex(message.consumer[2:])
    head = (consumer, *message.values, message.guard, message.epoch, message.deadline, 14 * 32)
    tail = _word(len(signature)) + signature.ljust(96, b"\x00")
    return _SET_GRANT_BY_SIG + b"".join(_word(w) for w in head) + tail


def attest_link_call(consumer: str, commitment: bytes) -> bytes:
    return _ATTEST_LINK + _word(bytes.fromhex(consumer[2:])) + commitment


@dataclass(frozen=True)
class Seeded:
    grants: int
    consumers: int
    transactions: int
    seconds: float  # signing and mining, from the first key to the last receipt

    @property
    def rate(self) -> float:
        return self.grants / self.seconds


def consumer_calls(
    i: int, channels: int, *, separator: bytes, salt: bytes, deadline: int
) -> list[bytes]:
    """The link attestation of consumer ``i``'s number, then their signed grants."""
    key = consumer_key(i)
    consumer = address_of(key)
    parsed = contacts.parse_phone(phone(i), default_region="US")
    calls = [attest_link_call(consumer, contacts.commitment(parsed, salt))]
    for channel in CHANNELS[:channels]:
        # A new consumer's first grant on this channel: version 0, epoch 0.
        message = messages.set_grant(
            consumer, terms(channel), version=0, epoch=0, deadline=deadline
        )
        calls.append(set_grant_call(message, sign_digest(digest(message, separator), key)))
    return calls


def seed(
    ledger: Ledger,
    *,
    grants: int,
    start: int = 0,
    progress: Callable[[int, float], None] | None = None,
) -> Seeded:
    """Seeds grants ``start`` to ``grants``: consumer ``i`` (grants 4i to 4i+3) is linked to
    ``phone(i)`` and grants company 1 on up to four channels (SMS first, so that every seeded
    consumer has an SMS grant). ``start``: grants seeded by earlier calls (a multiple of 4).

    Registers company 1 when needed. Returns once every batch is mined, all of them successful;
    the event index is not synced (call ``ledger.indexer.sync()``). ``progress`` gets (grants
    in the ledger, seconds since this call).

    Raises:
        AssertionError: a batch reverted.
    """
    chain = ledger.chain
    if chain.company(COMPANY).status is CompanyStatus.NONE:
        ledger.relayer.register_company(COMPANY, "Bench", chain.operator.address)
    separator = domain_separator(chain.domain)
    salt = ledger.settings.contact_salt_bytes
    deadline = int(time.time()) + 30 * 86400
    if start % len(CHANNELS):
        raise ValueError(f"start={start}: a consumer's grants are seeded together")
    consumers = -(-grants // len(CHANNELS))
    sender = _Sender(ledger)
    started = time.perf_counter()
    sender.start()
    done, per_batch = start // len(CHANNELS), 10  # a small first batch measures the gas
    try:
        while done < consumers:
            batch: list[bytes] = []
            for i in range(done, min(done + per_batch, consumers)):
                channels = min(len(CHANNELS), grants - i * len(CHANNELS))
                batch += consumer_calls(
                    i, channels, separator=separator, salt=salt, deadline=deadline
                )
            sender.put(batch)
            done = min(done + per_batch, consumers)
            if sender.gas_per_call is None:
                sender.drain()
            per_batch = max(1, int(_BATCH_GAS / (sender.gas_per_call or 1) / (1 + len(CHANNELS))))
            if progress is not None:
                progress(min(done * len(CHANNELS), grants), time.perf_counter() - started)
        sender.drain()
    finally:
        sender.stop()
    new_consumers = consumers - start // len(CHANNELS)
    elapsed = time.perf_counter() - started
    return Seeded(grants - start, new_consumers, sender.transactions, elapsed)


class _Sender(threading.Thread):
    """Sends multicall batches one by one from the operator, each waited for, in the background."""

    def __init__(self, ledger: Ledger) -> None:
        super().__init__(name="seed-sender", daemon=True)
        self.chain = ledger.chain
        self.queue: queue.Queue[list[bytes] | None] = queue.Queue(maxsize=2)
        self.nonce = int(self.chain.w3.eth.get_transaction_count(self.chain.operator.address))
        # Blocks under the gas target only lower the base fee: the first one's, doubled, holds.
        base = int(self.chain.w3.eth.get_block("latest").get("baseFeePerGas", 0))
        self.tip = self.chain.w3.to_wei(1, "gwei")
        self.max_fee = 2 * base + self.tip
        self.transactions = 0
        self.gas_per_call: float | None = None
        self.error: BaseException | None = None

    def put(self, batch: list[bytes]) -> None:
        self._raise()
        self.queue.put(batch)

    def drain(self) -> None:
        self.queue.join()
        self._raise()

    def stop(self) -> None:
        self.queue.put(None)
        self.join()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def run(self) -> None:
        for batch in iter(self.queue.get, None):
            try:
                if self.error is None:
                    self._send(batch)
            except BaseException as exc:  # handed to the seeding thread
                self.error = exc
            finally:
                self.queue.task_done()
        self.queue.task_done()

    def _send(self, batch: list[bytes]) -> None:
        w3, operator = self.chain.w3, self.chain.operator
        tx: dict[str, Any] = {
            "to": self.chain.address,
            "data": HexBytes(calldata("multicall", batch)),
            # A fixed gas limit skips the estimate (a second execution of the whole batch).
            "gas": _GAS,
            "maxFeePerGas": self.max_fee,
            "maxPriorityFeePerGas": self.tip,
            "nonce": self.nonce,
            "chainId": self.chain.chain_id,
        }
        sent = w3.eth.send_raw_transaction(operator.sign_transaction(tx).raw_transaction)
        receipt = w3.eth.wait_for_transaction_receipt(sent, timeout=600, poll_latency=0.005)
        if receipt["status"] != 1:
            raise AssertionError(f"seed batch {sent.hex()} reverted ({len(batch)} calls)")
        self.nonce += 1
        self.transactions += 1
        self.gas_per_call = receipt["gasUsed"] / len(batch)


def rss_kib(pid: int) -> tuple[int, int]:
    """(current, peak) resident memory of process ``pid`` in KiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


@dataclass
class Grown:
    seeded: Seeded
    index_seconds: float
    index_events: int


class SeededLedger:
    """A local node in ``workdir`` and a ledger over it, grown to more and more seeded grants.

    Example:
        >>> with SeededLedger(Path("/tmp/x"), port=8599) as s:
        ...     s.grow_to(100_000)
        ...     s.ledger.checker.check(company_id=1, contact=phone(0), channel=Channel.SMS)
    """

    def __init__(self, workdir: Path, *, port: int) -> None:
        self.workdir = workdir
        # The periodic dump would rewrite a growing state file while seeding: only on stop.
        self.node = AnvilNode(data_dir=workdir / "anvil", port=port, state_interval=86_400)
        self.grants = 0
        # None: the node's default (anvil is killed mid-dump past it, fine for a benchmark's
        # throwaway state); the seeding CLI waits for the dump to measure it.
        self.stop_timeout: float | None = None

    def __enter__(self) -> SeededLedger:
        self.node.start()
        try:
            settings = Settings(
                chain=ChainKind.RPC,
                rpc_url=self.node.url,
                data_dir=self.workdir,
                database_url=f"sqlite:///{self.workdir / 'ledger.sqlite3'}",
                default_region="US",
                # A node busy mining a large batch (or a loaded machine) is slow, not gone.
                rpc_timeout=120.0,
            )
            self.ledger = Ledger.open(settings, sync_index=False)
        except BaseException:
            self.node.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.ledger.engine.dispose()
        self.node.stop(timeout=self.stop_timeout)

    def grow_to(
        self, grants: int, *, progress: Callable[[int, float], None] | None = None
    ) -> Grown:
        """Seeds up to ``grants`` grants in all, then lets the product's indexer catch up."""
        seeded = seed(self.ledger, grants=grants, start=self.grants, progress=progress)
        self.grants = grants
        started = time.perf_counter()
        report = self.ledger.indexer.sync()
        if not report.caught_up:
            raise AssertionError("the index did not catch up with the seeded chain")
        return Grown(seeded, time.perf_counter() - started, report.events)

    def node_rss_mib(self) -> tuple[float, float]:
        """(current, peak) resident memory of the node in MiB."""
        rss, peak = rss_kib(self.node.pid or 0)
        return rss / 1024, peak / 1024


def main(argv: list[str] | None = None) -> None:
    from bench.bench_indexer import _free_port

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--grants", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, default=None, help="kept (default: a temp dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ql-seed-") as tmp:
        workdir = args.workdir or Path(tmp)
        with SeededLedger(workdir, port=_free_port()) as s:

            def show(done: int, seconds: float) -> None:
                if done % 10_000 < 300 or done == args.grants:
                    rss, peak = s.node_rss_mib()
                    print(
                        f"{done:>10,} grants {seconds:7.1f} s {done / seconds:8,.0f}/s "
                        f"node RSS {rss:,.0f} MiB (peak {peak:,.0f})",
                        flush=True,
                    )

            grown = s.grow_to(args.grants, progress=show)
            rss, peak = s.node_rss_mib()
            print(
                f"seeded {grown.seeded.grants:,} grants ({grown.seeded.consumers:,} consumers) "
                f"in {grown.seeded.transactions:,} transactions: {grown.seeded.seconds:.1f} s, "
                f"{grown.seeded.rate:,.0f} grants/s; indexed {grown.index_events:,} events in "
                f"{grown.index_seconds:.1f} s; node RSS {rss:,.0f} MiB (peak {peak:,.0f})"
            )
            s.stop_timeout = 3600
            stopping = time.perf_counter()
        state = workdir / "anvil" / "anvil-state.json"
        size = state.stat().st_size if state.exists() else 0
        print(
            f"state file {size / 2**20:,.0f} MiB, dumped in {time.perf_counter() - stopping:.1f} s"
        )


if __name__ == "__main__":
    main()
