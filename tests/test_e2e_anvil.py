"""End to end as a user runs it: `quota-ledger up` with a real anvil node, the CLI, the HTTP API.

Also what happens across restarts: a clean one, a hard kill, and a node that lost blocks.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ledger.chain.anvil import DEMO_ACCOUNTS, anvil_binary
from ledger.consent import messages, wallet
from tests.helpers import NOTICE, PHONE
from tests.stack import Stack

CONSUMER, CONSUMER_KEY = DEMO_ACCOUNTS[0]

try:
    anvil_binary()
except Exception as exc:  # pragma: no cover - only without `npm ci`
    pytest.skip(f"anvil not installed: {exc}", allow_module_level=True)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path)
    s.start()
    yield s
    s.stop()


def codes(body: dict[str, object]) -> list[str]:
    return [r["code"] for r in body["reasons"]]  # type: ignore[attr-defined, index]


def test_grant_check_record_until_spent_then_revoke(stack: Stack, tmp_path: Path) -> None:
    """The README's quick start, through the installed CLI wallet."""
    stack.register_company()
    stack.cli("link", PHONE, CONSUMER)
    assert codes(stack.check()) == ["no_grant", "consent_required"]

    notice = tmp_path / "notice.txt"
    notice.write_text("Acme SMS texts you offers about its own products.\n")
    wallet_args = ["--key", CONSUMER_KEY, "--company", "1", "--channel", "sms", "--api", stack.url]
    stack.cli("wallet", "grant", *wallet_args, "--max", "4", "--notice", str(notice))
    answers = [stack.check() for _ in range(5)]
    assert [a["allowed"] for a in answers] == [True, True, True, True, False]
    assert codes(answers[4]) == ["quota_exhausted"]
    assert "quota of 4 sms per 365 days" in answers[4]["reasons"][0]["message"]  # type: ignore[index]

    stack.cli("wallet", "revoke", *wallet_args)
    assert codes(stack.check()) == ["revoked"]


def test_a_signature_held_back_over_a_revoke_all_stays_void(stack: Stack) -> None:
    """Someone holding a signed grant cannot bring consent back after the consumer revoked all."""
    stack.register_company()
    stack.cli("link", PHONE, CONSUMER)
    with httpx.Client(base_url=stack.url, timeout=30) as api:
        draft = {
            "consumer": CONSUMER,
            "company_id": 1,
            "channel": "sms",
            "max_contacts": 4,
            "period": 365 * 86400,
            "notice_hash": NOTICE,
            "deadline": int(time.time()) + 3600,
        }
        prepared = api.post("/v1/grants/typed-data", json=draft).json()
        held = {
            **draft,
            "version": prepared["version"],
            "epoch": prepared["epoch"],
            "signature": "0x" + messages.sign(prepared["typed_data"], CONSUMER_KEY).hex(),
        }
        state = api.get(f"/v1/consumers/{CONSUMER}/nonce").json()
        revoke_all = messages.revoke_all(
            CONSUMER, nonce=state["nonce"], epoch=state["epoch"], deadline=draft["deadline"]
        )
        signature = messages.sign(
            revoke_all.typed_data(messages.Domain(**api.get("/v1/ledger").json()["domain"])),
            CONSUMER_KEY,
        )
        body = {**state, "deadline": revoke_all.deadline, "signature": "0x" + signature.hex()}
        assert api.post("/v1/revocations/all", json=body).status_code == 201

        late = api.post("/v1/grants", json=held)
        assert late.status_code == 409, late.text
        assert late.json()["type"].endswith("stale_epoch")
        assert stack.check()["allowed"] is False


def test_grants_survive_a_clean_restart_and_a_hard_kill(stack: Stack) -> None:
    stack.register_company()
    stack.cli("link", PHONE, CONSUMER)
    wallet.Wallet(stack.url, CONSUMER_KEY).grant(
        company_id=1, channel="sms", max_contacts=2, period=365 * 86400, notice_hash=NOTICE
    )
    assert stack.check()["allowed"]

    stack.stop(signal.SIGTERM)
    stack.start()
    assert stack.check()["allowed"]  # the grant and the usage count survived
    assert codes(stack.check()) == ["quota_exhausted"]

    time.sleep(2.5)  # beyond the 1 s state interval: everything is on disk
    stack.stop(signal.SIGKILL)
    stack.start()
    assert codes(stack.check()) == ["quota_exhausted"]


def test_blocks_lost_by_the_node_are_noticed_and_replayed(tmp_path: Path) -> None:
    # A long state interval: a hard kill loses every block since the last clean stop.
    stack = Stack(tmp_path, state_interval=3600)
    stack.start()
    try:
        stack.register_company()
        stack.cli("link", PHONE, CONSUMER)
        stack.stop(signal.SIGTERM)
        stack.start()
        wallet.Wallet(stack.url, CONSUMER_KEY).grant(
            company_id=1, channel="sms", max_contacts=4, period=365 * 86400, notice_hash=NOTICE
        )
        assert stack.check()["allowed"]
        stack.stop(signal.SIGKILL)  # the grant's block is not in the state file

        stack.start()
        assert "operator transactions replayed" in stack.log.read_text()
        body = stack.check()
        assert body["allowed"], body  # the journaled grant was sent again
        assert body["grant_version"] == 1
    finally:
        stack.stop()
