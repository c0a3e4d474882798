"""Operator health."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import LedgerDep
from api.schemas import DomainOut, HealthOut, LedgerOut
from ledger.errors import LedgerError
from ledger.messages import DOMAIN_NAME, DOMAIN_VERSION

router = APIRouter(tags=["operator"])


@router.get("/v1/ledger", response_model=LedgerOut)
def ledger_info(ledger: LedgerDep) -> LedgerOut:
    """Return the EIP-712 domain that consumers sign against."""
    domain = ledger.chain.domain
    return LedgerOut(
        name=DOMAIN_NAME,
        version=DOMAIN_VERSION,
        domain=DomainOut(chain_id=domain.chain_id, verifying_contract=domain.verifying_contract),
    )


@router.get("/v1/health", response_model=HealthOut, responses={503: {"model": HealthOut}})
def health(ledger: LedgerDep) -> HealthOut | JSONResponse:
    """Report whether the node answers and which contract this API serves."""
    try:
        head = ledger.chain.head()
    except LedgerError as exc:
        body = HealthOut(
            status="degraded", chain_id=None, contract=None, head_block=None, detail=exc.message
        )
        return JSONResponse(body.model_dump(), status_code=503)
    return HealthOut(
        status="ok",
        chain_id=ledger.chain.chain_id,
        contract=ledger.chain.address,
        head_block=head.number,
    )
