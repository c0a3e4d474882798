"""EIP-712 messages: the one place that builds, signs and verifies what consumers sign.

The CLI wallet, the API and the tests all call these builders, and the browser wallet signs
the same typed data with ``eth_signTypedData_v4``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.address import to_checksum_address

from ledger.domain.errors import ExpiredSignature, InvalidSignature
from ledger.domain.grants import GrantTerms

DOMAIN_NAME = "QuotaLedger"
DOMAIN_VERSION = "1"

_EIP712_DOMAIN = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]

# Field lists must match the type strings written out in QuotaLedger.sol.
TYPES: dict[str, list[dict[str, str]]] = {
    "SetGrant": [
        {"name": "consumer", "type": "address"},
        {"name": "companyId", "type": "uint64"},
        {"name": "channel", "type": "uint8"},
        {"name": "maxContacts", "type": "uint32"},
        {"name": "period", "type": "uint32"},
        {"name": "validFrom", "type": "uint40"},
        {"name": "validUntil", "type": "uint40"},
        {"name": "hoursMask", "type": "uint24"},
        {"name": "daysMask", "type": "uint8"},
        {"name": "noticeHash", "type": "bytes32"},
        {"name": "version", "type": "uint32"},
        {"name": "deadline", "type": "uint256"},
    ],
    "RevokeGrant": [
        {"name": "consumer", "type": "address"},
        {"name": "companyId", "type": "uint64"},
        {"name": "channel", "type": "uint8"},
        {"name": "version", "type": "uint32"},
        {"name": "deadline", "type": "uint256"},
    ],
    "RevokeAll": [
        {"name": "consumer", "type": "address"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
    "SetGlobalCap": [
        {"name": "consumer", "type": "address"},
        {"name": "maxContacts", "type": "uint32"},
        {"name": "period", "type": "uint32"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
    "Unlink": [
        {"name": "consumer", "type": "address"},
        {"name": "commitment", "type": "bytes32"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
}


@dataclass(frozen=True, slots=True)
class Domain:
    """The EIP-712 domain of one deployment: a signature for another chain or contract fails."""

    chain_id: int
    verifying_contract: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": self.chain_id,
            "verifyingContract": to_checksum_address(self.verifying_contract),
        }


def typed_data(domain: Domain, primary_type: str, message: dict[str, Any]) -> dict[str, Any]:
    """The full ``eth_signTypedData_v4`` document for a message."""
    return {
        "types": {"EIP712Domain": _EIP712_DOMAIN, primary_type: TYPES[primary_type]},
        "primaryType": primary_type,
        "domain": domain.as_dict(),
        "message": message,
    }


def set_grant(
    domain: Domain, *, consumer: str, terms: GrantTerms, version: int, deadline: int
) -> dict[str, Any]:
    """Typed data for ``setGrantBySig``; ``version`` is the grant's current version."""
    return typed_data(
        domain,
        "SetGrant",
        {
            "consumer": to_checksum_address(consumer),
            "companyId": terms.company_id,
            "channel": int(terms.channel),
            "maxContacts": terms.max_contacts,
            "period": terms.period,
            "validFrom": terms.valid_from,
            "validUntil": terms.valid_until,
            "hoursMask": terms.hours_mask,
            "daysMask": terms.days_mask,
            "noticeHash": "0x" + terms.notice_hash.hex(),
            "version": version,
            "deadline": deadline,
        },
    )


def revoke_grant(
    domain: Domain, *, consumer: str, company_id: int, channel: int, version: int, deadline: int
) -> dict[str, Any]:
    """Typed data for ``revokeGrantBySig``."""
    return typed_data(
        domain,
        "RevokeGrant",
        {
            "consumer": to_checksum_address(consumer),
            "companyId": company_id,
            "channel": int(channel),
            "version": version,
            "deadline": deadline,
        },
    )


def revoke_all(domain: Domain, *, consumer: str, nonce: int, deadline: int) -> dict[str, Any]:
    """Typed data for ``revokeAllBySig``."""
    message = {"consumer": to_checksum_address(consumer), "nonce": nonce, "deadline": deadline}
    return typed_data(domain, "RevokeAll", message)


def set_global_cap(
    domain: Domain, *, consumer: str, max_contacts: int, period: int, nonce: int, deadline: int
) -> dict[str, Any]:
    """Typed data for ``setGlobalCapBySig``; (0, 0) removes the cap."""
    message = {
        "consumer": to_checksum_address(consumer),
        "maxContacts": max_contacts,
        "period": period,
        "nonce": nonce,
        "deadline": deadline,
    }
    return typed_data(domain, "SetGlobalCap", message)


def unlink(
    domain: Domain, *, consumer: str, commitment: bytes, nonce: int, deadline: int
) -> dict[str, Any]:
    """Typed data for ``unlinkBySig``: the consumer removes the link of one contact."""
    message = {
        "consumer": to_checksum_address(consumer),
        "commitment": "0x" + commitment.hex(),
        "nonce": nonce,
        "deadline": deadline,
    }
    return typed_data(domain, "Unlink", message)


def sign(document: dict[str, Any], private_key: str | bytes) -> bytes:
    """Signs typed data as a wallet would (65 bytes, r || s || v)."""
    return bytes(Account.sign_typed_data(private_key, full_message=document).signature)


def recover(document: dict[str, Any], signature: bytes) -> str:
    """The address whose key signed ``document``.

    Raises:
        InvalidSignature: the signature is malformed.
    """
    consumer = str(document["message"].get("consumer", ""))
    try:
        return str(
            Account.recover_message(encode_typed_data(full_message=document), signature=signature)
        )
    except Exception as exc:  # eth-keys raises several types for malformed input
        raise InvalidSignature(consumer) from exc


def check_deadline(deadline: int, now: int) -> None:
    """Raises ExpiredSignature when ``now`` is past ``deadline`` (the contract's rule)."""
    if now > deadline:
        raise ExpiredSignature(deadline)
