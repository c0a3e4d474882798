"""Operator health."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import LedgerDep
from api.schemas import (
    DomainOut,
    HealthOut,
    LeaderOut,
    LedgerOut,
    ListHealthOut,
    NodeOut,
    UsageLogHealthOut,
)
from ledger.consent.messages import DOMAIN_NAME, DOMAIN_VERSION
from ledger.services.health import Leadership, measure

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


@router.get(
    "/v1/health",
    response_model=HealthOut,
    responses={
        503: {
            "model": HealthOut,
            "description": "Degraded: the index lags, the database is unavailable, "
            "or the local node is restarting; failed: the usage log is corrupt "
            "(`usage_log_corrupt`, checks refuse until it is repaired and the API restarted)",
        }
    },
)
def health(ledger: LedgerDep) -> HealthOut | JSONResponse:
    """Report the node, the index's lag, the database, the lists' freshness and the leader."""
    report = measure(
        engine=ledger.engine,
        state=ledger.state,
        lists=ledger.lists,
        leadership=ledger.leadership,
        node=ledger.node,
        integrity=ledger.integrity,
    )
    corrupt = report.log_corrupt
    body = HealthOut(
        status="failed" if report.failed else "degraded" if report.degraded else "ok",
        chain_id=ledger.chain.chain_id,
        contract=ledger.chain.address,
        head_block=report.head_block,
        detail=report.detail or None,
        index_block=report.index_block,
        lag_blocks=report.lag_blocks,
        lag_seconds=report.lag_seconds,
        database="ok" if report.database_ok else "unavailable",
        lists=[ListHealthOut.model_validate(m, from_attributes=True) for m in report.lists],
        node=None
        if report.node is None
        else NodeOut.model_validate(report.node, from_attributes=True),
        leader=None if report.leader is None else _leader_out(report.leader),
        usage_log=UsageLogHealthOut(
            status="ok" if corrupt is None else "corrupt",
            verified_seq=report.log_verified,
            code=None if corrupt is None else "usage_log_corrupt",
            seq=None if corrupt is None else corrupt.seq,
            detail=None if corrupt is None else f"{corrupt.kind}: {corrupt.detail}",
        ),
    )
    if report.degraded:
        return JSONResponse(body.model_dump(), status_code=503)
    return body


def _leader_out(leadership: Leadership) -> LeaderOut:
    leader = leadership.leader
    return LeaderOut(
        role=leadership.role,
        this_process=leadership.this_process,
        id=None if leader is None else leader.id,
        pid=None if leader is None else leader.pid,
        host=None if leader is None else leader.host,
    )
