"""Check-and-record benchmark: ``.venv/bin/python -m bench.bench_checks``.

``Checker.check(..., record=True)`` on SQLite (WAL), one thread, a fresh database, 1,000 US
numbers asked in turn. Two figures:

- the real path: ledger state from the event index (``IndexedState``, as the API reads it)
  kept by the in-process eth-tester chain. Each number is linked to its own consumer, who
  granted company 1 an SMS quota, so every check reads the checkpoint, the company, the link,
  the grant and the consumer, counts the rolling window and appends to the log;
- the usage log alone: the same checks with the ledger state from an in-benchmark stub (no
  chain, no index): parse, count, decide, append.

Every check must be allowed (the figure would otherwise measure refusals). Options:
``--checks N`` (default 5,000 per figure).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from eth_utils.crypto import keccak

from bench.report import Figure, record
from ledger.consent import messages
from ledger.domain import contacts
from ledger.domain.channels import Channel
from ledger.domain.grants import (
    ALL_DAYS,
    ALL_HOURS,
    OPEN_ENDED,
    CompanyStatus,
    GrantRecord,
    GrantTerms,
)
from ledger.domain.state import BlockRef, CompanyRecord, ConsumerRecord, LinkRecord
from ledger.runtime import Ledger
from ledger.services.checks import Checker
from ledger.settings import Settings

PHONES = [f"+1 212 555 {i:04d}" for i in range(1000)]
# A quota no benchmark run uses up: the figure measures allows, each one counted and logged.
MAX_CONTACTS, PERIOD = 1_000_000, 3600
TERMS = GrantTerms(company_id=1, channel=Channel.SMS, max_contacts=MAX_CONTACTS, period=PERIOD)
ACTIVE = CompanyRecord("0x" + "11" * 20, CompanyStatus.ACTIVE)
GRANT = GrantRecord(MAX_CONTACTS, PERIOD, 0, OPEN_ENDED, ALL_HOURS, ALL_DAYS, 1, 0, True)


@dataclass
class _StubState:
    """Ledger state without a chain: every contact linked to its own consumer, one grant."""

    def head(self) -> BlockRef:
        return BlockRef(1, b"\x00" * 32, int(time.time()))

    def company(self, company_id: int, block: int) -> CompanyRecord:
        return ACTIVE

    def link(self, commitment: bytes, block: int) -> LinkRecord:
        return LinkRecord("0x" + commitment[:20].hex(), 0)

    def grant(self, consumer: str, company_id: int, channel: int, block: int) -> GrantRecord:
        return GRANT

    def consumer(self, consumer: str, block: int) -> ConsumerRecord:
        return ConsumerRecord(0, 0, 0, 1)


def _open(directory: Path) -> Ledger:
    settings = Settings(
        chain="memory",
        data_dir=directory,
        database_url=f"sqlite:///{directory / 'checks.sqlite3'}",
        default_region="US",
    )
    return Ledger.open(settings)


def _link_and_grant(ledger: Ledger, *, batch: int = 25) -> None:
    """Links each number to its own consumer, who grants company 1 SMS; then indexes it all.

    The operator relays the signed grants and the link attestations in multicall batches (one
    transaction each instead of two thousand), then the indexer catches up.
    """
    chain = ledger.chain
    ledger.relayer.register_company(1, "Bench", chain.operator.address)
    contract, salt = chain.contract, ledger.settings.contact_salt_bytes
    deadline = int(time.time()) + 3600
    calls: list[bytes] = []
    for i, phone in enumerate(PHONES):
        consumer = Account.from_key(keccak(text=f"bench consumer {i}"))
        parsed = contacts.parse_contact(phone, default_region="US")
        commitment = contacts.commitment(parsed, salt)
        # A new consumer's first grant: version 0, epoch 0.
        message = messages.set_grant(consumer.address, TERMS, version=0, epoch=0, deadline=deadline)
        signature = messages.sign(message.typed_data(chain.domain), consumer.key)
        for method, args in (
            ("attestLink", [consumer.address, commitment]),
            ("setGrantBySig", list(message.call_args(signature))),
        ):
            calls.append(bytes.fromhex(contract.encode_abi(method, args=args)[2:]))
    w3, operator = chain.w3, chain.operator
    for start in range(0, len(calls), batch):
        multicall = contract.encode_abi("multicall", args=[calls[start : start + batch]])
        # Signed and sent directly with a fixed gas limit: eth-tester's gas estimate would
        # execute each batch a dozen times.
        tx = {
            "to": chain.address,
            "data": multicall,
            "gas": 15_000_000,
            "gasPrice": w3.eth.gas_price,
            "nonce": w3.eth.get_transaction_count(operator.address),
            "chainId": chain.chain_id,
        }
        sent = w3.eth.send_raw_transaction(operator.sign_transaction(tx).raw_transaction)
        if w3.eth.wait_for_transaction_receipt(sent)["status"] != 1:
            raise AssertionError("a link-and-grant batch reverted")
    ledger.indexer.sync()


def bench_check_and_record(directory: Path, checks: int, *, stub: bool) -> float:
    """Checks-and-records per second through ``Checker``; raises if any check was refused."""
    ledger = _open(directory)
    checker: Checker = ledger.checker
    if stub:
        checker = Checker(
            state=_StubState(),
            engine=ledger.engine,
            salt=ledger.settings.contact_salt_bytes,
            default_region="US",
            lists=ledger.lists,
        )
    else:
        _link_and_grant(ledger)
    for p in PHONES[:5]:
        contacts.parse_phone(p, default_region="US")  # phonenumbers loads its metadata lazily
    # A text to a New York number is lawful from 8:00 to 21:00 there (47 U.S.C. 227, FCC 03-153):
    # run the clock from the next 16:00 UTC, so that a run at night measures allows too.
    lag = _next_utc_hour(16) - time.time()
    checker.clock = lambda: time.time() + lag
    refused: dict[str, int] = {}
    start = time.perf_counter()
    for i in range(checks):
        result = checker.check(
            company_id=1, contact=PHONES[i % len(PHONES)], channel=Channel.SMS, record=True
        )
        if not result.decision.allowed:
            key = " ".join(result.decision.codes)
            refused[key] = refused.get(key, 0) + 1
    rate = checks / (time.perf_counter() - start)
    ledger.engine.dispose()
    if refused:
        raise AssertionError(f"the benchmark measured refusals, not allows: {refused}")
    return rate


def _next_utc_hour(hour: int) -> float:
    now = time.time()
    today = now - now % 86400
    at = today + hour * 3600
    return at if at > now else at + 86400


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checks", type=int, default=5_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ql-bench-checks-") as tmp:
        directory = Path(tmp)
        real = bench_check_and_record(directory / "index", args.checks, stub=False)
        alone = bench_check_and_record(directory / "stub", args.checks, stub=True)
    common = f"{args.checks:,} allowed checks of 1,000 US numbers, one thread, SQLite WAL"
    record(
        Figure(
            "check-and-record on SQLite (Checker, event index)",
            real,
            "/s",
            goal=5_000,
            note=f"{common}; state from IndexedState on the in-process eth-tester chain (each "
            "number linked to its own consumer with an SMS grant): checkpoint, company, link, "
            "grant and consumer read, window counted, entry appended",
        ),
        Figure(
            "check-and-record on SQLite (Checker, stub state)",
            alone,
            "/s",
            goal=5_000,
            note=f"{common}; ledger state from an in-benchmark stub: parse, count, decide, "
            "append (the usage log's share of the real path)",
        ),
    )


if __name__ == "__main__":
    main()
