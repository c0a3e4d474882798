"""The company registry and company API keys (regulator)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api.bulkhead import NodeLimit
from api.deps import LedgerDep, RegulatorDep
from api.schemas import CompanyIn, CompanyOut, KeyInfo, KeyOut, TxOut
from ledger.domain.errors import UnknownCompany
from ledger.domain.grants import CompanyStatus
from ledger.services import apikeys, companies
from ledger.services.apikeys import Role

router = APIRouter(tags=["regulator"])
CompanyId = Annotated[int, Path(gt=0, lt=1 << 63)]


@router.post("/v1/companies", response_model=CompanyOut, status_code=201, dependencies=[NodeLimit])
def register_company(body: CompanyIn, ledger: LedgerDep, _: RegulatorDep) -> CompanyOut:
    """Register a company on chain and issue its first API key (shown once)."""
    done = companies.register(
        ledger.relayer, ledger.engine, company_id=body.company_id, name=body.name, admin=body.admin
    )
    return CompanyOut(
        company_id=done.company_id,
        tx_hash=done.tx_hash,
        block_number=done.block_number,
        key_id=done.key_id,
        api_key=done.api_key,
    )


@router.post("/v1/companies/{company_id}/suspend", response_model=TxOut, dependencies=[NodeLimit])
def suspend_company(company_id: CompanyId, ledger: LedgerDep, _: RegulatorDep) -> TxOut:
    """Suspend a company: every check for it is refused until it is reinstated."""
    return TxOut.of(ledger.relayer.suspend_company(company_id))


@router.post("/v1/companies/{company_id}/reinstate", response_model=TxOut, dependencies=[NodeLimit])
def reinstate_company(company_id: CompanyId, ledger: LedgerDep, _: RegulatorDep) -> TxOut:
    """Reinstate a suspended company."""
    return TxOut.of(ledger.relayer.reinstate_company(company_id))


@router.post(
    "/v1/companies/{company_id}/keys",
    response_model=KeyOut,
    status_code=201,
    dependencies=[NodeLimit],
)
def create_company_key(company_id: CompanyId, ledger: LedgerDep, _: RegulatorDep) -> KeyOut:
    """Issue another API key for a registered company (shown once)."""
    if ledger.chain.company(company_id).status is CompanyStatus.NONE:
        raise UnknownCompany(company_id)
    token, record = apikeys.create_key(ledger.engine, role=Role.COMPANY, company_id=company_id)
    return KeyOut(key_id=record.id, api_key=token)


@router.get("/v1/companies/{company_id}/keys", response_model=list[KeyInfo])
def list_company_keys(company_id: CompanyId, ledger: LedgerDep, _: RegulatorDep) -> list[KeyInfo]:
    """List a company's API keys (never the secrets)."""
    return [
        KeyInfo(key_id=k.id, role=k.role, company_id=k.company_id, revoked=k.revoked_at is not None)
        for k in apikeys.list_keys(ledger.engine, company_id=company_id)
    ]


@router.delete("/v1/keys/{key_id}", response_model=KeyInfo)
def revoke_key(
    key_id: Annotated[str, Path(pattern=r"^[0-9a-f]{12}$")], ledger: LedgerDep, _: RegulatorDep
) -> KeyInfo:
    """Revoke an API key; it is refused from the next request on."""
    k = apikeys.revoke_key(ledger.engine, key_id)
    return KeyInfo(key_id=k.id, role=k.role, company_id=k.company_id, revoked=True)
