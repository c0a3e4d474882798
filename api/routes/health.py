"""Operator health."""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import LedgerDep
from api.schemas import DomainOut, HealthOut, LedgerOut, ListHealthOut
from ledger.consent.messages import DOMAIN_NAME, DOMAIN_VERSION
from ledger.db.engine import transaction
from ledger.domain.errors import LedgerError

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
    """Report the node, the index's lag, the database and the lists' freshness."""
    lag = ledger.state.lag()
    now = int(time.time())
    try:
        with transaction(ledger.engine) as session:
            session.connection().exec_driver_sql("SELECT 1")
        database = "ok"
        lists = [
            ListHealthOut(
                region=m.region,
                company_id=m.company_id,
                version=m.version,
                age_seconds=now - m.fetched_at,
                max_age=m.max_age,
                stale=m.max_age is not None and now - m.fetched_at > m.max_age,
            )
            for m in ledger.lists.current()
        ]
    except LedgerError:
        database, lists = "unavailable", []
    degraded = lag.stale or database != "ok"
    body = HealthOut(
        status="degraded" if degraded else "ok",
        chain_id=ledger.chain.chain_id,
        contract=ledger.chain.address,
        head_block=lag.head_block,
        detail=lag.detail or None,
        index_block=lag.index_block,
        lag_blocks=lag.lag_blocks,
        lag_seconds=round(lag.lag_seconds, 3),
        database=database,
        lists=lists,
    )
    if degraded:
        return JSONResponse(body.model_dump(), status_code=503)
    return body
