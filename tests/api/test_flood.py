"""A flood of anonymous requests from many addresses and fresh wallets leaves the database and
the operator's balance bounded by the settings, whatever the flood does."""

from __future__ import annotations

import secrets
import time
from collections import Counter
from contextlib import ExitStack
from typing import Any

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct
from fastapi.testclient import TestClient
from sqlalchemy import MetaData, func, select

from api.main import create_app
from ledger.consent import wallet
from ledger.runtime import Ledger
from tests.helpers import NOTICE

REQUESTS = 2_000
ADDRESSES = 40  # client addresses the flood comes from
NONCES_KEPT = 150
RELAY_GAS = 1_000_000  # the operator's daily gas for every consumer's grants and caps
WITHDRAWAL_GAS = 300_000  # ... and for every withdrawal
# A budget is checked before a relay and charged after: it may be overshot by one transaction
# (sequential requests). Every transaction costs at least the intrinsic 21,000 gas.
MAX_TX_GAS = 150_000
INTRINSIC_GAS = 21_000
ROWS_PER_TX = 8  # what one relayed message may add: journal, index rows, events


def table_rows(ledger: Ledger) -> dict[str, int]:
    metadata = MetaData()
    metadata.reflect(ledger.engine)
    with ledger.engine.connect() as conn:
        return {
            name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
            for name, table in metadata.tables.items()
        }


def operator_spend(ledger: Ledger, after_block: int) -> tuple[int, int, int]:
    """(transactions, gas used, highest gas price paid) of the operator after a block."""
    w3, operator = ledger.chain.w3, ledger.chain.operator.address
    txs = gas = price = 0
    for number in range(after_block + 1, w3.eth.block_number + 1):
        for tx_hash in w3.eth.get_block(number)["transactions"]:
            assert isinstance(tx_hash, bytes)
            receipt = w3.eth.get_transaction_receipt(tx_hash)
            if receipt["from"] == operator:
                txs += 1
                gas += int(receipt["gasUsed"])
                price = max(price, int(receipt["effectiveGasPrice"]))
    return txs, gas, price


def sign_in_attempt(account: Any) -> dict[str, str]:
    text = (
        f"testserver wants you to sign in with your Ethereum account:\n{account.address}\n\n"
        f"Sign in.\n\nURI: http://testserver\nVersion: 1\nChain ID: 31337\n"
        f"Nonce: {secrets.token_hex(8)}\nIssued At: 2026-01-01T00:00:00Z"
    )
    signed = Account.sign_message(encode_defunct(text=text), account.key)
    return {"message": text, "signature": "0x" + bytes(signed.signature).hex()}


def forged(consumer: str, **fields: object) -> dict[str, object]:
    return {
        "consumer": consumer,
        "nonce": 0,
        "epoch": 0,
        "deadline": int(time.time()) + 600,
        "signature": "0x" + "11" * 65,
        **fields,
    }


def test_2000_anonymous_requests_leave_rows_and_gas_bounded(ledger: Ledger, company: int) -> None:
    ledger.settings = ledger.settings.model_copy(
        update={
            "sign_in_per_ip_per_minute": 10,
            "relay_per_ip_per_minute": 5,
            "sign_in_max_nonces": NONCES_KEPT,
            "relay_gas_per_day": RELAY_GAS,
            "withdrawal_gas_per_day": WITHDRAWAL_GAS,
        }
    )
    rows_before = table_rows(ledger)
    start_block = ledger.chain.w3.eth.block_number
    balance_before = ledger.chain.w3.eth.get_balance(ledger.chain.operator.address)
    posts: Counter[int] = Counter()
    granted: list[wallet.Wallet] = []
    app = create_app(ledger)

    def count(response: httpx.Response) -> None:
        if response.request.method == "POST":
            posts[response.status_code] += 1

    with ExitStack() as stack:
        clients = []
        for i in range(ADDRESSES):
            client = stack.enter_context(TestClient(app, client=(f"198.51.100.{i + 1}", 50000)))
            client.event_hooks = {"request": [], "response": [count]}
            clients.append(client)
        i = 0
        while posts.total() < REQUESTS:
            client, kind, fresh = clients[i % ADDRESSES], i % 7, Account.create()
            i += 1
            if kind == 0:
                client.post("/v1/auth/nonce")
            elif kind == 1:
                client.post("/v1/auth/token", json=sign_in_attempt(fresh))
            elif kind in (2, 3):  # a fresh wallet's real grant: typed data, then the relay
                try:
                    grantor = wallet.Wallet("", fresh.key.hex(), client=client)
                    grantor.grant(
                        company_id=1,
                        channel="sms",
                        max_contacts=4,
                        period=86400,
                        notice_hash=NOTICE,
                    )
                    granted.append(grantor)
                except wallet.ApiError:
                    pass
            elif kind == 4 and granted:  # a real withdrawal
                try:
                    granted.pop().revoke(company_id=1, channel="sms")
                except wallet.ApiError:
                    pass
            elif kind == 5:
                client.post("/v1/revocations/all", json=forged(fresh.address))
            else:
                client.post(
                    "/v1/global-caps", json=forged(fresh.address, max_contacts=1, period=86400)
                )

    txs, gas, price = operator_spend(ledger, start_block)
    rows_after = table_rows(ledger)
    grown = {name: rows_after[name] - rows_before.get(name, 0) for name in rows_after}
    balance_spent = balance_before - ledger.chain.w3.eth.get_balance(ledger.chain.operator.address)
    print(
        f"\nflood: {posts.total()} POSTs {dict(posts)}; operator txs {txs}, gas {gas}, "
        f"balance spent {balance_spent} wei; rows grown {sum(grown.values())} "
        f"{ {k: v for k, v in grown.items() if v} }"
    )

    gas_bound = RELAY_GAS + WITHDRAWAL_GAS + 2 * MAX_TX_GAS
    assert posts[429] > REQUESTS // 2  # the flood was mostly refused...
    assert txs > 0 and grown["auth_nonce"] > 0  # ...but not wholly: the limits were reached
    assert gas <= gas_bound
    assert balance_spent <= gas_bound * price
    assert grown["auth_nonce"] <= NONCES_KEPT
    others = sum(v for k, v in grown.items() if k != "auth_nonce")
    assert others <= ROWS_PER_TX * txs <= ROWS_PER_TX * (gas_bound // INTRINSIC_GAS)
