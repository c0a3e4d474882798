"""The usage log's anchors on chain, and the consistency proofs between them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import AuditReaderDep, LedgerDep
from api.schemas import AnchorOut, ConsistencyOut
from ledger.audit import receipts
from ledger.audit.anchors import Anchor, anchors_from_index
from ledger.db.engine import connect

router = APIRouter(tags=["audit"])
TreeSize = Annotated[int, Path(ge=1, lt=1 << 63, description="an anchored tree size")]


def anchor_out(a: Anchor) -> AnchorOut:
    return AnchorOut(
        log_id=a.log_id,
        tree_size=a.tree_size,
        root=a.root.hex(),
        block_number=a.block_number,
        anchored_at=a.anchored_at,
        tx_hash=a.tx_hash,
    )


@router.get("/v1/anchors", response_model=list[AnchorOut])
def list_anchors(
    ledger: LedgerDep,
    _: AuditReaderDep,
    after_size: Annotated[
        int, Query(ge=0, lt=1 << 63, description="the last tree_size of the previous page")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AnchorOut]:
    """List the usage log's anchors as the index read them from the chain, oldest first."""
    with connect(ledger.engine, read_only=True) as conn:
        found = anchors_from_index(conn, ledger.settings.log_id, after_size=after_size, limit=limit)
    return [anchor_out(a) for a in found]


@router.get("/v1/anchors/{size1}/consistency/{size2}", response_model=ConsistencyOut)
def consistency(
    size1: TreeSize, size2: TreeSize, ledger: LedgerDep, _: AuditReaderDep
) -> ConsistencyOut:
    """Prove that the anchored tree of size2 entries extends the one of size1."""
    with connect(ledger.engine, read_only=True) as conn:
        found = receipts.consistency(conn, log_id=ledger.settings.log_id, size1=size1, size2=size2)
    return ConsistencyOut(
        first=anchor_out(found.first),
        second=anchor_out(found.second),
        proof=[h.hex() for h in found.path],
    )
