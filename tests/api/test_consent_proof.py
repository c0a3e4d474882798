"""The consent proof a company fetches for a contact (GDPR art. 7(1), UWG § 7a)."""

from __future__ import annotations

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient

from ledger.domain.bases import add_months
from ledger.runtime import Ledger
from tests.helpers import PHONE, grant, sms_terms

NOTICE = bytes.fromhex("ab" * 32)


def test_a_relayed_grant_proves_itself_with_the_signed_message(
    client: TestClient,
    ledger: Ledger,
    company_auth: dict[str, str],
    consumer: LocalAccount,
    linked: str,
) -> None:
    grant(ledger, consumer, sms_terms(notice_hash=NOTICE))
    recorded = {"contact": linked, "channel": "sms", "record": True}
    used = client.post("/v1/checks", json=recorded, headers=company_auth).json()
    assert used["allowed"]

    response = client.get(
        "/v1/consent-proof", params={"contact": PHONE, "channel": "sms"}, headers=company_auth
    )
    assert response.status_code == 200, response.text
    proof = response.json()
    assert proof["consumer"] == consumer.address
    assert proof["grant"]["notice_hash"].removeprefix("0x") == NOTICE.hex()
    assert proof["grant"]["max_contacts"] == 4
    # Anyone can check the signature against the typed data: it is the consumer's.
    signable = encode_typed_data(full_message=proof["typed_data"])
    signer = Account.recover_message(signable, signature=bytes.fromhex(proof["signature"][2:]))
    assert signer == consumer.address
    assert proof["typed_data"]["message"]["noticeHash"] == "0x" + NOTICE.hex()
    assert proof["grant_block"] > 0 and proof["link"]["block_number"] > 0
    receipt = client.get(f"/v1/receipts/{used['receipt']['seq']}", headers=company_auth).json()
    assert proof["last_used_at"] == receipt["at"]
    kept_from = max(receipt["at"], proof["granted_at"])  # 5 years from the grant and each use
    assert proof["retained_until"] == add_months(kept_from, 60)


def test_no_proof_without_a_grant(
    client: TestClient, company_auth: dict[str, str], linked: str
) -> None:
    response = client.get(
        "/v1/consent-proof", params={"contact": linked, "channel": "sms"}, headers=company_auth
    )
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
