"""Consumer grants: prepare the typed data to sign, relay signed grants and revocations."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path

from api.bulkhead import NodeLimit
from api.deps import LedgerDep, RelayerDep, RelayLimit
from api.schemas import (
    AddressPath,
    ChannelName,
    GrantDraft,
    GrantOut,
    GrantTermsIn,
    SignedGrant,
    SignedRevocation,
    TxOut,
    TypedDataOut,
)
from ledger.consent import messages
from ledger.domain.channels import Channel
from ledger.domain.grants import GrantTerms

router = APIRouter(prefix="/v1/grants", tags=["consumer"])


def _terms(body: GrantTermsIn) -> GrantTerms:
    return GrantTerms(
        company_id=body.company_id,
        channel=Channel.parse(body.channel),
        max_contacts=body.max_contacts,
        period=body.period,
        valid_from=body.valid_from,
        valid_until=body.valid_until,
        hours_mask=body.hours_mask,
        days_mask=body.days_mask,
        notice_hash=bytes.fromhex(body.notice_hash[2:]),
    )


@router.post("/typed-data", response_model=TypedDataOut, dependencies=[RelayLimit, NodeLimit])
def prepare_grant(body: GrantDraft, ledger: LedgerDep) -> TypedDataOut:
    """Return the EIP-712 typed data a consumer signs for this grant."""
    terms = _terms(body)
    # Refuse before the consumer signs what the relay would refuse.
    messages.check_deadline(body.deadline, int(time.time()), ledger.settings.signature_max_ttl)
    version = ledger.chain.grant_version(body.consumer, terms.company_id, int(terms.channel))
    epoch = ledger.chain.epoch(body.consumer)
    message = messages.set_grant(
        body.consumer, terms, version=version, epoch=epoch, deadline=body.deadline
    )
    message.admit()
    doc = message.typed_data(ledger.chain.domain)
    return TypedDataOut(version=version, epoch=epoch, typed_data=doc)


@router.post("", response_model=TxOut, status_code=201, dependencies=[RelayLimit, NodeLimit])
def relay_grant(body: SignedGrant, relayer: RelayerDep) -> TxOut:
    """Relay a grant signed by the consumer (the operator pays the gas)."""
    message = messages.set_grant(
        body.consumer, _terms(body), version=body.version, epoch=body.epoch, deadline=body.deadline
    )
    receipt = relayer.relay(message, body.signature_bytes)
    return TxOut.of(receipt)


@router.post(
    "/revocations",
    response_model=TxOut,
    status_code=201,
    dependencies=[RelayLimit, NodeLimit],
)
def relay_revocation(body: SignedRevocation, relayer: RelayerDep) -> TxOut:
    """Relay a revocation signed by the consumer; effective from the block that records it."""
    message = messages.revoke_grant(
        body.consumer,
        company_id=body.company_id,
        channel=int(Channel.parse(body.channel)),
        version=body.version,
        epoch=body.epoch,
        deadline=body.deadline,
    )
    receipt = relayer.relay(message, body.signature_bytes)
    return TxOut.of(receipt)


@router.get("/{consumer}/{company_id}/{channel}", response_model=GrantOut, dependencies=[NodeLimit])
def read_grant(
    consumer: AddressPath,
    company_id: Annotated[int, Path(gt=0, lt=1 << 63)],
    channel: ChannelName,
    ledger: LedgerDep,
) -> GrantOut:
    """Return a grant as the chain holds it (grants are public on chain)."""
    g = ledger.chain.grant(consumer, company_id, int(Channel.parse(channel)), "latest")
    return GrantOut(
        consumer=consumer,
        company_id=company_id,
        channel=channel,
        active=g.active,
        version=g.version,
        max_contacts=g.max_contacts,
        period=g.period,
        valid_from=g.valid_from,
        valid_until=g.valid_until,
        hours_mask=g.hours_mask,
        days_mask=g.days_mask,
    )
