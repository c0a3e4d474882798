"""Many checks at once: a batch of contacts, or a CSV file scrubbed chunk by chunk.

Each chunk is answered as the single check answers each of its rows (``services.checks``),
with the work shared: contacts parsed across processes (``bulk_parse``), the ledger head read
once, links and statutory counters read with one query per chunk (``bulk_reads``), the
opposition lists looked up with one array search per list, one transaction, and the pure
``decide`` per row. A recording chunk holds the usage log's writer lock throughout, and each
contact it records counts toward the windows of the rows after it, so quotas stay exact.

An invalid contact is an answer for its row, not a failure of the whole batch.
"""

from __future__ import annotations

import bisect
import csv
import io
import itertools
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

from sqlalchemy.engine import Connection

from ledger.audit.integrity import UsageLogCorrupt
from ledger.db.engine import DatabaseUnavailable, connect
from ledger.domain import contacts
from ledger.domain.channels import Channel
from ledger.domain.decision import DAY, Decision, OppositionStatus, Reason
from ledger.domain.errors import InvalidContact, InvalidInput, ListUnavailable, Unavailable
from ledger.domain.grants import CompanyStatus, GrantRecord
from ledger.domain.law import registry
from ledger.domain.law.rules import LimitKind
from ledger.domain.state import CompanyRecord, ConsumerRecord, LedgerState, LinkRecord
from ledger.index.state import IndexedState
from ledger.services import bulk_parse, bulk_reads, gc_pause
from ledger.services.checks import (
    Ask,
    Checker,
    CheckResult,
    SnapshotState,
    check_channel,
    unavailable_code,
)
from ledger.usage import log as usage_log
from ledger.usage.locks import lock
from ledger.usage.windows import allowed_times

SCRUB_COLUMNS = ["allowed", "reasons", "normalized"]
SCRUB_CHUNK_ROWS = 20_000  # rows per chunk of a scrub: parsed in parallel while one is decided


@dataclass(frozen=True, slots=True)
class Item:
    contact: str
    channel: Channel


@dataclass(frozen=True, slots=True)
class Outcome:
    index: int
    result: CheckResult | None = None
    error: InvalidInput | None = None


def check_many(
    checker: Checker,
    *,
    company_id: int,
    items: Iterable[Item],
    record: bool = False,
    now: int | None = None,
) -> list[Outcome]:
    """Checks each item as ``Checker.check`` would, one after the other, all at ``now``.

    Args:
        checker: the single check's checker (its state, log, lists, salt and clock).
        company_id: the asking company.
        items: the contacts and their channels.
        record: also append each answer to the usage log; a contact recorded counts toward
            the quota of the items after it.
        now: unix time of the contacts (default: the checker's clock, read once).

    Returns:
        One outcome per item, in order: its result, or its error when the contact is invalid.
    """
    items = list(items)
    parsed = bulk_parse.parse_many(
        [i.contact for i in items], default_region=checker.default_region
    )
    at = int(checker.clock()) if now is None else now
    with gc_pause.paused():
        return _outcomes(checker, company_id, items, parsed, at, record)


def _outcomes(
    checker: Checker,
    company_id: int,
    items: list[Item],
    parsed: list[bulk_parse.Parsed],
    at: int,
    record: bool,
) -> list[Outcome]:
    outcomes: list[Outcome | None] = [None] * len(items)
    asks: list[Ask] = []
    where: list[int] = []
    for index, (item, contact) in enumerate(zip(items, parsed, strict=True)):
        try:
            asks.append(_ask(checker, company_id, item.contact, contact, item.channel, at, record))
        except InvalidContact as exc:
            outcomes[index] = Outcome(index, error=exc)
        else:
            where.append(index)
    for index, result in zip(where, answer_many(checker, asks), strict=True):
        outcomes[index] = Outcome(index, result=result)
    return [o for o in outcomes if o is not None]


def scrub_lines(
    checker: Checker,
    *,
    company_id: int,
    channel: Channel,
    rows: Iterator[list[str]],
    column: int,
    chunk_rows: int = SCRUB_CHUNK_ROWS,
) -> Iterator[str]:
    """CSV text of ``rows``, each with allowed / reasons / normalised contact appended, one
    chunk at a time (nothing is recorded).

    The next chunk is read and handed to the parsing processes before this one is decided,
    so parsing and deciding overlap; at most two chunks are held at once.
    """

    def start() -> tuple[list[list[str]], list[bulk_parse.Slice]]:
        chunk = list(itertools.islice(rows, chunk_rows))
        cells = [row[column] for row in chunk if column < len(row)]
        return chunk, bulk_parse.submit(cells, default_region=checker.default_region)

    pending = start()
    while pending[0]:
        chunk, futures = pending
        pending = start()
        parsed = iter(bulk_parse.gather(futures))
        with gc_pause.paused():  # released before the chunk is handed on
            at = int(checker.clock())
            asks: list[Ask] = []
            cells: list[list[str] | None] = []  # the appended cells, None where a check answers
            for row in chunk:
                if column >= len(row):
                    cells.append(["false", "missing_column", ""])
                    continue
                try:
                    asks.append(_ask(checker, company_id, row[column], next(parsed), channel, at))
                except InvalidContact as exc:
                    cells.append(["false", exc.code, ""])
                else:
                    cells.append(None)
            results = iter(answer_many(checker, asks))
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            for row, added in zip(chunk, cells, strict=True):
                if added is None:
                    result = next(results)
                    d = result.decision
                    added = [str(d.allowed).lower(), " ".join(d.codes), result.contact.value]
                writer.writerow([*row, *added])
        yield out.getvalue()


def csv_line(row: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(row)
    return out.getvalue()


def answer_many(checker: Checker, asks: Sequence[Ask]) -> list[CheckResult]:
    """The results of ``asks`` (parsed, of one company, at one time), in order."""
    if not asks:
        return []
    try:
        if checker.integrity is not None:
            checker.integrity.ensure_intact()
        with gc_pause.paused():
            return _Chunk(checker, asks).answer()
    except (DatabaseUnavailable, UsageLogCorrupt) as exc:
        # Without a usage log to trust nothing can be counted: refuse, and record nothing.
        refusal = Decision(False, [Reason(exc.code, exc.message)])
        return [CheckResult(refusal, ask.contact) for ask in asks]


def _ask(
    checker: Checker,
    company_id: int,
    raw: str,
    parsed: bulk_parse.Parsed,
    channel: Channel,
    at: int,
    record: bool = False,
) -> Ask:
    """The question of one row, or the ``InvalidContact`` the single check raises for it."""
    if isinstance(parsed, str):
        raise InvalidContact(raw, parsed)
    check_channel(parsed, channel)
    return Ask(
        company_id=company_id,
        contact=parsed,
        commitment=contacts.commitment(parsed, checker.salt),
        channel=channel,
        at=at,
        record=record,
    )


@dataclass(frozen=True, slots=True)
class _View:
    """What the ledger says about one row at the chunk's block (``checks._LedgerView``)."""

    consumer: str | None
    grant: GrantRecord | None
    consumer_record: ConsumerRecord | None


@dataclass
class _Chunk:
    """One chunk's answers: state read at one block, counted and recorded in one transaction."""

    checker: Checker
    asks: Sequence[Ask]
    # Windows read once per chunk, by key; a recorded allow is added to those already read.
    _grant_windows: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    _cap_windows: dict[str, list[int]] = field(default_factory=dict)
    _contact_times: dict[tuple[str, int], list[int]] = field(default_factory=dict)

    def answer(self) -> list[CheckResult]:
        try:
            block, company, views = self._read_state()
        except Unavailable as exc:
            refusal = Decision(False, [Reason(unavailable_code(exc), exc.message)])
            return self._refuse_all(refusal)
        lists = self.checker.lists
        company_id = self.asks[0].company_id
        oppositions: list[OppositionStatus | ListUnavailable] = (
            [OppositionStatus()] * len(self.asks)
            if lists is None
            else lists.statuses([a.contact for a in self.asks], company_id=company_id)
        )
        record = self.asks[0].record
        # As the single check: a recording chunk counts and appends under the writer lock; one
        # that records nothing counts from a snapshot that waits for no writer.
        with connect(self.checker.engine, read_only=not record) as conn:
            if record:
                lock(conn)
            statutory = self._statutory(conn)
            results = []
            for ask, view, opposition, (days, refused_at) in zip(
                self.asks, views, oppositions, statutory, strict=True
            ):
                if isinstance(opposition, ListUnavailable):
                    reason = Reason(opposition.code, opposition.message)
                    refusal = Decision(False, [reason], consumer=view.consumer)
                    results.append(self._recorded(conn, ask, refusal, None))
                    continue
                results.append(
                    self._decide(conn, ask, block, company, view, opposition, days, refused_at)
                )
            return results

    def _read_state(self) -> tuple[int, CompanyRecord, list[_View]]:
        state = self.checker.state
        block = state.head().number  # first, outside the snapshot: it may ask the node
        company_id = self.asks[0].company_id
        snapshot: AbstractContextManager[LedgerState] = (
            state.snapshot() if isinstance(state, SnapshotState) else nullcontext(state)
        )
        with snapshot as reads:
            company = reads.company(company_id, block)
            links = self._links(reads, block)
            grants: dict[tuple[str, int], GrantRecord] = {}
            records: dict[str, ConsumerRecord] = {}
            views = []
            for ask in self.asks:
                consumer = links[ask.commitment.hex()].consumer
                if consumer is None or company.status is CompanyStatus.NONE:
                    views.append(_View(consumer, None, None))
                    continue
                key = (consumer, int(ask.channel))
                if key not in grants:
                    grants[key] = reads.grant(consumer, company_id, int(ask.channel), block)
                if consumer not in records:
                    records[consumer] = reads.consumer(consumer, block)
                views.append(_View(consumer, grants[key], records[consumer]))
        return block, company, views

    def _links(self, reads: LedgerState, block: int) -> dict[str, LinkRecord]:
        hexes = [a.commitment.hex() for a in self.asks]
        index = _index_of(self.checker.state)
        if index is None:  # the chain itself: one call per contact
            return {h: reads.link(bytes.fromhex(h), block) for h in set(hexes)}
        with connect(index.engine, read_only=True) as conn:
            found = bulk_reads.links_at(conn, hexes, block)
        unlinked = LinkRecord(None, 0)
        return {h: found.get(h, unlinked) for h in hexes}

    def _statutory(self, conn: Connection) -> list[tuple[int, int | None]]:
        """Per row, the longest statutory frequency period (days) and the last refusal if a
        pause after refusal applies (``checks._statutory_counts``); the contact times of the
        period are read for all rows at once into ``_contact_times``."""
        company_id, at = self.asks[0].company_id, self.asks[0].at
        rules: dict[tuple[str | None, Channel], tuple[int, bool]] = {}
        per_row: list[tuple[int, bool]] = []
        for ask in self.asks:
            key = (ask.contact.region, ask.channel)
            if key not in rules:
                limits = registry.limits(ask.contact.region, ask.channel, at)
                days = max(
                    (r.period_days for r in limits if r.kind is LimitKind.FREQUENCY), default=0
                )
                paused = any(r.kind is LimitKind.PAUSE_AFTER_REFUSAL for r in limits)
                rules[key] = (days, paused)
            per_row.append(rules[key])
        refusals: dict[tuple[str, int], int] = {}
        for channel in {a.channel for a in self.asks}:
            rows = [(a, r) for a, r in zip(self.asks, per_row, strict=True) if a.channel is channel]
            counted = [a.commitment.hex() for a, (days, _) in rows if days]
            if counted:
                longest = max(days for _, (days, _) in rows)
                times = bulk_reads.contact_times_many(
                    conn,
                    contacts=counted,
                    company_id=company_id,
                    channel=int(channel),
                    since=at - longest * DAY,
                )
                for contact in counted:
                    self._contact_times[contact, int(channel)] = times.get(contact, [])
            pausing = [a.commitment.hex() for a, (_, pause) in rows if pause]
            if pausing:
                last = bulk_reads.last_refusals(
                    conn, contacts=pausing, company_id=company_id, channel=int(channel)
                )
                refusals.update({(c, int(channel)): t for c, t in last.items()})
        return [
            (days, refusals.get((a.commitment.hex(), int(a.channel))) if pause else None)
            for a, (days, pause) in zip(self.asks, per_row, strict=True)
        ]

    def _decide(
        self,
        conn: Connection,
        ask: Ask,
        block: int,
        company: CompanyRecord,
        view: _View,
        opposition: OppositionStatus,
        days: int,
        refused_at: int | None,
    ) -> CheckResult:
        window: list[int] = []
        cap_window: list[int] = []
        if view.consumer is not None and view.grant is not None and view.grant.active:
            window = self._grant_window(conn, ask, view.consumer, view.grant)
            cap_window = self._cap_window(conn, ask, view.consumer, view.consumer_record)
        since = ask.at - days * DAY
        contact_key = (ask.commitment.hex(), int(ask.channel))
        company_contacts = (
            [t for t in self._contact_times[contact_key] if t > since] if days else []
        )
        decision = ask.decide(
            block_number=block,
            company=company,
            consumer=view.consumer,
            grant=view.grant,
            consumer_record=view.consumer_record,
            window=window,
            cap_window=cap_window,
            opposition=opposition,
            company_contacts=company_contacts,
            last_refusal_at=refused_at,
        )
        if not ask.record:
            return CheckResult(decision, ask.contact)
        return self._recorded(conn, ask, decision, ask.counted(decision, window, view.grant))

    def _grant_window(
        self, conn: Connection, ask: Ask, consumer: str, grant: GrantRecord
    ) -> list[int]:
        key = (consumer, int(ask.channel))
        if key not in self._grant_windows:
            self._grant_windows[key] = allowed_times(
                conn,
                consumer=consumer,
                company_id=ask.company_id,
                channel=int(ask.channel),
                since=ask.at - grant.period,
            )
        return list(self._grant_windows[key])

    def _cap_window(
        self, conn: Connection, ask: Ask, consumer: str, rec: ConsumerRecord | None
    ) -> list[int]:
        if rec is None or rec.cap_max == 0:
            return []
        if consumer not in self._cap_windows:
            self._cap_windows[consumer] = allowed_times(
                conn, consumer=consumer, since=ask.at - rec.cap_period
            )
        return list(self._cap_windows[consumer])

    def _recorded(
        self, conn: Connection, ask: Ask, decision: Decision, answer: Decision | None
    ) -> CheckResult:
        """Appends ``decision`` when the chunk records (answering ``answer`` if given), and
        counts an allowed contact in the windows already read for the rows after it."""
        shown = decision if answer is None else answer
        if not ask.record:
            return CheckResult(shown, ask.contact)
        receipt = usage_log.append(conn, ask.entry(decision))
        if decision.allowed:
            consumer = decision.consumer
            for times in (
                self._grant_windows.get((consumer, int(ask.channel))) if consumer else None,
                self._cap_windows.get(consumer) if consumer else None,
                self._contact_times.get((ask.commitment.hex(), int(ask.channel))),
            ):
                if times is not None:
                    bisect.insort(times, ask.at)
        return CheckResult(shown, ask.contact, receipt)

    def _refuse_all(self, refusal: Decision) -> list[CheckResult]:
        """A refusal decided before the log was read, for every row; recorded if recording."""
        if not self.asks[0].record:
            return [CheckResult(refusal, ask.contact) for ask in self.asks]
        with connect(self.checker.engine) as conn:
            return [self._recorded(conn, ask, refusal, None) for ask in self.asks]


def _index_of(state: LedgerState) -> IndexedState | None:
    """The event index behind the checker's state, when it reads one (set-based reads)."""
    index = getattr(state, "index", state)
    return index if isinstance(index, IndexedState) else None
