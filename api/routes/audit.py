"""Regulator endpoints: the usage log audited against the chain."""

from __future__ import annotations

import itertools
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from api.deps import LedgerDep, RegulatorDep
from api.schemas import ReplayOut, VerifyOut
from ledger.audit import export
from ledger.audit.anchors import anchors_from_chain, anchors_from_index
from ledger.audit.replay import replay_log
from ledger.audit.verify import DatabaseSource, verify
from ledger.chain.deployment import deployed_at
from ledger.db.engine import connect

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


AfterSeq = Annotated[int, Query(ge=0, lt=1 << 63)]


@router.get(
    "/v1/usage/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
def usage_export(ledger: LedgerDep, _: RegulatorDep, after_seq: AfterSeq = 0) -> StreamingResponse:
    """Stream the usage log as JSON Lines: each entry as hashed, and the anchors it reached."""
    with connect(ledger.engine, read_only=True) as conn:
        anchors = anchors_from_index(conn, ledger.settings.log_id)
    size = DatabaseSource(ledger.engine).count() or 0
    first = export.header(
        log_id=ledger.settings.log_id,
        chain_id=ledger.chain.chain_id,
        contract=ledger.chain.address,
        size=size,
    )
    lines = itertools.chain([first], export.lines(ledger.engine, anchors, after_seq=after_seq))
    return StreamingResponse(lines, media_type="application/x-ndjson")


@router.get("/v1/audit/verify", response_model=VerifyOut)
def audit_verify(ledger: LedgerDep, _: RegulatorDep) -> VerifyOut:
    """Re-hash the whole usage log and check it against the anchors read from the chain."""
    anchors = anchors_from_chain(
        ledger.chain, ledger.settings.log_id, from_block=deployed_at(ledger.engine)
    )
    result = verify(DatabaseSource(ledger.engine), anchors)
    return VerifyOut.model_validate(result.as_json())
