"""Anchoring as an operator runs it: `quota-ledger up` anchors in the background, receipts carry
proofs a company checks against the chain itself, and `quota-ledger anchor` anchors the rest."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ledger.audit import merkle
from ledger.chain.anvil import DEMO_ACCOUNTS, anvil_binary
from ledger.chain.client import Chain
from ledger.settings import DEV_OPERATOR_KEY
from tests.helpers import PHONE
from tests.stack import Stack

CONSUMER, CONSUMER_KEY = DEMO_ACCOUNTS[0]

try:
    anvil_binary()
except Exception as exc:  # pragma: no cover - only without `npm ci`
    pytest.skip(f"anvil not installed: {exc}", allow_module_level=True)

pytestmark = pytest.mark.anvil


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    # Every second entry is anchored by `up`; time never triggers, so the third waits.
    s = Stack(tmp_path, env={"QL_ANCHOR_EVERY_ENTRIES": "2", "QL_ANCHOR_EVERY_SECONDS": "0"})
    s.start()
    yield s
    s.stop()


def test_up_anchors_and_a_receipt_proves_its_contact_against_the_chain(
    stack: Stack, tmp_path: Path
) -> None:
    stack.register_company()
    stack.cli("link", PHONE, CONSUMER)
    notice = tmp_path / "notice.txt"
    notice.write_text("Acme SMS texts you offers about its own products.\n")
    wallet_args = ["--key", CONSUMER_KEY, "--company", "1", "--channel", "sms", "--api", stack.url]
    stack.cli("wallet", "grant", *wallet_args, "--max", "4", "--notice", str(notice))
    seqs = [stack.check()["receipt"]["seq"] for _ in range(2)]  # type: ignore[index]

    auth = {"Authorization": f"Bearer {stack.api_key}"}
    with httpx.Client(base_url=stack.url, headers=auth, timeout=30) as api:
        # The company reads the chain itself: the node and the contract the API names.
        contract = api.get("/v1/ledger").json()["domain"]["verifying_contract"]
        chain = Chain.connect(
            f"http://127.0.0.1:{stack.env['QL_ANVIL_PORT']}", operator_key=DEV_OPERATOR_KEY
        )
        chain.use(contract)

        deadline = time.monotonic() + 30
        while (body := api.get(f"/v1/receipts/{seqs[1]}").json())["proof"] is None:
            assert time.monotonic() < deadline, "the second entry was never anchored"
            time.sleep(0.2)
        proof = body["proof"]
        root, size, _ = chain.anchor(1, block=proof["anchor_block"])
        assert size == proof["tree_size"] >= seqs[1]
        path = [bytes.fromhex(h) for h in proof["inclusion"]]
        merkle.verify_inclusion(bytes.fromhex(body["leaf_hash"]), seqs[1] - 1, size, path, root)
        seqs.append(stack.check()["receipt"]["seq"])  # type: ignore[index]
        time.sleep(2)  # rounds of the anchorer: one entry of the two it waits for
        assert api.get(f"/v1/receipts/{seqs[2]}").json()["proof"] is None
        assert seqs == [1, 2, 3] and chain.anchor(1)[1] == 2

        # The operator anchors the rest now.
        out = stack.cli("anchor")
        assert f"usage log 1 anchored: tree size {seqs[2]}" in out
        assert "nothing new to anchor" in stack.cli("anchor")
        root, size, _ = chain.anchor(1)
        assert size == seqs[2]
        deadline = time.monotonic() + 30
        while (body := api.get(f"/v1/receipts/{seqs[2]}").json())["proof"] is None:
            assert time.monotonic() < deadline, "the index never saw the command's anchor"
            time.sleep(0.2)
        path = [bytes.fromhex(h) for h in body["proof"]["inclusion"]]
        merkle.verify_inclusion(bytes.fromhex(body["leaf_hash"]), seqs[2] - 1, size, path, root)
