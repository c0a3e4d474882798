"""The current snapshots the checks read, their numbers memory-mapped, answering membership.

Example:
    >>> cache = OppositionCache(engine=engine, directory=settings.data_dir / "lists")
    >>> cache.status(parse_phone("020 7946 0000", default_region="GB"), company_id=1).listed
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from sqlalchemy.engine import Engine

from ledger.domain import contacts
from ledger.domain.decision import OppositionStatus
from ledger.domain.errors import ListUnavailable
from ledger.lists.arrays import Numbers, member
from ledger.lists.files import open_snapshot
from ledger.lists.store import ListKey, OppositionListBase, current_snapshots, list_key
from ledger.settings import Settings


class OppositionCache:
    """Answers membership from the memory-mapped arrays of the current snapshots.

    Metadata is re-read from the database at most every ``refresh_seconds``, so an import by
    another process (the CLI) is seen within that time; an import through this object is seen
    at once. Staleness needs no refresh: it is judged from the fetch time at each decision.

    Example:
        >>> cache = OppositionCache(engine=engine, directory=settings.data_dir / "lists")
        >>> import_file(Path("tps.txt"), ListImport(region="GB", fmt=ListFormat.LINES), cache=cache)
        >>> cache.status(parse_phone("020 7946 0000", default_region="GB"), company_id=1)
    """

    def __init__(self, *, engine: Engine, directory: Path, refresh_seconds: float = 5.0) -> None:
        self.engine = engine
        self.directory = directory
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._current: dict[ListKey, OppositionListBase] = {}
        self._arrays: dict[str, Numbers] = {}
        self._refreshed_at = float("-inf")

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine) -> OppositionCache:
        """The cache of the data directory's ``lists/`` folder."""
        return cls(
            engine=engine,
            directory=settings.data_dir / "lists",
            refresh_seconds=settings.list_refresh_seconds,
        )

    def status(self, contact: contacts.Contact, *, company_id: int) -> OppositionStatus:
        """What the region's list and the company's own list say about ``contact``.

        Staleness is left to the decision, which judges it from the fetch time returned.

        Raises:
            ListUnavailable: a current snapshot's file is missing or damaged.
        """
        if contact.kind is not contacts.ContactKind.PHONE:
            return OppositionStatus()  # the lists hold phone numbers only
        self._refresh_if_due()
        number = np.array([int(contact.value[1:])], dtype=np.uint64)
        national = self._current.get(list_key(region=contact.region, company_id=None))
        company = self._current.get(list_key(region=None, company_id=company_id))
        return OppositionStatus(
            version=None if national is None else national.version,
            listed=self._lists(national, number),
            fetched_at=None if national is None else national.fetched_at,
            max_age=None if national is None else national.max_age,
            company_version=None if company is None else company.version,
            company_listed=self._lists(company, number),
        )

    def statuses(
        self, many: Sequence[contacts.Contact], *, company_id: int
    ) -> list[OppositionStatus | ListUnavailable]:
        """``status`` of each contact, with one array lookup per list rather than per contact.

        A contact whose list cannot be read gets the ``ListUnavailable`` that ``status`` would
        have raised for it; the others are answered.
        """
        out: list[OppositionStatus | ListUnavailable] = [OppositionStatus()] * len(many)
        phones = [i for i, c in enumerate(many) if c.kind is contacts.ContactKind.PHONE]
        if not phones:
            return out  # the lists hold phone numbers only
        self._refresh_if_due()
        numbers = np.array([int(many[i].value[1:]) for i in phones], dtype=np.uint64)
        company = self._current.get(list_key(region=None, company_id=company_id))
        company_listed: npt.NDArray[np.bool_] | ListUnavailable
        try:
            company_listed = self._members(company, numbers)
        except ListUnavailable as exc:
            company_listed = exc
        by_region: dict[str | None, list[int]] = {}
        for at, i in enumerate(phones):
            by_region.setdefault(many[i].region, []).append(at)
        for region, ats in by_region.items():
            national = self._current.get(list_key(region=region, company_id=None))
            # The national list is read first, as ``status`` does: its failure is the one named.
            try:
                listed = self._members(national, numbers[ats])
                if isinstance(company_listed, ListUnavailable):
                    raise company_listed
            except ListUnavailable as exc:
                for at in ats:
                    out[phones[at]] = exc
                continue
            for k, at in enumerate(ats):
                out[phones[at]] = OppositionStatus(
                    version=None if national is None else national.version,
                    listed=bool(listed[k]),
                    fetched_at=None if national is None else national.fetched_at,
                    max_age=None if national is None else national.max_age,
                    company_version=None if company is None else company.version,
                    company_listed=bool(company_listed[at]),
                )
        return out

    def contains_many(
        self, numbers: Numbers, *, region: str | None = None, company_id: int | None = None
    ) -> npt.NDArray[np.bool_]:
        """Bulk membership of E.164 integers in a region's (or a company's) current list.

        Raises:
            ListUnavailable: no current list for that region or company, or its file is bad.
        """
        self._refresh_if_due()
        key = list_key(region=region, company_id=company_id)
        meta = self._current.get(key)
        if meta is None:
            raise ListUnavailable(f"{key[0]} {key[1]}", "no list loaded")
        return member(self.load(meta), numbers)

    def current(self) -> list[OppositionListBase]:
        """The current snapshot of every region and company, national lists first."""
        self.refresh()
        return sorted(
            self._current.values(),
            key=lambda m: (m.company_id is not None, m.company_id or 0, m.region),
        )

    def current_snapshot(self, *, region: str, company_id: int | None) -> OppositionListBase | None:
        """The current snapshot of a region's list, or of the company's if ``company_id``."""
        self.refresh()
        return self._current.get(list_key(region=region, company_id=company_id))

    def load(self, meta: OppositionListBase) -> Numbers:
        """A snapshot's numbers, mapped once per process and shared by every thread.

        Raises:
            ListUnavailable: its file is missing or does not match its metadata.
        """
        loaded = self._arrays.get(meta.version)
        if loaded is not None:
            return loaded
        with self._lock:
            loaded = self._arrays.get(meta.version)
            if loaded is not None:
                return loaded
            numbers = open_snapshot(directory=self.directory, meta=meta)
            self._arrays[meta.version] = numbers
            return numbers

    def refresh(self) -> None:
        """Re-reads which snapshots are current now, whenever the last refresh was."""
        current = current_snapshots(engine=self.engine)
        with self._lock:
            self._current = current
            live = {m.version for m in current.values()}
            # Drop the mappings of superseded snapshots (their pages go with them).
            self._arrays = {v: a for v, a in self._arrays.items() if v in live}
            self._refreshed_at = time.monotonic()

    def _refresh_if_due(self) -> None:
        if time.monotonic() - self._refreshed_at >= self.refresh_seconds:
            self.refresh()

    def _members(self, meta: OppositionListBase | None, numbers: Numbers) -> npt.NDArray[np.bool_]:
        if meta is None:
            return np.zeros(numbers.shape, dtype=np.bool_)
        return member(self.load(meta), numbers)

    def _lists(self, meta: OppositionListBase | None, number: Numbers) -> bool:
        return meta is not None and bool(member(self.load(meta), number)[0])
