"""Regulator endpoints: the usage log audited against the chain."""

from __future__ import annotations

import itertools
import time
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, StreamingResponse

from api.deps import LedgerDep, RegulatorDep
from api.routes.usage import AfterSeq
from api.schemas import ReplayOut, VerifyOut
from ledger.audit import export
from ledger.audit.anchors import anchors_from_chain, anchors_from_index
from ledger.audit.replay import replay_log
from ledger.audit.report import MAX_DAYS, Period, Report, ReportFormat
from ledger.audit.report_audits import audited_report
from ledger.audit.report_html import render_html
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


ReportDay = Annotated[
    date | None, Query(ge=date(1970, 1, 1), le=date(9999, 12, 30), description="a UTC day")
]


@router.get(
    "/v1/audit/report",
    response_model=Report,
    responses={200: {"content": {"text/html": {"schema": {"type": "string"}}}}},
)
def audit_report(
    request: Request,
    ledger: LedgerDep,
    _: RegulatorDep,
    company_id: Annotated[int | None, Query(ge=1, lt=1 << 63, description="one company")] = None,
    days: Annotated[
        int, Query(ge=1, le=MAX_DAYS, description="the last N days, today included")
    ] = 30,
    since: ReportDay = None,
    until: ReportDay = None,
    fmt: Annotated[
        ReportFormat | None,
        Query(alias="format", description="html or json (default: by the Accept header)"),
    ] = None,
    run_verify: Annotated[
        bool, Query(alias="verify", description="re-hash the log against the anchors")
    ] = True,
    run_replay: Annotated[
        bool, Query(alias="replay", description="replay every decision from the chain")
    ] = True,
    from_block: Annotated[
        int, Query(ge=0, lt=1 << 63, description="first block whose events are read")
    ] = 0,
) -> Response:
    """Report on one company or all: contacts against quotas, refusals, violations, anchors."""
    now = int(time.time())
    period = Period.asked(days=days, first=since, last=until, now=now)
    report = audited_report(
        ledger.engine,
        ledger.chain,
        period=period,
        company_id=company_id,
        log_id=ledger.settings.log_id,
        now=now,
        run_verify=run_verify,
        run_replay=run_replay,
        from_block=from_block,
    )
    if fmt is None:
        accept = request.headers.get("accept", "")
        wants_json = "application/json" in accept and "text/html" not in accept
        fmt = ReportFormat.JSON if wants_json else ReportFormat.HTML
    headers = {"Vary": "Accept"}
    if fmt is ReportFormat.JSON:
        return Response(report.model_dump_json(), media_type="application/json", headers=headers)
    return HTMLResponse(render_html(report), headers=headers)


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
