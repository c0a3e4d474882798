"""Company checks: may I contact this number now?"""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import CompanyDep, LedgerDep, MetricsDep
from api.schemas import CheckRequest, CheckResponse, ContactOut, ReasonOut, ReceiptOut
from ledger.grants import Channel

router = APIRouter(prefix="/v1/checks", tags=["company"])


@router.post("", response_model=CheckResponse)
def check(
    body: CheckRequest, ledger: LedgerDep, company: CompanyDep, metrics: MetricsDep
) -> CheckResponse:
    """Decide whether the calling company may contact a number or address now; record it too."""
    assert company.company_id is not None
    result = ledger.checker.check(
        company_id=company.company_id,
        contact=body.contact,
        channel=Channel.parse(body.channel),
        record=body.record,
    )
    d = result.decision
    metrics.decisions.labels(str(d.allowed).lower(), d.reasons[0].code).inc()
    return CheckResponse(
        allowed=d.allowed,
        reasons=[ReasonOut(code=r.code, message=r.message) for r in d.reasons],
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
    )
