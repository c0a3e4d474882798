"""Receipts with inclusion proofs and anchors with consistency proofs, over a real anvil node.

Every proof the API serves is checked the way an auditor would: with ``ledger.audit.merkle``
against the roots read from the chain, never against what the API says the root is.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import combinations_with_replacement
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response

from api.main import create_app
from ledger.audit import merkle
from ledger.audit.anchorer import anchor_once
from ledger.audit.anchors import anchors_from_chain
from ledger.chain.anvil import AnvilNode, anvil_binary
from ledger.runtime import Ledger
from ledger.services import apikeys
from ledger.services.apikeys import Role
from tests.audit.anchoring import append, leaves, open_ledger
from tests.servers import postgres_url

try:
    anvil_binary()
except Exception as exc:  # pragma: no cover - only without `npm ci`
    pytest.skip(f"anvil not installed: {exc}", allow_module_level=True)

pytestmark = pytest.mark.anvil


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path, node: AnvilNode) -> Iterator[Ledger]:
    """A ledger on the node over SQLite and, when reachable, PostgreSQL (else skipped)."""
    urls = iter([None]) if request.param == "sqlite" else postgres_url()
    for url in urls:
        opened = open_ledger(tmp_path, node.url, database_url=url)
        yield opened
        opened.engine.dispose()


@pytest.fixture
def client(ledger: Ledger) -> Iterator[TestClient]:
    with TestClient(create_app(ledger)) as test_client:
        yield test_client


def auth(ledger: Ledger, role: Role, company_id: int | None = None) -> dict[str, str]:
    token, _ = apikeys.create_key(ledger.engine, role=role, company_id=company_id)
    return {"Authorization": f"Bearer {token}"}


def anchor_at(ledger: Ledger, size: int) -> None:
    """Grows the log to ``size`` entries, anchors it and lets the index see the anchor."""
    append(ledger, size - len(leaves(ledger)))
    done = anchor_once(ledger.chain, ledger.engine, log_id=1)
    assert done is not None and done.tree_size == size
    ledger.indexer.sync()


def proof_of(body: dict[str, Any]) -> list[bytes]:
    return [bytes.fromhex(h) for h in body["inclusion"]]


def assert_problem(response: Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/" + code)


def test_a_receipt_proves_its_entry_against_the_root_on_chain(
    ledger: Ledger, client: TestClient
) -> None:
    mine = auth(ledger, Role.COMPANY, 1)
    append(ledger, 3)
    append(ledger, 2, company_id=2)  # seqs 4 and 5 are another company's
    append(ledger, 2)
    first = client.get("/v1/receipts/1", headers=mine).json()
    assert first["proof"] is None  # nothing anchored yet
    assert first["leaf_hash"] == first["entry_hash"] == leaves(ledger)[0].hex()

    anchor_at(ledger, 7)
    older_block = ledger.chain.head().number
    anchor_at(ledger, 300)  # past a stored subtree of 256 entries
    root_on_chain, size_on_chain, _ = ledger.chain.anchor(1)
    for seq in (1, 2, 3, 6, 7, 100, 257, 300):
        body = client.get(f"/v1/receipts/{seq}", headers=mine).json()
        proof = body["proof"]
        assert proof["tree_size"] == size_on_chain == 300
        leaf = bytes.fromhex(body["leaf_hash"])
        merkle.verify_inclusion(leaf, seq - 1, 300, proof_of(proof), root_on_chain)
        # The same path does not prove another entry: the check above can fail.
        with pytest.raises(merkle.ProofError):
            other = leaves(ledger)[seq % 300]
            merkle.verify_inclusion(other, seq - 1, 300, proof_of(proof), root_on_chain)

    # Against the older anchor, whose root the chain gives at the block that anchored it.
    body = client.get("/v1/receipts/6?tree_size=7", headers=mine).json()
    proof = body["proof"]
    assert (proof["tree_size"], proof["anchor_block"]) == (7, older_block)
    old_root, old_size, _ = ledger.chain.anchor(1, block=older_block)
    assert old_size == 7
    merkle.verify_inclusion(bytes.fromhex(body["leaf_hash"]), 5, 7, proof_of(proof), old_root)


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/receipts/4", 404, "not_found"),  # another company's entry
        ("/v1/receipts/9", 404, "not_found"),  # no such entry
        ("/v1/receipts/1?tree_size=5", 404, "unknown_anchor"),  # never anchored at 5
        ("/v1/receipts/8?tree_size=7", 422, "entry_not_covered"),  # anchored before entry 8
        ("/v1/receipts/1?tree_size=0", 422, "validation"),
        ("/v1/receipts/1?tree_size=x", 422, "validation"),
        ("/v1/receipts/0", 422, "validation"),
    ],
)
def test_a_receipt_asked_against_a_wrong_anchor_is_a_problem(
    ledger: Ledger, client: TestClient, path: str, status: int, code: str
) -> None:
    append(ledger, 3)
    append(ledger, 1, company_id=2)
    anchor_at(ledger, 7)
    append(ledger, 1)
    assert_problem(client.get(path, headers=auth(ledger, Role.COMPANY, 1)), status, code)


def test_consistency_proofs_between_every_pair_of_anchors_verify(
    ledger: Ledger, client: TestClient
) -> None:
    sizes = [1, 2, 3, 4, 7, 8, 256, 257, 600]
    for size in sizes:
        anchor_at(ledger, size)
    regulator = auth(ledger, Role.REGULATOR)
    listed = client.get("/v1/anchors", headers=regulator).json()
    on_chain = {a.tree_size: a for a in anchors_from_chain(ledger.chain, 1)}
    assert [a["tree_size"] for a in listed] == sizes == sorted(on_chain)
    for a in listed:
        chain_anchor = on_chain[a["tree_size"]]
        assert (a["root"], a["block_number"], a["tx_hash"]) == (
            chain_anchor.root.hex(),
            chain_anchor.block_number,
            chain_anchor.tx_hash,
        )
        assert a["anchored_at"] == chain_anchor.anchored_at > 0
    pages = [
        [a["tree_size"] for a in client.get(f"/v1/anchors?{query}", headers=regulator).json()]
        for query in ("limit=4", "after_size=4&limit=4", "after_size=257&limit=4")
    ]
    assert pages == [[1, 2, 3, 4], [7, 8, 256, 257], [600]]

    for size1, size2 in combinations_with_replacement(sizes, 2):
        response = client.get(f"/v1/anchors/{size1}/consistency/{size2}", headers=regulator)
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["first"]["tree_size"], body["second"]["tree_size"]) == (size1, size2)
        proof = [bytes.fromhex(h) for h in body["proof"]]
        root1, root2 = on_chain[size1].root, on_chain[size2].root
        merkle.verify_consistency(size1, size2, proof, root1, root2)
        if size1 < size2:
            with pytest.raises(merkle.ProofError):  # not a proof of another pair of roots
                merkle.verify_consistency(size1, size2, proof, root2, root1)


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/anchors/7/consistency/3", 422, "invalid_input"),  # out of order
        ("/v1/anchors/5/consistency/7", 404, "unknown_anchor"),
        ("/v1/anchors/3/consistency/8", 404, "unknown_anchor"),
        ("/v1/anchors/0/consistency/7", 422, "validation"),
        ("/v1/anchors/x/consistency/7", 422, "validation"),
        (f"/v1/anchors/3/consistency/{1 << 63}", 422, "validation"),
    ],
)
def test_bad_or_unknown_anchor_sizes_are_problems(
    ledger: Ledger, client: TestClient, path: str, status: int, code: str
) -> None:
    anchor_at(ledger, 3)
    anchor_at(ledger, 7)
    assert_problem(client.get(path, headers=auth(ledger, Role.REGULATOR)), status, code)


@pytest.mark.parametrize(
    ("role", "status"),
    [(Role.REGULATOR, 200), (Role.COMPANY, 200), (Role.OPERATOR, 403), (None, 401)],
)
def test_regulators_and_companies_read_the_anchors(
    ledger: Ledger, client: TestClient, role: Role | None, status: int
) -> None:
    anchor_at(ledger, 2)
    headers = {} if role is None else auth(ledger, role, 1 if role is Role.COMPANY else None)
    for path in ("/v1/anchors", "/v1/anchors/2/consistency/2"):
        assert client.get(path, headers=headers).status_code == status


def test_a_log_behind_its_anchor_is_a_conflict_not_an_error(
    ledger: Ledger, client: TestClient
) -> None:
    append(ledger, 5)
    # An anchor the log cannot back: it lost its tail since, or was replaced.
    ledger.chain.transact(ledger.chain.contract.functions.anchorRoot(1, 50, b"\x11" * 32))
    ledger.indexer.sync()
    receipt = client.get("/v1/receipts/1", headers=auth(ledger, Role.COMPANY, 1))
    assert_problem(receipt, 409, "log_behind_anchor")
    consistency = client.get("/v1/anchors/50/consistency/50", headers=auth(ledger, Role.REGULATOR))
    assert_problem(consistency, 409, "log_behind_anchor")
