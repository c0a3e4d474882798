"""Company checks: may I contact this number now? One at a time, by batch, or a CSV file."""

from __future__ import annotations

import csv
import io
import itertools
import tempfile
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import CompanyDep, LedgerDep, MetricsDep
from api.schemas import (
    BatchItemOut,
    BatchRequest,
    BatchResponse,
    ChannelName,
    CheckRequest,
    CheckResponse,
    ContactOut,
    DeclaredBasisIn,
    ReasonOut,
    ReceiptOut,
)
from ledger.domain.bases import BasisKind, Declared
from ledger.domain.channels import Channel
from ledger.runtime import Ledger
from ledger.services import bulk
from ledger.services.checks import CheckResult
from ledger.usage import idempotency

router = APIRouter(prefix="/v1", tags=["company"])
SCRUB_CHUNK_ROWS = 500  # rows checked per worker-thread hop while streaming a scrub
SPOOL_IN_MEMORY = 4 * 1024 * 1024


def _response(result: CheckResult) -> CheckResponse:
    d = result.decision
    return CheckResponse(
        allowed=d.allowed,
        reasons=[
            ReasonOut(code=r.code, message=r.message, rule=r.rule, reference=r.reference)
            for r in d.reasons
        ],
        contact=ContactOut(
            kind=result.contact.kind.value,
            value=result.contact.value,
            region=result.contact.region,
            time_zone=result.contact.time_zone,
        ),
        consumer=d.consumer,
        remaining=d.remaining,
        next_free_at=d.next_free_at,
        grant_version=d.grant_version,
        block_number=d.block_number,
        receipt=ReceiptOut(seq=result.receipt.seq, entry_hash=result.receipt.entry_hash)
        if result.receipt
        else None,
        basis=None if d.basis is None else d.basis.value,
        rules=list(d.rules),
    )


def _declared(basis: DeclaredBasisIn) -> Declared:
    return Declared(BasisKind(basis.kind), **basis.model_dump(exclude={"kind"}))


@router.post("/checks", response_model=CheckResponse)
def check(
    body: CheckRequest,
    response: Response,
    ledger: LedgerDep,
    company: CompanyDep,
    metrics: MetricsDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=200,
            description="retrying with the same key and body never records twice",
        ),
    ] = None,
) -> CheckResponse:
    """Decide whether the calling company may contact a number or address now; record it too."""
    assert company.company_id is not None
    company_id = company.company_id

    def run(seal: idempotency.Seal | None = None) -> CheckResponse:
        result = ledger.checker.check(
            company_id=company_id,
            contact=body.contact,
            channel=Channel.parse(body.channel),
            record=body.record,
            now=None if body.at is None else int(body.at.timestamp()),
            declared=None if body.basis is None else _declared(body.basis),
            # The key and its answer commit with the usage entry: a crash keeps both or neither.
            on_record=None
            if seal is None
            else lambda conn, recorded: seal(conn, _response(recorded).model_dump()),
        )
        metrics.decisions.labels(
            str(result.decision.allowed).lower(), result.decision.codes[0]
        ).inc()
        return _response(result)

    if idempotency_key is None:
        return run()
    answer, replayed = idempotency.run_once(
        ledger.engine,
        company_id=company_id,
        key=idempotency_key,
        body=body.model_dump(mode="json"),
        records=body.record,
        run=lambda seal: run(seal).model_dump(),
    )
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return CheckResponse(**answer)


@router.post("/checks/batch", response_model=BatchResponse)
def check_batch(body: BatchRequest, ledger: LedgerDep, company: CompanyDep) -> BatchResponse:
    """Check up to 10,000 contacts in one request; an invalid contact is an answer for its item."""
    assert company.company_id is not None
    outcomes = bulk.check_many(
        ledger.checker,
        company_id=company.company_id,
        items=[bulk.Item(i.contact, Channel.parse(i.channel)) for i in body.items],
        record=body.record,
    )
    return BatchResponse(
        results=[
            BatchItemOut(index=o.index, result=_response(o.result))
            if o.result is not None
            else BatchItemOut(index=o.index, error=o.error.code if o.error else "invalid_input")
            for o in outcomes
        ]
    )


@router.post(
    "/scrub",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}}, "description": "the input rows with three columns added"}
    },
    openapi_extra={
        "requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}
    },
)
async def scrub(
    request: Request,
    ledger: LedgerDep,
    company: CompanyDep,
    channel: ChannelName,
    column: Annotated[int, Query(ge=0, le=1000, description="0-based column of the contact")] = 0,
    header: Annotated[bool, Query(description="the first row is a header")] = False,
) -> StreamingResponse:
    """Scrub a CSV file, streamed in and out; nothing is recorded.

    Each row gets three columns: allowed, reasons, normalized contact. A file of millions of
    rows is never held in memory whole.
    """
    assert company.company_id is not None
    company_id = company.company_id
    kind = Channel.parse(channel)
    # The upload is spooled to a temporary file before the answer starts: a streaming response
    # listens for the client's disconnect on the same channel the body arrives on. Past a few
    # megabytes the spool lives on disk, so memory stays flat whatever the file's size.
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # closed by rows_out
    async for chunk in request.stream():
        spool.write(chunk)
    spool.seek(0)

    async def rows_out() -> AsyncIterator[str]:
        with spool, io.TextIOWrapper(spool, encoding="utf-8", errors="replace", newline="") as text:
            reader = csv.reader(text)
            if header:
                yield bulk.csv_line([*next(reader, []), *bulk.SCRUB_COLUMNS])
            while batch := list(itertools.islice(reader, SCRUB_CHUNK_ROWS)):
                yield await run_in_threadpool(_scrub_chunk, ledger, company_id, kind, batch, column)

    return StreamingResponse(rows_out(), media_type="text/csv")


def _scrub_chunk(
    ledger: Ledger, company_id: int, channel: Channel, rows: list[list[str]], column: int
) -> str:
    out = bulk.scrub_rows(
        ledger.checker, company_id=company_id, channel=channel, rows=rows, column=column
    )
    return "".join(bulk.csv_line(r) for r in out)
