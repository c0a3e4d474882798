"""Operator health."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import LedgerDep
from api.schemas import DomainOut, HealthOut, LedgerOut
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


class IndexHealthOut(HealthOut):
    """Health with the event index's lag (checks refuse as `ledger_stale` when it is stale)."""

    index_block: int | None = None
    lag_blocks: int | None = None
    lag_seconds: float | None = None


@router.get("/v1/health", response_model=IndexHealthOut, responses={503: {"model": IndexHealthOut}})
def health(ledger: LedgerDep) -> IndexHealthOut | JSONResponse:
    """Report whether the node answers, how far the index lags it, and the contract served."""
    lag = ledger.state.lag()
    body = IndexHealthOut(
        status="degraded" if lag.stale else "ok",
        chain_id=ledger.chain.chain_id,
        contract=ledger.chain.address,
        head_block=lag.head_block,
        detail=lag.detail or None,
        index_block=lag.index_block,
        lag_blocks=lag.lag_blocks,
        lag_seconds=round(lag.lag_seconds, 3),
    )
    if lag.stale:
        return JSONResponse(body.model_dump(), status_code=503)
    return body
