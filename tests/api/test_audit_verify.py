"""A regulator's session on a real anvil node: export the log over HTTP, verify the file offline
with `quota-ledger audit verify` against the chain's anchors, verify the live database, and
`GET /v1/audit/verify` answering the same."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.main import create_app
from ledger.audit import merkle
from ledger.chain.anvil import AnvilNode, anvil_binary
from ledger.cli import app
from ledger.runtime import Ledger
from ledger.services import apikeys
from ledger.services.apikeys import Role
from ledger.usage.hashing import GENESIS_HASH, canonical, leaf_hash
from tests.audit.anchoring import append, leaves, open_ledger
from tests.stack import free_port

try:
    anvil_binary()
except Exception as exc:  # pragma: no cover - only without `npm ci`
    pytest.skip(f"anvil not installed: {exc}", allow_module_level=True)

pytestmark = pytest.mark.anvil
runner = CliRunner()


@pytest.fixture
def ledger(tmp_path: Path, node: AnvilNode) -> Iterator[Ledger]:
    # Anchoring only when the test says so.
    opened = open_ledger(tmp_path, node.url, anchor_every_entries=0, anchor_every_seconds=0)
    yield opened
    opened.engine.dispose()


@pytest.fixture
def client(ledger: Ledger) -> Iterator[TestClient]:
    with TestClient(create_app(ledger)) as test_client:
        yield test_client


def auth(ledger: Ledger, role: Role, company_id: int | None = None) -> dict[str, str]:
    token, _ = apikeys.create_key(ledger.engine, role=role, company_id=company_id)
    return {"Authorization": f"Bearer {token}"}


def anchor(ledger: Ledger, size: int, root: bytes | None = None) -> None:
    root = merkle.root(leaves(ledger)[:size]) if root is None else root
    ledger.chain.transact(
        ledger.chain.contract.functions.anchorRoot(ledger.settings.log_id, size, root)
    )
    ledger.indexer.sync()  # the export's anchor lines come from the operator's index


def cli(*args: str, ledger: Ledger | None = None) -> tuple[int, dict[str, Any]]:
    env = {} if ledger is None else {"QL_DATABASE_URL": ledger.settings.sqlalchemy_url}
    done = runner.invoke(app, ["audit", "verify", "--json", *args], env=env)
    return done.exit_code, json.loads(done.stdout.strip().splitlines()[-1])


def exported(client: TestClient, ledger: Ledger, path: Path) -> list[dict[str, Any]]:
    response = client.get("/v1/usage/export", headers=auth(ledger, Role.REGULATOR))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    path.write_bytes(response.content)
    return [json.loads(line) for line in response.text.splitlines()]


def test_every_exported_line_rehashes_and_anchors_follow_their_entry(
    client: TestClient, ledger: Ledger, tmp_path: Path
) -> None:
    append(ledger, 5)
    anchor(ledger, 3)
    lines = exported(client, ledger, tmp_path / "usage.jsonl")
    assert [line["type"] for line in lines] == ["log", *["entry"] * 3, "anchor", *["entry"] * 2]
    assert lines[0] == {
        "type": "log",
        "log_id": ledger.settings.log_id,
        "chain_id": ledger.chain.chain_id,
        "contract": ledger.chain.address,
        "size": 5,
    }
    entries = [line for line in lines if line["type"] == "entry"]
    prev = GENESIS_HASH
    for seq, line in enumerate(entries, start=1):
        fields = dict(line["entry"])
        assert (line["seq"], fields.pop("seq"), fields.pop("prev_hash")) == (seq, seq, prev)
        assert leaf_hash(canonical(fields, seq=seq, prev_hash=prev)) == line["entry_hash"]
        prev = line["entry_hash"]
    assert lines[4]["tree_size"] == 3
    assert lines[4]["root"] == merkle.root(leaves(ledger)[:3]).hex()


def test_an_export_verifies_offline_against_the_chain_and_an_edit_is_named(
    client: TestClient, ledger: Ledger, node: AnvilNode, tmp_path: Path
) -> None:
    append(ledger, 6)
    anchor(ledger, 4)
    path = tmp_path / "usage.jsonl"
    exported(client, ledger, path)
    code, body = cli("--export", str(path), "--rpc-url", node.url)
    assert code == 0, body
    assert (body["ok"], body["size"], body["anchors"], body["source"]) == (True, 6, 1, "export")
    # The regulator's copy edited: the third entry said refused where it said allowed.
    text = path.read_text().splitlines()
    text[3] = text[3].replace('"decision":"allowed"', '"decision":"refused"')
    path.write_text("\n".join(text) + "\n")
    code, body = cli("--export", str(path), "--rpc-url", node.url)
    assert code == 1
    assert (body["problem"]["kind"], body["problem"]["seq"]) == ("edited", 3)


def test_an_export_stating_an_anchor_the_chain_lacks_is_tampered(
    client: TestClient, ledger: Ledger, node: AnvilNode, tmp_path: Path
) -> None:
    append(ledger, 4)
    anchor(ledger, 4)
    path = tmp_path / "usage.jsonl"
    lines = exported(client, ledger, path)
    forged = {**lines[-1], "tree_size": 2, "root": merkle.root(leaves(ledger)[:2]).hex()}
    with path.open("a") as f:
        f.write(json.dumps(forged) + "\n")
    code, body = cli("--export", str(path), "--rpc-url", node.url)
    assert code == 1
    assert (body["problem"]["kind"], body["problem"]["seq"]) == ("anchor_mismatch", 2)


def test_the_live_database_verifies_and_resumes_and_the_endpoint_agrees(
    client: TestClient, ledger: Ledger, node: AnvilNode, tmp_path: Path
) -> None:
    append(ledger, 7)
    anchor(ledger, 5)
    ckpt = str(tmp_path / "audit.ckpt")
    code, body = cli("--rpc-url", node.url, "--checkpoint", ckpt, ledger=ledger)
    assert code == 0 and (body["size"], body["read"], body["anchors"]) == (7, 7, 1), body
    append(ledger, 2)
    code, again = cli("--rpc-url", node.url, "--checkpoint", ckpt, ledger=ledger)
    assert code == 0 and (again["size"], again["read"], again["resumed_from"]) == (9, 2, 7)
    answer = client.get("/v1/audit/verify", headers=auth(ledger, Role.REGULATOR))
    assert answer.status_code == 200
    code, full = cli("--rpc-url", node.url, ledger=ledger)
    assert answer.json() == full
    assert full["root"] == merkle.root(leaves(ledger)).hex()


def test_the_endpoint_names_a_tampering(client: TestClient, ledger: Ledger) -> None:
    append(ledger, 5)
    anchor(ledger, 5)
    with ledger.engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER usage_entry_no_delete")
        conn.exec_driver_sql("DELETE FROM usage_entry WHERE seq = 5")
    body = client.get("/v1/audit/verify", headers=auth(ledger, Role.REGULATOR)).json()
    assert body["ok"] is False
    assert (body["problem"]["kind"], body["problem"]["seq"]) == ("truncated", 5)


def test_only_a_regulator_may_verify(client: TestClient, ledger: Ledger) -> None:
    ledger.relayer.register_company(1, "Acme", ledger.chain.operator.address)
    company = auth(ledger, Role.COMPANY, 1)
    assert client.get("/v1/audit/verify", headers=company).status_code == 403
    assert client.get("/v1/audit/verify").status_code == 401


def test_an_unreachable_node_cannot_verify(ledger: Ledger) -> None:
    code, body = cli("--rpc-url", f"http://127.0.0.1:{free_port()}", ledger=ledger)
    assert code == 2 and body["ok"] is False and body["error"]


def test_a_person_reads_one_line_naming_the_kind_and_the_seq(
    ledger: Ledger, node: AnvilNode
) -> None:
    append(ledger, 4)
    anchor(ledger, 4)
    env = {"QL_DATABASE_URL": ledger.settings.sqlalchemy_url}
    ok = runner.invoke(app, ["audit", "verify", "--rpc-url", node.url], env=env)
    assert ok.exit_code == 0 and "ok: 4 entries verified" in ok.stdout
    with ledger.engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER usage_entry_no_update")
        conn.exec_driver_sql("UPDATE usage_entry SET channel = 2 WHERE seq = 3")
    bad = runner.invoke(app, ["audit", "verify", "--rpc-url", node.url], env=env)
    assert bad.exit_code == 1
    assert "tampered: edited at seq 3" in " ".join(bad.stdout.split())
