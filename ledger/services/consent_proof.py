"""Consent proof: what a company shows a regulator for a contact it checked.

GDPR art. 7(1) puts the burden of proving consent on the company and UWG § 7a asks it to keep
the proof 5 years from the grant and after each use. The proof is the signed EIP-712 message
(rebuilt from the relayed calldata, with its signature), the notice hash the consumer saw, the
transaction and block that recorded the grant, and the attestation that links the contact to
the consumer: everything an auditor can check against the chain alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import col, func, select

from ledger.chain.client import Chain
from ledger.chain.relayer import OperatorTx
from ledger.consent import messages
from ledger.db.engine import transaction
from ledger.domain import contacts
from ledger.domain.bases import add_months
from ledger.domain.channels import Channel
from ledger.domain.errors import NotFound
from ledger.domain.grants import GrantTerms
from ledger.index.tables import GrantRow, LinkRow
from ledger.usage.entries import EntryKind, UsageEntry


@dataclass(frozen=True, slots=True)
class ConsentProof:
    consumer: str
    company_id: int
    channel: Channel
    grant: dict[str, Any]  # the terms as the chain holds them, with version and notice hash
    grant_tx: str
    grant_block: int
    granted_at: int  # the block's timestamp
    typed_data: dict[str, Any] | None  # the EIP-712 message signed, when relayed
    signature: str | None  # its signature; None when the consumer sent the transaction
    link: dict[str, Any]  # commitment, transaction, block and time of the attestation
    last_used_at: int | None  # the company's last allowed contact under this grant
    retained_until: int  # years after the grant and after the last use (settings)


def consent_proof(
    *,
    engine: Engine,
    chain: Chain,
    salt: bytes,
    default_region: str,
    company_id: int,
    contact: str,
    channel: Channel,
    retention_years: int,
) -> ConsentProof:
    """The proof of the consent in force for ``company_id`` to reach ``contact`` on ``channel``.

    Raises:
        InvalidContact: the contact cannot be parsed.
        NotFound: the contact is not linked, or its holder gave this company no active grant.
    """
    parsed = contacts.parse_contact(contact, default_region=default_region)
    commitment = contacts.commitment(parsed, salt).hex()
    with transaction(engine) as session:
        link = session.get(LinkRow, commitment)
        if link is None or link.consumer is None:
            raise NotFound("no consumer has linked this contact")
        grant = session.get(GrantRow, (link.consumer, company_id, int(channel)))
        if grant is None or grant.max_contacts == 0:
            raise NotFound("no grant of this consumer for this company and channel")
        relayed = session.exec(
            select(OperatorTx).where(OperatorTx.tx_hash == grant.tx_hash.removeprefix("0x"))
        ).first()
        last_used = session.exec(
            select(func.max(UsageEntry.at)).where(
                col(UsageEntry.consumer) == link.consumer,
                col(UsageEntry.company_id) == company_id,
                col(UsageEntry.channel) == int(channel),
                col(UsageEntry.decision) == EntryKind.ALLOWED.value,
            )
        ).one()
    header = chain.header(grant.block_number)
    granted_at = 0 if header is None else header.timestamp
    typed_data, signature = _signed_message(chain, relayed)
    kept_from = max(granted_at, last_used or 0)
    return ConsentProof(
        consumer=link.consumer,
        company_id=company_id,
        channel=channel,
        grant=grant.model_dump(exclude={"consumer", "company_id", "channel"}),
        grant_tx=_hex(grant.tx_hash),
        grant_block=grant.block_number,
        granted_at=granted_at,
        typed_data=typed_data,
        signature=signature,
        link={
            "commitment": "0x" + commitment,
            "tx_hash": _hex(link.tx_hash),
            "block_number": link.block_number,
            "linked_at": link.linked_at,
        },
        last_used_at=None if last_used is None else int(last_used),
        retained_until=add_months(kept_from, 12 * retention_years),
    )


def _signed_message(
    chain: Chain, relayed: OperatorTx | None
) -> tuple[dict[str, Any] | None, str | None]:
    """The typed data and signature of a relayed ``setGrantBySig``, from its calldata."""
    if relayed is None or relayed.method != "setGrantBySig":
        return None, None
    _, args = chain.contract.decode_function_input(bytes.fromhex(relayed.calldata))
    terms = GrantTerms(*_terms_tuple(args["terms"]))
    message = messages.set_grant(
        args["consumer"],
        terms,
        version=int(args["version"]),
        epoch=int(args["epoch"]),
        deadline=int(args["deadline"]),
    )
    doc = message.typed_data(chain.domain)
    return doc, "0x" + bytes(args["signature"]).hex()


def _terms_tuple(terms: Any) -> tuple[Any, ...]:
    values = tuple(terms.values()) if isinstance(terms, dict) else tuple(terms)
    company_id, channel, *rest = values
    return (int(company_id), Channel(int(channel)), *rest)


def _hex(value: str) -> str:
    return value if value.startswith("0x") else "0x" + value
