"""Opposition lists (operator): import a registry copy or a company's do-not-call list."""

from __future__ import annotations

import tempfile
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from api.deps import LedgerDep, OperatorDep
from api.schemas import ListImportOut, ListOut
from ledger.lists.formats import ImportMode, ListFormat
from ledger.lists.importer import ListImport, import_file
from ledger.lists.store import OppositionListBase

router = APIRouter(prefix="/v1/lists", tags=["operator"])


def _out(m: OppositionListBase) -> ListOut:
    return ListOut(
        version=m.version,
        region=m.region,
        company_id=m.company_id,
        source=m.source,
        fetched_at=m.fetched_at,
        max_age=m.max_age,
        count=m.count,
        added=m.added,
        removed=m.removed,
        invalid=m.invalid,
        imported_at=m.imported_at,
    )


@router.get("", response_model=list[ListOut])
def list_status(ledger: LedgerDep, _: OperatorDep) -> list[ListOut]:
    """Return the current snapshot of every national and company list, with its freshness."""
    return [_out(m) for m in ledger.lists.current()]


@router.post(
    "/{region}",
    response_model=ListImportOut,
    status_code=201,
    openapi_extra={
        "requestBody": {"required": True, "content": {"text/plain": {"schema": {"type": "string"}}}}
    },
)
async def import_list(
    request: Request,
    ledger: LedgerDep,
    _: OperatorDep,
    region: Annotated[str, Path(pattern=r"^[A-Za-z]{2}$", description="ISO 3166 region")],
    fmt: Annotated[ListFormat, Query(alias="format")] = ListFormat.LINES,
    mode: ImportMode = ImportMode.FULL,
    column: Annotated[int, Query(ge=0, le=1000)] = 0,
    header: bool = False,
    source: Annotated[str, Query(min_length=1, max_length=200)] = "upload",
    fetched_at: Annotated[
        int | None, Query(ge=0, lt=1 << 40, description="when the registry copy was taken")
    ] = None,
    company_id: Annotated[
        int | None, Query(gt=0, lt=1 << 63, description="a company's own list")
    ] = None,
) -> ListImportOut:
    """Import a list file (streamed to disk first): full snapshot, additions or removals."""
    spec = ListImport(
        region=region.upper(),
        fmt=fmt,
        mode=mode,
        column=column,
        header=header,
        company_id=company_id,
    )
    with tempfile.TemporaryDirectory(prefix="ql-list-") as folder:
        path = FilePath(folder) / "upload"
        with path.open("wb") as out:
            async for chunk in request.stream():
                out.write(chunk)
        report = await run_in_threadpool(
            import_file, path, spec, cache=ledger.lists, source=source, fetched_at=fetched_at
        )
    return ListImportOut(
        snapshot=_out(report.snapshot), created=report.created, invalid_lines=report.invalid_lines
    )
