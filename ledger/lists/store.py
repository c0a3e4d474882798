"""The snapshot table: one row of metadata per immutable snapshot, the newest one current.

The numbers themselves are in files (``ledger.lists.files``); the rows are what every process
agrees on, so the current version of a list is whatever the database says it is.

Example:
    >>> record_snapshot(engine=engine, meta=meta)
    True
    >>> current_snapshots(engine=engine)[list_key(region="US", company_id=None)].version
    'US-20261101T000000Z-...'
"""

from __future__ import annotations

from sqlalchemy import BigInteger, func
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel, col, select

from ledger.db.engine import transaction

# ("region", "US") for a national list, ("company", 7) for a company's own list.
ListKey = tuple[str, str | int]


class OppositionListBase(SQLModel):
    version: str = Field(unique=True, index=True)
    # A national list's region; for a company list, the region its numbers were parsed with.
    region: str
    company_id: int | None = Field(default=None, sa_type=BigInteger, index=True)
    source: str
    fetched_at: int = Field(sa_type=BigInteger)  # unix seconds the registry copy was taken
    max_age: int | None = Field(default=None, sa_type=BigInteger)  # seconds; None: no limit
    count: int = Field(sa_type=BigInteger)  # numbers in the snapshot
    added: int = Field(sa_type=BigInteger)  # numbers new against the parent
    removed: int = Field(sa_type=BigInteger)  # numbers of the parent no longer listed
    lines: int = Field(sa_type=BigInteger)  # lines read from the source file
    invalid: int = Field(sa_type=BigInteger)  # lines that held no valid number
    parent: str | None = None  # the snapshot a delta was applied to
    digest: str  # SHA-256 of the array's bytes: checked when a process loads the file
    imported_at: int = Field(sa_type=BigInteger)


class OppositionList(OppositionListBase, table=True):
    """One immutable snapshot; the newest of its region (or company) is current."""

    __tablename__ = "opposition_list"

    id: int | None = Field(default=None, primary_key=True)


def list_key(*, region: str | None, company_id: int | None) -> ListKey:
    """Which list a snapshot belongs to: a company's list whatever its numbers' region."""
    if company_id is not None:
        return ("company", company_id)
    return ("region", region or "")


def current_snapshots(*, engine: Engine) -> dict[ListKey, OppositionListBase]:
    """The newest snapshot of every region's list and of every company's list."""
    newest_id = func.max(OppositionList.id)
    national = (
        select(newest_id)
        .where(col(OppositionList.company_id).is_(None))
        .group_by(col(OppositionList.region))
    )
    company = (
        select(newest_id)
        .where(col(OppositionList.company_id).is_not(None))
        .group_by(col(OppositionList.company_id))
    )
    with transaction(engine) as session:
        ids = [*session.exec(national).all(), *session.exec(company).all()]
        rows = session.exec(select(OppositionList).where(col(OppositionList.id).in_(ids))).all()
        metas = [OppositionListBase.model_validate(row, from_attributes=True) for row in rows]
    return {list_key(region=m.region, company_id=m.company_id): m for m in metas}


def record_snapshot(*, engine: Engine, meta: OppositionListBase) -> bool:
    """Adds ``meta`` as the newest snapshot of its list; False if that version is already in.

    A version names its list, fetch time and numbers, so importing the same copy twice
    records it once.
    """
    with transaction(engine) as session:
        exists = session.exec(
            select(OppositionList.id).where(OppositionList.version == meta.version)
        ).first()
        if exists is None:
            session.add(OppositionList.model_validate(meta))
    return exists is None
