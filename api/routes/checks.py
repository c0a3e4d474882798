"""Company checks: may I contact this number or address now? One at a time (batches and
scrubs are in ``api.routes.bulk``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response

from api.bulkhead import run_check
from api.deps import CompanyDep, LedgerDep, MetricsDep
from api.schemas import (
    CheckRequest,
    CheckResponse,
    ContactOut,
    DeclaredBasisIn,
    ReasonOut,
    ReceiptOut,
)
from ledger.domain.bases import BasisKind, Declared
from ledger.domain.channels import Channel
from ledger.services.checks import CheckResult
from ledger.usage import idempotency

router = APIRouter(prefix="/v1", tags=["company"])


def check_response(result: CheckResult) -> CheckResponse:
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
async def check(
    body: CheckRequest,
    request: Request,
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
) -> Response:
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
            else lambda conn, recorded: seal(conn, check_response(recorded).model_dump()),
        )
        metrics.decisions.labels(
            str(result.decision.allowed).lower(), result.decision.codes[0]
        ).inc()
        return check_response(result)

    def once() -> tuple[CheckResponse, bool]:
        if idempotency_key is None:
            return run(), False
        answer, replayed = idempotency.run_once(
            ledger.engine,
            company_id=company_id,
            key=idempotency_key,
            body=body.model_dump(mode="json"),
            records=body.record,
            run=lambda seal: run(seal).model_dump(),
        )
        return CheckResponse(**answer), replayed

    # The database work in one hop to a worker thread; the answer serialised once, by
    # pydantic-core, rather than validated again against the response model by FastAPI.
    answer, replayed = await run_check(request, once)
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return Response(answer.model_dump_json(), media_type="application/json", headers=headers)
