"""The bulk seeder of benchmarks: its fast digest, signature and calldata are the product's,
and the grants it seeds are real (the contract verified every signature, the index has them,
checks of the seeded numbers are allowed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_abi.abi import encode

from bench import seed
from bench.bench_scale import open_hour
from ledger.consent import messages
from ledger.domain.channels import Channel
from ledger.runtime import Ledger
from ledger.settings import ChainKind, Settings

DOMAIN = messages.Domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")


@pytest.mark.parametrize("i", [0, 1, 12_345])
@pytest.mark.parametrize("channel", list(Channel))
def test_the_fast_signature_is_a_wallets_signature_of_the_products_message(
    i: int, channel: Channel
) -> None:
    key = seed.consumer_key(i)
    consumer = seed.address_of(key)
    message = messages.set_grant(
        consumer, seed.terms(channel), version=0, epoch=0, deadline=2_000_000_000
    )
    document = message.typed_data(DOMAIN)
    signature = seed.sign_digest(seed.digest(message, seed.domain_separator(DOMAIN)), key)
    assert messages.recover(document, signature).lower() == consumer
    assert signature == messages.sign(document, key)  # both RFC 6979, low s


def test_the_packed_calldata_is_the_abi_encoding() -> None:
    key = seed.consumer_key(7)
    message = messages.set_grant(
        seed.address_of(key), seed.terms(Channel.SMS), version=3, epoch=2, deadline=2**40
    )
    signature = seed.sign_digest(seed.digest(message, seed.domain_separator(DOMAIN)), key)
    types = ["address", seed._TERMS, "uint32", "uint32", "uint256", "bytes"]
    abi = seed._SET_GRANT_BY_SIG + encode(types, list(message.call_args(signature)))
    assert seed.set_grant_call(message, signature) == abi


def test_seeded_grants_are_on_chain_indexed_and_allow_checks(tmp_path: Path) -> None:
    settings = Settings(
        chain=ChainKind.MEMORY,
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'seed.sqlite3'}",
        default_region="US",
    )
    ledger = Ledger.open(settings, sync_index=False)
    first = seed.seed(ledger, grants=8)
    grown = seed.seed(ledger, grants=22, start=8)  # two more whole consumers, then a partial
    assert (first.grants, first.consumers, grown.grants, grown.consumers) == (8, 2, 14, 4)
    ledger.indexer.sync()

    at = open_hour(ledger.checker)  # raises unless phone(0) is allowed at some hour
    for i in range(6):
        check = ledger.checker.check(
            company_id=seed.COMPANY, contact=seed.phone(i), channel=Channel.SMS, now=at
        )
        assert check.decision.allowed, (i, check.decision.codes)
    unseeded = ledger.checker.check(
        company_id=seed.COMPANY, contact=seed.phone(6), channel=Channel.SMS, now=at
    )
    assert not unseeded.decision.allowed
    # Consumer 5 holds grants 20 and 21 only: SMS and CALL, not EMAIL; on chain and indexed.
    consumer = seed.address_of(seed.consumer_key(5))
    block = ledger.state.head().number
    for channel, active in ((Channel.CALL, True), (Channel.EMAIL, False)):
        assert ledger.chain.grant(consumer, seed.COMPANY, int(channel), "latest").active is active
        assert ledger.state.grant(consumer, seed.COMPANY, int(channel), block).active is active
    ledger.engine.dispose()
