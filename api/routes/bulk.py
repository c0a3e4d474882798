"""Many checks in one request: a batch of contacts, or a CSV file scrubbed as it streams."""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from api.deps import CompanyDep, LedgerDep
from api.routes.checks import check_response
from api.schemas import BatchItemOut, BatchRequest, BatchResponse, ChannelName
from ledger.domain.channels import Channel
from ledger.services import bulk

router = APIRouter(prefix="/v1", tags=["company"])
SPOOL_IN_MEMORY = 4 * 1024 * 1024


@router.post("/checks/batch", response_model=BatchResponse)
def check_batch(body: BatchRequest, ledger: LedgerDep, company: CompanyDep) -> Response:
    """Check up to 10,000 contacts in one request; an invalid contact is an answer for its item."""
    assert company.company_id is not None
    outcomes = bulk.check_many(
        ledger.checker,
        company_id=company.company_id,
        items=[bulk.Item(i.contact, Channel.parse(i.channel)) for i in body.items],
        record=body.record,
    )
    answer = BatchResponse(
        results=[
            BatchItemOut(index=o.index, result=check_response(o.result))
            if o.result is not None
            else BatchItemOut(index=o.index, error=o.error.code if o.error else "invalid_input")
            for o in outcomes
        ]
    )
    # Serialised once here: returned as a model, FastAPI would validate all 10,000 again.
    return Response(answer.model_dump_json(), media_type="application/json")


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

    def rows_out() -> Iterator[str]:
        # A plain iterator: Starlette runs each step in a worker thread, as the checks block.
        with spool, io.TextIOWrapper(spool, encoding="utf-8", errors="replace", newline="") as text:
            reader = csv.reader(text)
            if header:
                yield bulk.csv_line([*next(reader, []), *bulk.SCRUB_COLUMNS])
            yield from bulk.scrub_lines(
                ledger.checker, company_id=company_id, channel=kind, rows=reader, column=column
            )

    return StreamingResponse(rows_out(), media_type="text/csv")
