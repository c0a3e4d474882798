"""Regulator endpoints: the usage log audited against the chain."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import LedgerDep, RegulatorDep
from api.schemas import ReplayOut
from ledger.audit.replay import replay_log

router = APIRouter(tags=["regulator"])


@router.get("/v1/audit/replay", response_model=ReplayOut)
def audit_replay(
    ledger: LedgerDep,
    _: RegulatorDep,
    company_id: Annotated[
        int | None, Query(ge=1, lt=1 << 63, description="only this company's decisions")
    ] = None,
    from_block: Annotated[
        int, Query(ge=0, lt=1 << 63, description="first block whose events are read")
    ] = 0,
) -> ReplayOut:
    """Decide every recorded decision again from the chain's events (not the index) and the log."""
    report = replay_log(
        ledger.chain, engine=ledger.engine, company_id=company_id, start_block=from_block
    )
    return ReplayOut.model_validate(report.as_dict())
