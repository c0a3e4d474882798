"""A seeded product for the HTTP benchmarks: real processes, a company and its key, consumers.

``seeded_stack`` starts ``quota-ledger up`` (anvil + API, access log as shipped, the rate limit
raised so that it never answers 429 to the load generator), registers company 1 with an API
key, and links ``consumers`` French mobile numbers each to its own consumer who granted
company 1 an SMS quota. Consumer 0 gets a small quota, so that a recording run exhausts it and
a benchmark can check that quotas stayed exact. On PostgreSQL it runs on a database of its own
(created, then dropped) and adds ``quota-ledger serve --workers N`` on the same node and
database: the load then goes there.

The batch, scrub and scale benchmarks plug in here::

    with seeded_stack(Path(tmp), consumers=1_000) as seeded:
        httpx.post(f"{seeded.url}/v1/checks", json=..., headers=seeded.headers)
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from eth_utils.crypto import keccak
from sqlalchemy import create_engine, text

from ledger.chain.client import Chain
from ledger.consent import messages
from ledger.domain import contacts
from ledger.domain.channels import Channel
from ledger.domain.grants import GrantTerms
from ledger.settings import Settings
from tests.servers import postgres_database
from tests.stack import CLI, Stack

RATE_LIMIT = str(10**9)  # per key and minute: the benchmark measures checks, not 429s
QUOTA = 1_000_000  # what no run uses up: recorded checks stay allowed
PERIOD = 30 * 86400
EXHAUSTED_QUOTA = 3
_BATCH = 25  # consumers per multicall (two calls each), well under a block's gas


@dataclass(frozen=True)
class Seeded:
    """A running, seeded product."""

    # Where the load goes: up's API, or the `serve` processes' (one URL with `--workers`).
    urls: list[str]
    api_key: str
    contacts: list[str]  # linked numbers; contacts[0] belongs to the consumer with the small quota
    exhausted_consumer: str  # address of that consumer
    exhausted_quota: int
    database_url: str
    up: Stack

    @property
    def url(self) -> str:
        return self.urls[0]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def allowed_entries(self, consumer: str) -> int:
        """Allowed entries in the usage log for ``consumer`` (company 1, SMS), read directly."""
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                count = connection.execute(
                    text(
                        "SELECT count(*) FROM usage_entry WHERE lower(consumer) = :consumer "
                        "AND company_id = 1 AND channel = :channel AND decision = 'allowed'"
                    ),
                    {"consumer": consumer.lower(), "channel": int(Channel.SMS)},
                ).scalar_one()
        finally:
            engine.dispose()
        return int(count)


def phone(i: int) -> str:
    # French mobiles: SMS under consent has no statutory hours there (US SMS has), so the
    # benchmark's answers do not depend on the hour it runs at.
    return f"+33 6 12 {i // 10_000:02d} {i // 100 % 100:02d} {i % 100:02d}"


@contextmanager
def seeded_stack(
    directory: Path, *, consumers: int, postgres: bool = False, workers: int = 1
) -> Iterator[Seeded]:
    """Starts and seeds the product in ``directory``; stops it (and drops its database) after.

    Args:
        consumers: linked numbers, each with its own consumer and SMS grant.
        postgres: on a fresh PostgreSQL database instead of up's SQLite file.
        workers: API processes answering the load (> 1: `serve --workers` beside `up`).
    """
    if not 1 <= consumers <= 1_000_000:
        raise ValueError("consumers: 1 to 1,000,000")
    with ExitStack() as stack:
        env = {"QL_RATE_LIMIT_PER_MINUTE": RATE_LIMIT}
        (directory / "up").mkdir(parents=True)
        database_url = f"sqlite:///{(directory / 'up' / 'ledger.sqlite3').resolve()}"
        if postgres:
            # The tests' server (QL_TEST_POSTGRES_URL); unreachable, it skips, or fails when
            # QL_REQUIRE_POSTGRES is set (pytest's outcome exceptions, raised here too).
            database_url = stack.enter_context(contextmanager(postgres_database)())
            env["QL_DATABASE_URL"] = database_url
        started = time.monotonic()
        up = Stack(directory / "up", env=env)
        stack.callback(up.stop)
        up.start()
        up.register_company()
        _say(f"up started, company registered: {time.monotonic() - started:.0f} s")
        anvil = f"http://127.0.0.1:{up.env['QL_ANVIL_PORT']}"
        address = _contract_address(up)
        numbers = [phone(i) for i in range(consumers)]
        exhausted = _link_and_grant(anvil, address, numbers)
        _wait_until_indexed(up.url, up.api_key, numbers[-1])
        _say(
            f"{consumers:,} consumers linked, granted, indexed: {time.monotonic() - started:.0f} s"
        )
        urls = [up.url]
        if workers > 1 or postgres:
            serve_env = {
                **env,
                "QL_CHAIN": "rpc",
                "QL_RPC_URL": anvil,
                "QL_CONTRACT_ADDRESS": address,
                "QL_DATABASE_URL": database_url,
            }
            urls = []
            for serve in _serves(directory, workers, serve_env):
                stack.callback(serve.stop)
                # Each worker imports web3 and opens its ledger: minutes on a loaded machine.
                serve.start(timeout=300)
                wait_for_workers(serve.log, workers if serve.args else 1, 300)
                _wait_until_indexed(serve.url, up.api_key, numbers[-1])
                urls.append(serve.url)
            _say(f"serve ready ({workers} processes): {time.monotonic() - started:.0f} s")
        yield Seeded(
            urls=urls,
            api_key=up.api_key,
            contacts=numbers,
            exhausted_consumer=exhausted,
            exhausted_quota=EXHAUSTED_QUOTA,
            database_url=database_url,
            up=up,
        )


def _serves(directory: Path, workers: int, env: dict[str, str]) -> list[Stack]:
    """``serve --workers N`` on one port; before that option existed, N ``serve`` processes
    on N ports (the load generator then spreads its connections over them)."""
    options = subprocess.run([*CLI, "serve", "--help"], capture_output=True, text=True).stdout
    if "--workers" in options:
        (directory / "serve").mkdir()
        return [
            Stack(directory / "serve", command="serve", env=env, args=("--workers", str(workers)))
        ]
    for i in range(workers):
        (directory / f"serve{i}").mkdir()
    return [Stack(directory / f"serve{i}", command="serve", env=env) for i in range(workers)]


def _say(message: str) -> None:
    print(f"seeded stack: {message}", file=sys.stderr, flush=True)


def wait_for_workers(log: Path, workers: int, timeout: float) -> None:
    """Until each of uvicorn's ``workers`` has logged its startup to ``log``: the port answers
    with the first, and a worker still importing while the load runs would leave the figure to
    its siblings."""
    deadline = time.monotonic() + timeout
    while log.read_text().count("Application startup complete") < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"not every worker started:\n{log.read_text()}")
        time.sleep(0.5)


def _contract_address(up: Stack) -> str:
    """The address `up` announces when it starts."""
    found = re.search(r"ledger contract (0x[0-9a-fA-F]{40})", up.log.read_text())
    if found is None:
        raise RuntimeError(f"up did not announce its contract:\n{up.log.read_text()}")
    return found.group(1)


def _link_and_grant(rpc_url: str, address: str, numbers: list[str]) -> str:
    """Links each number to its own consumer, who grants company 1 SMS, in multicall batches
    sent by the operator straight to the node (one transaction per batch, not two per number).

    Returns:
        The address of consumer 0, whose grant has the small quota.
    """
    settings = Settings()
    chain = Chain.connect(rpc_url, operator_key=settings.operator_private_key, timeout=60)
    chain.use(address)
    contract, salt, domain = chain.contract, settings.contact_salt_bytes, chain.domain
    deadline = int(time.time()) + 3600
    calls: list[bytes] = []
    first = ""
    for i, number in enumerate(numbers):
        consumer = Account.from_key(keccak(text=f"bench http consumer {i}"))
        first = first or consumer.address
        quota = EXHAUSTED_QUOTA if i == 0 else QUOTA
        terms = GrantTerms(company_id=1, channel=Channel.SMS, max_contacts=quota, period=PERIOD)
        commitment = contacts.commitment(contacts.parse_contact(number, default_region="FR"), salt)
        # A new consumer's first grant: version 0, epoch 0.
        message = messages.set_grant(consumer.address, terms, version=0, epoch=0, deadline=deadline)
        signature = messages.sign(message.typed_data(domain), consumer.key)
        for method, args in (
            ("attestLink", [consumer.address, commitment]),
            ("setGrantBySig", list(message.call_args(signature))),
        ):
            calls.append(bytes.fromhex(contract.encode_abi(method, args=args)[2:]))
    w3, operator = chain.w3, chain.operator
    nonce, price = int(w3.eth.get_transaction_count(operator.address)), w3.eth.gas_price
    sent = []
    for start in range(0, len(calls), 2 * _BATCH):
        tx = {
            "to": chain.address,
            "data": contract.encode_abi("multicall", args=[calls[start : start + 2 * _BATCH]]),
            "gas": 15_000_000,
            "gasPrice": price,
            "nonce": nonce,
            "chainId": chain.chain_id,
        }
        sent.append(w3.eth.send_raw_transaction(operator.sign_transaction(tx).raw_transaction))
        nonce += 1
    for tx_hash in sent:
        if w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)["status"] != 1:
            raise RuntimeError("a link-and-grant batch reverted")
    return first


def _wait_until_indexed(url: str, api_key: str, number: str, timeout: float = 60) -> None:
    """Until the API allows the last seeded number: the index has caught up with the seeding."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = httpx.post(
            f"{url}/v1/checks",
            json={"contact": number, "channel": "sms", "record": False},
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=30,
        )
        body = response.json()
        if response.status_code == 200 and body["allowed"]:
            return
        time.sleep(0.2)
    raise RuntimeError(f"the seeded grants were not indexed in {timeout:g} s: {body}")
