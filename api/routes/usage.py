"""The usage log as its users see it: a company its own entries, a consumer who contacted
them (the regulator's export of the whole log is ``api.routes.audit``)."""

from __future__ import annotations

import json
import time
from typing import Annotated

from fastapi import APIRouter, Path, Query
from sqlmodel import Session

from api.deps import CompanyDep, ConsumerDep, LedgerDep
from api.schemas import (
    ChannelName,
    ContactedOut,
    EntryOut,
    EntryPage,
    InclusionOut,
    OutcomeIn,
    ReceiptEntryOut,
    ReceiptOut,
)
from ledger.audit import receipts
from ledger.db.engine import connect, transaction
from ledger.domain.channels import Channel
from ledger.domain.errors import NotFound
from ledger.usage import log as usage_log
from ledger.usage.entries import EntryKind, Outcome, UsageEntry

router = APIRouter(tags=["company"])
PageSize = Annotated[int, Query(ge=1, le=1000)]
AfterSeq = Annotated[int, Query(ge=0, lt=1 << 63)]
Time = Annotated[int | None, Query(ge=0, lt=1 << 40)]


def _out(e: UsageEntry) -> EntryOut:
    return EntryOut(
        seq=e.seq,
        at=e.at,
        company_id=e.company_id,
        channel=Channel(e.channel).name.lower(),
        consumer=e.consumer,
        decision=e.decision,
        reasons=json.loads(e.reasons),
        outcome=e.outcome,
        refers_to=e.refers_to,
        grant_version=e.grant_version,
        block_number=e.block_number,
        list_version=e.list_version,
        prev_hash=e.prev_hash,
        entry_hash=e.entry_hash,
    )


@router.get("/v1/usage", response_model=EntryPage)
def my_usage(
    ledger: LedgerDep,
    company: CompanyDep,
    after_seq: AfterSeq = 0,
    limit: PageSize = 100,
    since: Time = None,
    until: Time = None,
    channel: ChannelName | None = None,
) -> EntryPage:
    """List the calling company's usage entries, oldest first, filtered by time and channel."""
    with transaction(ledger.engine) as session:
        rows = usage_log.entries(
            session,
            company_id=company.company_id,
            channel=int(Channel.parse(channel)) if channel else None,
            since=since,
            until=until,
            after_seq=after_seq,
            limit=limit,
        )
    return EntryPage(
        entries=[_out(r) for r in rows], next_after_seq=rows[-1].seq if len(rows) == limit else None
    )


@router.get("/v1/receipts/{seq}", response_model=ReceiptEntryOut)
def receipt(
    seq: Annotated[int, Path(gt=0, lt=1 << 63)],
    ledger: LedgerDep,
    company: CompanyDep,
    tree_size: Annotated[
        int | None,
        Query(ge=1, lt=1 << 63, description="prove against this older anchor (default: newest)"),
    ] = None,
) -> ReceiptEntryOut:
    """Return one of the calling company's entries, with its proof against an anchored root."""
    # One snapshot: the entry, the anchor and the tree the proof is read from.
    with connect(ledger.engine, read_only=True) as conn, Session(bind=conn) as session:
        row = usage_log.entry(session, seq)
        if row is None or row.company_id != company.company_id:
            raise NotFound(f"no entry {seq} of this company", seq=seq)
        found = receipts.inclusion(
            conn, log_id=ledger.settings.log_id, seq=seq, tree_size=tree_size
        )
    proof = None
    if found is not None:
        proof = InclusionOut(
            tree_size=found.anchor.tree_size,
            root=found.anchor.root.hex(),
            anchor_block=found.anchor.block_number,
            inclusion=[h.hex() for h in found.path],
        )
    return ReceiptEntryOut(**_out(row).model_dump(), leaf_hash=row.entry_hash, proof=proof)


@router.post("/v1/outcomes", response_model=ReceiptOut, status_code=201)
def report_outcome(body: OutcomeIn, ledger: LedgerDep, company: CompanyDep) -> ReceiptOut:
    """Report how a recorded contact went (answered, no answer, refused by the consumer)."""
    assert company.company_id is not None
    with transaction(ledger.engine) as session:
        got = usage_log.record_outcome(
            session,
            company_id=company.company_id,
            seq=body.seq,
            outcome=Outcome(body.outcome),
            at=int(time.time()),
        )
    return ReceiptOut(seq=got.seq, entry_hash=got.entry_hash)


@router.get("/v1/me/contacts", response_model=list[ContactedOut], tags=["consumer"])
def who_contacted_me(
    ledger: LedgerDep, consumer: ConsumerDep, after_seq: AfterSeq = 0, limit: PageSize = 100
) -> list[ContactedOut]:
    """List who contacted the signed-in consumer: when, on which channel, under which grant."""
    with transaction(ledger.engine) as session:
        rows = usage_log.entries(
            session, consumer=consumer, decision=EntryKind.ALLOWED, after_seq=after_seq, limit=limit
        )
    return [
        ContactedOut(
            at=r.at,
            company_id=r.company_id,
            channel=Channel(r.channel).name.lower(),
            grant_version=r.grant_version,
            seq=r.seq,
        )
        for r in rows
    ]
