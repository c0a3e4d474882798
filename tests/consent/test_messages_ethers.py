"""Our EIP-712 messages are byte-identical to what ethers.js v6 ``signTypedData`` produces.

A wallet (MetaMask, the web wallet page) signs the typed data this project builds; if its
encoding differed from ours in any field, the contract would refuse the signature. Node runs
ethers on the very documents ``ledger.messages`` builds and returns the EIP-712 digest and the
signature of each, which must equal ours byte for byte (RFC 6979 signatures are deterministic).
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak

from ledger.consent import messages
from ledger.domain.channels import Channel
from ledger.domain.grants import ALL_DAYS, ALL_HOURS, OPEN_ENDED, GrantTerms

ROOT = Path(__file__).resolve().parents[2]
ETHERS = ROOT / "node_modules" / "ethers"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not ETHERS.exists(), reason="node and `npm ci` needed"
)

SCRIPT = """
const { TypedDataEncoder, Wallet } = require("ethers");
let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", async () => {
  const out = [];
  for (const { document, key } of JSON.parse(input)) {
    const types = { ...document.types };
    delete types.EIP712Domain; // ethers derives the domain type from the domain's fields
    const digest = TypedDataEncoder.hash(document.domain, types, document.message);
    const signature = await new Wallet(key).signTypedData(document.domain, types, document.message);
    out.push({ digest, signature });
  }
  process.stdout.write(JSON.stringify(out));
});
"""

UINT32 = (1 << 32) - 1


def documents(rng: random.Random) -> list[dict[str, Any]]:
    """Every message type, with edge values and random ones, under random deployments."""
    found: list[dict[str, Any]] = []
    for i in range(12):
        domain = messages.Domain(
            chain_id=rng.choice([1, 31337, 11155111, (1 << 64) - 1, rng.randrange(1, 1 << 255)]),
            verifying_contract="0x" + rng.randbytes(20).hex(),
        )
        consumer = Account.create().address
        edge = i % 3 == 0
        terms = GrantTerms(
            company_id=(1 << 63) - 1 if edge else rng.randrange(1, 1 << 63),
            channel=Channel(rng.randrange(4)),
            max_contacts=UINT32 if edge else rng.randrange(1, UINT32),
            period=UINT32 if edge else rng.randrange(1, UINT32),
            valid_from=rng.randrange(0, 1 << 39),
            valid_until=OPEN_ENDED,
            hours_mask=ALL_HOURS if edge else rng.randrange(1, ALL_HOURS),
            days_mask=ALL_DAYS if edge else rng.randrange(1, ALL_DAYS),
            notice_hash=rng.randbytes(32),
        )
        deadline = (1 << 256) - 1 if edge else rng.randrange(0, 1 << 40)
        version = UINT32 if edge else rng.randrange(0, 1000)
        nonce = (1 << 256) - 1 if edge else rng.randrange(0, 1 << 64)
        epoch = UINT32 if edge else rng.randrange(0, 1000)
        found += [
            messages.set_grant(
                consumer, terms, version=version, epoch=epoch, deadline=deadline
            ).typed_data(domain),
            messages.revoke_grant(
                consumer,
                company_id=terms.company_id,
                channel=int(terms.channel),
                version=version,
                epoch=epoch,
                deadline=deadline,
            ).typed_data(domain),
            messages.revoke_all(consumer, nonce=nonce, epoch=epoch, deadline=deadline).typed_data(
                domain
            ),
            messages.set_global_cap(
                consumer,
                max_contacts=0 if edge else rng.randrange(1, UINT32),
                period=0 if edge else rng.randrange(1, UINT32),
                nonce=nonce,
                epoch=epoch,
                deadline=deadline,
            ).typed_data(domain),
            messages.unlink(
                consumer, commitment=rng.randbytes(32), nonce=nonce, epoch=epoch, deadline=deadline
            ).typed_data(domain),
        ]
    return found


def as_json(value: Any) -> Any:
    """Integers as decimal strings: JSON numbers lose precision past 2**53 in JavaScript."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_json(v) for v in value]
    return value


def test_ethers_signs_every_message_type_exactly_as_we_do(tmp_path: Path) -> None:
    rng = random.Random(20260811)
    docs = documents(rng)
    assert {d["primaryType"] for d in docs} == set(messages.TYPES)
    keys = ["0x" + rng.randbytes(32).hex() for _ in docs]
    script = tmp_path / "sign.js"
    script.write_text(SCRIPT)
    payload = [{"document": as_json(d), "key": k} for d, k in zip(docs, keys, strict=True)]
    done = subprocess.run(
        ["node", str(script)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        cwd=ROOT,  # so that require("ethers") finds node_modules
        env={
            "NODE_PATH": str(ROOT / "node_modules"),
            "PATH": str(Path(shutil.which("node") or "").parent),
        },
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    theirs = json.loads(done.stdout)
    for doc, key, answer in zip(docs, keys, theirs, strict=True):
        signable = encode_typed_data(full_message=doc)
        digest = keccak(b"\x19" + signable.version + signable.header + signable.body)
        assert answer["digest"] == "0x" + digest.hex(), doc["primaryType"]
        assert answer["signature"] == "0x" + messages.sign(doc, key).hex(), doc["primaryType"]
        assert (
            messages.recover(doc, bytes.fromhex(answer["signature"][2:]))
            == Account.from_key(key).address
        )
