"""Consent proofs: what a company shows a regulator for a contact it reaches under a grant."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.bulkhead import NodeLimit
from api.deps import CompanyDep, LedgerDep
from api.schemas import ChannelName
from ledger.domain.channels import Channel
from ledger.services.consent_proof import consent_proof

router = APIRouter(prefix="/v1", tags=["company"])


class ConsentProofOut(BaseModel):
    consumer: str
    company_id: int
    channel: ChannelName
    grant: dict[str, Any] = Field(description="the terms on chain, with version and notice hash")
    grant_tx: str
    grant_block: int
    granted_at: int
    typed_data: dict[str, Any] | None = Field(
        description="the EIP-712 message the consumer signed (relayed grants)"
    )
    signature: str | None = Field(description="its signature; none when the consumer sent it")
    link: dict[str, Any] = Field(description="the attestation linking the contact")
    last_used_at: int | None
    retained_until: int = Field(description="keep the proof until then (QL_RETENTION_YEARS)")


@router.get("/consent-proof", response_model=ConsentProofOut, dependencies=[NodeLimit])
def proof(
    contact: Annotated[str, Query(min_length=1, max_length=254)],
    channel: ChannelName,
    ledger: LedgerDep,
    company: CompanyDep,
) -> ConsentProofOut:
    """The proof of the consumer's consent to the calling company for a contact and channel."""
    assert company.company_id is not None
    found = consent_proof(
        engine=ledger.engine,
        chain=ledger.chain,
        salt=ledger.settings.contact_salt_bytes,
        default_region=ledger.settings.default_region,
        company_id=company.company_id,
        contact=contact,
        channel=Channel.parse(channel),
        retention_years=ledger.settings.retention_years,
    )
    return ConsentProofOut(
        consumer=found.consumer,
        company_id=found.company_id,
        channel=channel,
        grant=found.grant,
        grant_tx=found.grant_tx,
        grant_block=found.grant_block,
        granted_at=found.granted_at,
        typed_data=found.typed_data,
        signature=found.signature,
        link=found.link,
        last_used_at=found.last_used_at,
        retained_until=found.retained_until,
    )
