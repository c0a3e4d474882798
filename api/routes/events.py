"""Server-sent events of grant changes that concern the calling company."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import CompanyDep, LedgerDep
from api.schemas import GrantEventOut
from ledger.domain.channels import Channel
from ledger.services import notifications
from ledger.services.notifications import GrantEvent

router = APIRouter(tags=["company"])
POLL_SECONDS = 1.0
# A followed stream ends after this long; EventSource clients reconnect with Last-Event-ID,
# which bounds how long a worker holds a connection and re-checks the key on reconnect.
MAX_STREAM_SECONDS = 300.0


def _out(e: GrantEvent) -> GrantEventOut:
    return GrantEventOut(
        id=e.id,
        type=e.type,
        consumer=e.consumer,
        channel=Channel(e.channel).name.lower() if e.channel is not None else None,
        version=e.version,
        block_number=e.block_number,
    )


@router.get(
    "/v1/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "grant_set, grant_revoked, all_grants_revoked",
        }
    },
)
async def grant_events(
    ledger: LedgerDep,
    company: CompanyDep,
    after: Annotated[
        str | None, Query(max_length=40, description="resume after this event id")
    ] = None,
    follow: Annotated[bool, Query(description="keep the stream open for new events")] = True,
    last_event_id: Annotated[str | None, Header(max_length=40)] = None,
) -> StreamingResponse:
    """Stream grants set or revoked for the company, and revoke-alls of its consumers (SSE)."""
    assert company.company_id is not None
    company_id = company.company_id
    cursor = notifications.parse_cursor(last_event_id or after)

    async def stream() -> AsyncIterator[str]:
        position = cursor
        ends = time.monotonic() + MAX_STREAM_SECONDS
        while True:
            events = await run_in_threadpool(
                notifications.grant_events, ledger.engine, company_id=company_id, after=position
            )
            for event in events:
                data = _out(event).model_dump_json()
                yield f"id: {event.id}\nevent: {event.type}\ndata: {data}\n\n"
                position = (event.block_number, event.log_index)
            if not follow or time.monotonic() > ends:
                return
            if not events:
                yield ": keep-alive\n\n"
                await asyncio.sleep(POLL_SECONDS)

    return StreamingResponse(stream(), media_type="text/event-stream")
