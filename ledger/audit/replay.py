"""Replaying the usage log: every recorded decision decided again from the chain alone.

For each entry the replay reads the ledger at the entry's block from ``ChainHistory`` (the
contract's events, indexed apart from the operator's index), counts the rolling windows and
statutory frequencies from the log itself (the allowed entries before it), and decides again
with the domain's own ``decide``. An allowed entry the chain and the log say should have been
refused is a violation; a refusal that should have been allowed is reported too, and so is an
answer given for other reasons (rule ids, grant version, consumer, list versions, basis).

What the chain and the log cannot tell, the replay takes from the entry and says so:

- opposition-list membership and freshness (the lists are not on chain): the replay takes the
  entry's word (listed, absent, stale) and checks only that an answer resting on a list names
  the list version the law needs;
- a declared basis (an ongoing contract, an appointment...): the facts as the entry declares
  them, judged again at the entry's time;
- the contact's region and time zone (an entry holds only the contact's commitment): the
  places the recorded rule of law covers are tried, and all the entries of one contact point
  must agree on one of them, so that a call allowed at 21:00 in Paris does not pass as one made
  in Guadeloupe once the number's earlier calls placed it.

The block an entry names must be on the chain; that it was the newest the operator could have
read is not checked (how far the index may lag is the operator's setting).

A refusal recorded before the ledger was read (no block: the index lagged, the node or the
list was unavailable) is not replayable: failing closed is never a violation.

Example:
    >>> history = ChainHistory.read(chain)
    >>> report = replay(entries_from_database(engine), history)
    >>> report.ok, report.summary()["violations"]
"""

from __future__ import annotations

import json
import multiprocessing
from bisect import bisect_right, insort
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from math import inf
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers.timezone import _country_level_time_zones_for_number
from sqlalchemy import select
from sqlalchemy.engine import Engine

from ledger.audit.chain_state import ChainHistory
from ledger.chain.client import Chain
from ledger.db.engine import connect
from ledger.domain.bases import DECLARABLE, BasisKind, Declared
from ledger.domain.channels import Channel
from ledger.domain.decision import DAY, Decision, OppositionStatus, Snapshot, decide
from ledger.domain.errors import InvalidInput
from ledger.domain.grants import ALL_DAYS, ALL_HOURS, CompanyStatus, GrantRecord
from ledger.domain.law import registry
from ledger.domain.law.rules import LimitKind
from ledger.domain.state import CompanyRecord, ConsumerRecord
from ledger.index.indexer import Progress
from ledger.usage.entries import EntryKind, Outcome, UsageEntry

NOT_RECHECKABLE_LISTS = "not re-checkable: opposition list membership"
NOT_RECHECKABLE_DECLARED = "not re-checkable: the facts of a declared basis"
INFERRED_PLACE = "inferred: the contact's region and time zone, from the rule of law recorded"

_BATCH = 20_000  # entries read from the database at a time
# Plain strings on the hot path: an enum member read from its class is a descriptor call.
_ALLOWED, _OUTCOME = EntryKind.ALLOWED.value, EntryKind.OUTCOME.value
_REFUSED_BY_CONSUMER = Outcome.REFUSED_BY_CONSUMER.value
_ON_A_LIST = BasisKind.OPPOSITION_LIST
# The counters of a report, summed over the slices of a parallel replay.
_COUNTS = (
    "entries",
    "decisions",
    "agreed",
    "outcomes",
    "not_replayable",
    "on_lists",
    "declared",
    "inferred_place",
)

Place = tuple[str | None, str | None]  # (region, time zone) of a contact point
_NOWHERE: Place = (None, None)  # an e-mail address, or a place no recorded rule names


class FindingKind(StrEnum):
    VIOLATION = "violation"  # allowed, but the chain and the log say refused
    WRONGLY_REFUSED = "wrongly_refused"  # refused, but the chain and the log say allowed
    MISMATCH = "mismatch"  # the same answer for other reasons, rules, grant or consumer
    UNKNOWN_BLOCK = "unknown_block"  # an allowed entry read a block the chain does not have


@dataclass(frozen=True, slots=True)
class Recorded:
    """One usage-log entry as the replay reads it (JSON fields parsed)."""

    seq: int
    at: int
    company_id: int
    contact: str  # hex commitment
    channel: int
    consumer: str | None
    grant_version: int | None
    block_number: int | None
    list_version: str | None
    decision: str
    reasons: tuple[str, ...]
    outcome: str | None = None
    refers_to: int | None = None
    rules: tuple[str, ...] | None = None  # None: written before rules were recorded
    basis: dict[str, Any] | None = None
    basis_kind: str | None = None  # the basis' "kind"

    @classmethod
    def of(cls, fields: dict[str, Any]) -> Recorded:
        """An entry from a database row or an export line (JSON columns raw or parsed).

        Raises:
            InvalidInput: a field is missing or unreadable.
        """
        try:
            channel = fields["channel"]
            return cls(
                seq=int(fields["seq"]),
                at=int(fields["at"]),
                company_id=int(fields["company_id"]),
                contact=str(fields["contact"]),
                channel=_channel(channel),
                consumer=fields.get("consumer"),
                grant_version=_int_or_none(fields.get("grant_version")),
                block_number=_int_or_none(fields.get("block_number")),
                list_version=fields.get("list_version"),
                decision=str(fields["decision"]),
                reasons=_strings(fields.get("reasons")) or (),
                outcome=fields.get("outcome"),
                refers_to=_int_or_none(fields.get("refers_to")),
                rules=_strings(fields.get("rules")),
                basis=(basis := _object(fields.get("basis"))),
                basis_kind=_kind(basis),
            )
        except (KeyError, TypeError, ValueError, InvalidInput) as exc:
            seq = fields.get("seq") if isinstance(fields, dict) else None
            raise InvalidInput(f"unreadable usage entry {seq}: {exc!r}", seq=seq) from exc

    def as_dict(self) -> dict[str, Any]:
        """What was recorded, as a finding shows it."""
        return {
            "decision": self.decision,
            "reasons": list(self.reasons),
            "rules": None if self.rules is None else list(self.rules),
            "grant_version": self.grant_version,
            "consumer": self.consumer,
            "block_number": self.block_number,
            "list_version": self.list_version,
            "basis": self.basis_kind,
        }


@dataclass(frozen=True, slots=True)
class Finding:
    """An entry whose recorded decision the chain and the log do not give."""

    seq: int
    kind: FindingKind
    recorded: dict[str, Any]
    chain: dict[str, Any]  # the replayed decision
    reasons: list[dict[str, str]]  # the replayed decision's reasons (code, message)
    differences: list[str]  # the fields that differ

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "kind": self.kind.value,
            "recorded": self.recorded,
            "chain": self.chain,
            "reasons": self.reasons,
            "differences": self.differences,
        }

    def line(self) -> str:
        """One readable line: seq, kind, what was recorded, what the chain says, and why."""
        why = "; ".join(f"{r['code']}: {r['message']}" for r in self.reasons)
        recorded = f"{self.recorded['decision']} {self.recorded['reasons']}"
        said = f"{self.chain['decision']} {self.chain['reasons']}"
        differ = ", ".join(self.differences)
        head = f"seq {self.seq} {self.kind.value}: recorded {recorded}, chain says {said}"
        return f"{head} ({differ}) — {why}"


@dataclass
class ReplayReport:
    """The outcome of a replay: counts, and every entry that disagrees."""

    chain_head: int
    entries: int = 0  # entries read (every kind, every company)
    decisions: int = 0  # decisions replayed (of the company asked about, if any)
    agreed: int = 0
    outcomes: int = 0  # outcome entries: not decisions, they feed the pause after a refusal
    not_replayable: int = 0  # refusals recorded before the ledger was read (fail closed)
    on_lists: int = 0  # answers resting on opposition-list membership
    declared: int = 0  # answers resting on a declared basis
    inferred_place: int = 0  # decisions that depend on the contact's (inferred) local time
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def count(self, kind: FindingKind) -> int:
        return sum(1 for f in self.findings if f.kind is kind)

    def summary(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "chain_head": self.chain_head,
            "entries": self.entries,
            "decisions": self.decisions,
            "agreed": self.agreed,
            "violations": self.count(FindingKind.VIOLATION) + self.count(FindingKind.UNKNOWN_BLOCK),
            "wrongly_refused": self.count(FindingKind.WRONGLY_REFUSED),
            "mismatches": self.count(FindingKind.MISMATCH),
            "outcomes": self.outcomes,
            "not_replayable": self.not_replayable,
            "not_rechecked": {
                NOT_RECHECKABLE_LISTS: self.on_lists,
                NOT_RECHECKABLE_DECLARED: self.declared,
                INFERRED_PLACE: self.inferred_place,
            },
        }

    def as_dict(self) -> dict[str, Any]:
        return {**self.summary(), "findings": [f.as_dict() for f in self.findings]}


def replay(
    entries: Iterable[Recorded],
    history: ChainHistory,
    *,
    company_id: int | None = None,
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
) -> ReplayReport:
    """Decides every recorded decision again from ``history`` and the log before it.

    A contact point's entries must agree on one place (region and time zone): the first pass
    settles each contact on the first place that gives its recorded answers; a contact whose
    later entry agrees only elsewhere is replayed again in a second pass that follows every
    place it can still be, entry by entry (an honest log needs no second pass).

    Args:
        entries: the whole log in ``seq`` order (every company: a consumer's global cap
            counts the contacts of all of them). A second pass reads it again: an iterator is
            then held in memory, a re-readable source (``Reread``, a list) is read again.
        history: the ledger at every block, from the chain.
        company_id: replay only this company's decisions (the others are still counted).
        progress: called now and then with the number of entries read so far.
        workers: processes that share the work (forked, so POSIX only). Each replays the
            entries of its share of the contact points and counts all the others: the answers
            are those of one process, in less time on several cores.

    Returns:
        The report: counts and the entries that disagree.
    """
    if workers > 1:
        log = entries if isinstance(entries, Sequence) else list(entries)
        report = _in_parallel(log, history, company_id, workers)
    else:
        # A second pass reads the log again: an iterator that cannot be is kept in memory.
        again = entries if iter(entries) is not entries else list(entries)
        report = _replay_share(again, history, company_id, (0, 1), progress)
    if progress is not None:
        progress(report.entries)
    return report


def _replay_share(
    log: Iterable[Recorded],
    history: ChainHistory,
    company_id: int | None,
    share: tuple[int, int],
    progress: Callable[[int], None] | None = None,
) -> ReplayReport:
    """Replays the entries of one share of the contact points; counts every entry.

    Shares are by contact point, not by stretch of the log, so that each worker follows a
    contact's places through all its entries as one process would; the windows need every
    entry before each one, and counting one costs a few microseconds.
    """
    mine, shares = share
    exact: frozenset[str] = frozenset()
    while True:
        replayer = _Replayer(history, ReplayReport(chain_head=history.head.number), exact=exact)
        for n, entry in enumerate(log, 1):
            # A forked worker hashes strings with its parent's seed: every worker agrees.
            if shares == 1 or hash(entry.contact) % shares == mine:
                replayer.read(entry, decide_it=company_id is None or entry.company_id == company_id)
            else:
                replayer.count(entry)
            if progress is not None and n % 5_000 == 0:
                progress(n)
        if not replayer.moved or exact:
            return replayer.report
        exact = frozenset(replayer.moved)  # the second pass follows these contacts' places


# What forked workers share: set before the fork, read by ``_replay_forked`` in each child.
_SHARED: tuple[Sequence[Recorded], ChainHistory, int | None] | None = None


def _in_parallel(
    log: Sequence[Recorded], history: ChainHistory, company_id: int | None, workers: int
) -> ReplayReport:
    global _SHARED
    _SHARED = (log, history, company_id)
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_replay_forked, [(share, workers) for share in range(workers)])
    finally:
        _SHARED = None
    report = ReplayReport(chain_head=history.head.number)
    for part in parts:
        for name in _COUNTS:
            setattr(report, name, getattr(report, name) + getattr(part, name))
        report.findings += part.findings
    report.findings.sort(key=lambda f: f.seq)
    return report


def _replay_forked(share: tuple[int, int]) -> ReplayReport:
    assert _SHARED is not None  # set by the parent before the fork
    log, history, company_id = _SHARED
    return _replay_share(log, history, company_id, share)


def replay_log(
    chain: Chain,
    *,
    engine: Engine | None = None,
    export: Path | None = None,
    company_id: int | None = None,
    start_block: int = 0,
    on_chain: Progress | None = None,
    on_entries: Callable[[int, int | None], None] | None = None,
    workers: int = 1,
) -> ReplayReport:
    """Replays the live log (``engine``) or an export file against the chain's events.

    The live log's size is read before the chain, so that every entry replayed was written
    before the chain's head was read: an allowed entry naming a later block names a block
    that did not exist.

    Args:
        chain: the node and the ledger contract (only logs and headers are read).
        engine: the operator's database, for the live log.
        export: a JSON Lines export (``/v1/usage/export``) instead of the live log.
        company_id: replay only this company's decisions.
        start_block: the first block whose events are read (0: trust no deployment record).
        on_chain: progress of reading the chain (block, head, events so far).
        on_entries: progress of the replay (entries read, entries in all when known).
        workers: processes that share the replay (see ``replay``).

    Returns:
        The report.

    Raises:
        ChainUnavailable: the node cannot be reached.
        InvalidInput: the export is unreadable.
        ValueError: neither or both of ``engine`` and ``export``.
    """
    if (engine is None) == (export is None):
        raise ValueError("replay the live log or an export, one of them")
    size = None if engine is None else log_size(engine)
    history = ChainHistory.read(chain, start_block=start_block, progress=on_chain)
    if engine is not None:
        entries: Iterable[Recorded] = Reread(lambda: entries_from_database(engine, upto=size))
    else:
        assert export is not None  # one of the two, checked above
        entries = Reread(lambda: entries_from_export(export))

    def progress(n: int) -> None:
        if on_entries is not None:
            on_entries(n, size)

    return replay(entries, history, company_id=company_id, progress=progress, workers=workers)


class Reread(Iterable[Recorded]):
    """A log that each iteration reads again from its source (the database, an export), so
    that a replay's second pass needs no copy of it in memory."""

    def __init__(self, read: Callable[[], Iterator[Recorded]]) -> None:
        self.read = read

    def __iter__(self) -> Iterator[Recorded]:
        return self.read()


def entries_from_database(
    engine: Engine, *, upto: int | None = None, batch: int = _BATCH
) -> Iterator[Recorded]:
    """The live log in ``seq`` order (up to ``upto``), read in batches of plain rows."""
    table = UsageEntry.__table__  # type: ignore[attr-defined]
    columns = [table.c[name] for name in _COLUMNS]
    after = 0
    while True:
        query = select(*columns).where(table.c.seq > after)
        if upto is not None:
            query = query.where(table.c.seq <= upto)
        with connect(engine, read_only=True) as conn:
            rows = conn.execute(query.order_by(table.c.seq).limit(batch)).all()
        for row in rows:
            yield _from_row(row)
        if len(rows) < batch:
            return
        after = int(rows[-1][0])


def entries_from_export(path: Path) -> Iterator[Recorded]:
    """The entries of a JSON Lines export (``/v1/usage/export``); other lines are skipped.

    Raises:
        InvalidInput: a line is not JSON, or an entry line is unreadable.
    """
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                fields = json.loads(line)
            except ValueError as exc:
                raise InvalidInput(f"{path}:{number} is not JSON", line=number) from exc
            if not isinstance(fields, dict) or fields.get("type", "entry") != "entry":
                continue  # an anchor line, or anything else that is not an entry
            yield Recorded.of(fields)


def log_size(engine: Engine) -> int:
    """The newest ``seq`` of the live log (0 when empty)."""
    table = UsageEntry.__table__  # type: ignore[attr-defined]
    with connect(engine, read_only=True) as conn:
        newest = conn.execute(select(table.c.seq).order_by(table.c.seq.desc()).limit(1)).scalar()
    return 0 if newest is None else int(newest)


# ----- the replay -----


_LedgerAt = tuple[CompanyRecord, str | None, GrantRecord | None, ConsumerRecord | None]


@dataclass(frozen=True, slots=True)
class _Inputs:
    block: int
    company: CompanyRecord
    consumer: str | None
    grant: GrantRecord | None
    record: ConsumerRecord | None
    window: list[int]
    cap_window: list[int]


@dataclass
class _Replayer:
    """The replay's state: the log's windows so far, kept as sorted lists of times."""

    history: ChainHistory
    report: ReplayReport
    # Allowed contacts: by grant (consumer, company, channel), by consumer (the global cap),
    # and by contact point (commitment, company, channel: the statutory frequency).
    by_grant: dict[tuple[str, int, int], list[int]] = field(default_factory=dict)
    by_consumer: dict[str, list[int]] = field(default_factory=dict)
    by_contact: dict[tuple[str, int, int], list[int]] = field(default_factory=dict)
    refusals: dict[tuple[str, int, int], int] = field(default_factory=dict)
    # First pass: the place each contact point settled on, and the contacts whose later
    # entries agree only elsewhere. Second pass, for those (``exact``): every place each can
    # still be, those where all its entries that depend on local time gave their answers.
    settled: dict[str, Place] = field(default_factory=dict)
    moved: set[str] = field(default_factory=set)
    exact: frozenset[str] = frozenset()
    possible: dict[str, tuple[Place, ...]] = field(default_factory=dict)
    _block: int = -1
    _at_block: dict[tuple[str, int, int], _LedgerAt] = field(default_factory=dict)

    def read(self, entry: Recorded, *, decide_it: bool) -> None:
        """Replays ``entry`` (when ``decide_it``), then counts it for the entries after it."""
        self.report.entries += 1
        if entry.decision == _OUTCOME:
            self.report.outcomes += 1
        elif decide_it:
            self._replay(entry)
        self.count(entry)

    def count(self, entry: Recorded) -> None:
        """Counts ``entry`` in the windows and pauses of the entries after it."""
        if entry.decision == _OUTCOME:
            if entry.outcome == _REFUSED_BY_CONSUMER:
                key = (entry.contact, entry.company_id, entry.channel)
                self.refusals[key] = max(self.refusals.get(key, entry.at), entry.at)
            return
        if entry.decision != _ALLOWED:
            return
        if entry.consumer is not None:
            _add(self.by_grant, (entry.consumer, entry.company_id, entry.channel), entry.at)
            _add(self.by_consumer, entry.consumer, entry.at)
        _add(self.by_contact, (entry.contact, entry.company_id, entry.channel), entry.at)

    def _replay(self, entry: Recorded) -> None:
        report = self.report
        block = entry.block_number
        allowed = entry.decision == _ALLOWED
        if block is None or block > self.history.head.number:
            if not allowed:
                report.not_replayable += 1  # refused before the ledger was read: fail closed
                return
            report.decisions += 1
            why = "no ledger block" if block is None else f"block {block}, after the chain head"
            reason = {"code": "unknown_block", "message": f"an allowed contact that read {why}"}
            nothing = dict.fromkeys(entry.as_dict())
            report.findings.append(
                Finding(
                    entry.seq,
                    FindingKind.UNKNOWN_BLOCK,
                    entry.as_dict(),
                    nothing,
                    [reason],
                    ["block_number"],
                )
            )
            return
        report.decisions += 1
        inputs = self._inputs(entry, block)
        rule_places = _places(entry.rules or (), entry.channel)
        if not _place_matters(rule_places, entry.channel, inputs.grant):
            decision = decide(self._snapshot(entry, inputs, rule_places[0]))
            if _agrees(entry, decision):
                self._agreed(entry, decision)
            else:
                self._disagreed(entry, decision, [decision])
            return
        report.inferred_place += 1
        if entry.contact in self.exact:
            self._everywhere(entry, inputs, rule_places)
        else:
            self._where_settled(entry, inputs, rule_places)

    def _where_settled(
        self, entry: Recorded, inputs: _Inputs, rule_places: tuple[Place, ...]
    ) -> None:
        """The answer at the place the contact settled on, else at the first place that gives
        it (a contact that moves is marked for the second pass)."""
        settled = self.settled.get(entry.contact)
        decisions: list[Decision] = []
        skip = None
        if settled is not None and settled in _place_set(rule_places):
            decision = decide(self._snapshot(entry, inputs, settled))
            if _agrees(entry, decision):
                self._agreed(entry, decision)
                return
            decisions.append(decision)
            skip = (settled[0], _offset(settled[1], entry.at))
        for members in _groups(rule_places, entry.at).values():
            if (members[0][0], _offset(members[0][1], entry.at)) == skip:
                continue
            decision = decide(self._snapshot(entry, inputs, members[0]))
            if _agrees(entry, decision):
                if settled is not None:
                    self.moved.add(entry.contact)
                self.settled[entry.contact] = members[0]
                self._agreed(entry, decision)
                return
            decisions.append(decision)
        self._disagreed(entry, decisions[0], decisions)

    def _everywhere(self, entry: Recorded, inputs: _Inputs, rule_places: tuple[Place, ...]) -> None:
        """The answer at every place the contact can still be (one decision per region and UTC
        offset): it agrees when one of them gives it, and the contact keeps those places."""
        possible = self.possible.get(entry.contact)
        candidates = rule_places
        if possible is not None:
            kept = tuple(p for p in possible if p in _place_set(rule_places))
            candidates = kept or rule_places
        agreeing: list[Place] = []
        decisions: list[Decision] = []
        agreed: Decision | None = None
        for members in _groups(candidates, entry.at).values():
            decision = decide(self._snapshot(entry, inputs, members[0]))
            if _agrees(entry, decision):
                agreeing += members
                agreed = decision
            else:
                decisions.append(decision)
        if agreed is None:
            self._disagreed(entry, decisions[0], decisions)
            return
        self.possible[entry.contact] = tuple(agreeing)
        self._agreed(entry, agreed)

    def _inputs(self, entry: Recorded, block: int) -> _Inputs:
        """What the decision reads at the recorded block, whatever the contact's place."""
        company, consumer, grant, record = self._ledger_at(entry, block)
        window: list[int] = []
        cap_window: list[int] = []
        if consumer is not None and grant is not None and record is not None:
            if grant.active:
                key = (consumer, entry.company_id, entry.channel)
                window = _newest(
                    self.by_grant.get(key), entry.at - grant.period, grant.max_contacts
                )
                if record.cap_max > 0:
                    window_of_cap = self.by_consumer.get(consumer)
                    cap_window = _newest(
                        window_of_cap, entry.at - record.cap_period, record.cap_max
                    )
        return _Inputs(block, company, consumer, grant, record, window, cap_window)

    def _ledger_at(self, entry: Recorded, block: int) -> _LedgerAt:
        """The company, the contact's holder, their grant and their record at ``block``.

        Remembered for the block: a log holds many entries per block, and its entries' blocks
        grow (apart from the few that processes reading an index at different heights mix).
        """
        if block != self._block:
            self._block, self._at_block = block, {}
        key = (entry.contact, entry.company_id, entry.channel)
        found = self._at_block.get(key)
        if found is not None:
            return found
        history = self.history
        company = history.company(entry.company_id, block)
        consumer = history.link(entry.contact, block).consumer
        if consumer is None or company.status is CompanyStatus.NONE:
            found = (company, consumer, None, None)
        else:
            grant = history.grant(consumer, entry.company_id, entry.channel, block)
            found = (company, consumer, grant, history.consumer(consumer, block))
        self._at_block[key] = found
        return found

    def _snapshot(self, entry: Recorded, inputs: _Inputs, place: Place) -> Snapshot:
        region, zone = place
        channel = _CHANNELS[entry.channel]
        key = (entry.contact, entry.company_id, entry.channel)
        contacts: list[int] = []
        days = _frequency_days(region, channel, entry.at)
        if days:
            times = self.by_contact.get(key)
            if times:
                contacts = times[bisect_right(times, entry.at - days * DAY) :]
        return Snapshot(
            now=entry.at,
            company_id=entry.company_id,
            company=inputs.company,
            channel=channel,
            region=region,
            time_zone=zone,
            consumer=inputs.consumer,
            grant=inputs.grant,
            consumer_record=inputs.record,
            block_number=inputs.block,
            window=inputs.window,
            cap_window=inputs.cap_window,
            opposition=_opposition(entry.list_version, entry.reasons, entry.company_id),
            declared=_declared(entry),
            company_contacts=contacts,
            last_refusal_at=self.refusals.get(key),
        )

    def _agreed(self, entry: Recorded, decision: Decision) -> None:
        report = self.report
        report.agreed += 1
        if decision.basis is _ON_A_LIST or "on_opposition_list" in entry.reasons:
            report.on_lists += 1
        elif decision.basis is not None and decision.basis in DECLARABLE:
            report.declared += 1

    def _disagreed(self, entry: Recorded, first: Decision, decisions: list[Decision]) -> None:
        allowed = entry.decision == _ALLOWED
        if allowed and not any(d.allowed for d in decisions):
            kind = FindingKind.VIOLATION
        elif not allowed and all(d.allowed for d in decisions):
            kind = FindingKind.WRONGLY_REFUSED
        else:
            kind = FindingKind.MISMATCH
        # The decision shown is the one that came closest: the same answer if any gave it.
        shown = next((d for d in decisions if d.allowed == allowed), first)
        self.report.findings.append(
            Finding(
                entry.seq,
                kind,
                entry.as_dict(),
                _decision_dict(shown),
                [{"code": r.code, "message": r.message} for r in shown.reasons],
                _differences(entry, shown),
            )
        )


# ----- comparing -----


def _agrees(entry: Recorded, d: Decision) -> bool:
    """Whether ``d`` is what ``entry`` records (``_differences`` is empty; faster)."""
    if d.allowed is not (entry.decision == _ALLOWED) or len(d.reasons) != len(entry.reasons):
        return False
    for reason, code in zip(d.reasons, entry.reasons, strict=True):
        if reason.code != code:
            return False
    return (
        (entry.rules is None or d.rules == entry.rules)
        and d.grant_version == entry.grant_version
        and d.consumer == entry.consumer
        and (",".join(d.list_versions) or None) == entry.list_version
        and d.basis == entry.basis_kind  # a StrEnum equals its value
    )


def _differences(entry: Recorded, decision: Decision) -> list[str]:
    """The fields of ``entry`` that ``decision`` would not have recorded."""
    found = []
    if decision.allowed != (entry.decision == _ALLOWED):
        found.append("decision")
    if tuple(decision.codes) != entry.reasons:
        found.append("reasons")
    if entry.rules is not None and decision.rules != entry.rules:
        found.append("rules")
    if decision.grant_version != entry.grant_version:
        found.append("grant_version")
    if decision.consumer != entry.consumer:
        found.append("consumer")
    if (",".join(decision.list_versions) or None) != entry.list_version:
        found.append("list_version")
    if (None if decision.basis is None else decision.basis.value) != entry.basis_kind:
        found.append("basis")
    return found


def _decision_dict(decision: Decision) -> dict[str, Any]:
    return {
        "decision": EntryKind.ALLOWED.value if decision.allowed else EntryKind.REFUSED.value,
        "reasons": decision.codes,
        "rules": list(decision.rules),
        "grant_version": decision.grant_version,
        "consumer": decision.consumer,
        "list_version": ",".join(decision.list_versions) or None,
        "basis": None if decision.basis is None else decision.basis.value,
    }


# ----- what the entry says that the chain cannot -----


@lru_cache(maxsize=1024)
def _opposition(
    list_version: str | None, reasons: tuple[str, ...], company_id: int
) -> OppositionStatus:
    """The opposition lists as the entry read them: their versions, listed or not, stale or not.

    A version names its owner (``lists.importer``): ``C<company>-...`` is the company's own
    list, a region's code the national list, read only by an answer that rests on it.
    """
    company_prefix = f"C{company_id}-"
    national = company = None
    for version in list_version.split(",") if list_version else ():
        if version.startswith(company_prefix):
            company = version
        else:
            national = version
    codes = set(reasons)
    return OppositionStatus(
        version=national,
        listed="on_opposition_list" in codes,
        # A stale copy is stale by any legal limit: its age is not in the log.
        fetched_at=0 if "opposition_list_stale" in codes else None,
        company_version=company,
        company_listed="company_do_not_call" in codes,
    )


def _declared(entry: Recorded) -> Declared | None:
    basis = entry.basis
    if basis is None or entry.basis_kind not in _DECLARABLE:
        return None
    try:
        kind = BasisKind(str(basis.get("kind")))
        if kind not in DECLARABLE:
            return None
        facts = {k: v for k, v in basis.items() if k != "kind"}
        return Declared(kind, **facts)
    except (ValueError, TypeError, InvalidInput):
        return None  # an unreadable declaration: the replay then finds no declared basis


# ----- places -----


_BASIS_RULES = {rule.id: rule for rule in registry.BASES}
_DECLARABLE = frozenset(kind.value for kind in DECLARABLE)
_CHANNELS = tuple(sorted(Channel))  # by number
_CHANNEL_NUMBERS = frozenset(int(c) for c in Channel)


@lru_cache(maxsize=256)
def _places(rules: tuple[str, ...], channel: int) -> tuple[Place, ...]:
    """Where a contact whose entry records ``rules`` can be: the regions of the recorded rule
    of law with their time zones, the rule's own country first (FR-... in FR)."""
    if Channel(channel) is Channel.EMAIL:
        return (_NOWHERE,)
    rule = next((_BASIS_RULES[r] for r in rules if r in _BASIS_RULES), None)
    if rule is None:
        # No regional rule recorded (the default rule, a revocation, an unknown company): the
        # region made no difference to the answer, but a grant's hours still need a zone.
        covered = {
            r
            for b in registry.BASES
            if Channel(channel) in b.scope.channels
            for r in b.scope.regions
        }
        zones = sorted(
            {
                z
                for r in phonenumbers.SUPPORTED_REGIONS - covered
                for z in _zones(r)
                if z is not None
            }
        )
        return (_NOWHERE, *((None, z) for z in zones))
    home = rule.id.split("-", 1)[0]
    regions = sorted(rule.scope.regions, key=lambda r: (r != home, r))
    return tuple((region, zone) for region in regions for zone in _zones(region))


@lru_cache(maxsize=256)
def _place_set(places: tuple[Place, ...]) -> frozenset[Place]:
    return frozenset(places)


def _place_matters(places: tuple[Place, ...], channel: int, grant: GrantRecord | None) -> bool:
    """Whether the answer may differ between ``places``: statutory hours (local time and
    public holidays) cover some of them, or the grant limits hours or days."""
    if grant is not None and (grant.hours_mask != ALL_HOURS or grant.days_mask != ALL_DAYS):
        return len(places) > 1
    return _hours_apply(places, channel)


@lru_cache(maxsize=256)
def _hours_apply(places: tuple[Place, ...], channel: int) -> bool:
    regions = {region for region, _ in places}
    return len(places) > 1 and any(
        rule.kind is LimitKind.HOURS
        and _CHANNELS[channel] in rule.scope.channels
        and regions & rule.scope.regions
        for rule in registry.LIMITS
    )


def _groups(places: tuple[Place, ...], at: int) -> dict[tuple[str | None, int | None], list[Place]]:
    """``places`` by region and UTC offset at ``at``: each group reads one local time."""
    groups: dict[tuple[str | None, int | None], list[Place]] = {}
    for place in places:
        groups.setdefault((place[0], _offset(place[1], at)), []).append(place)
    return groups


_OFFSETS: dict[tuple[str, int], int] = {}


def _offset(zone: str | None, at: int) -> int | None:
    """The UTC offset (seconds) of ``zone`` at ``at``: two places of one region with the same
    offset read the same local time, so they give the same answer."""
    if zone is None:
        return None
    # Offsets change on whole quarter hours: one reading per zone and quarter hour.
    key = (zone, at // 900)
    found = _OFFSETS.get(key)
    if found is None:
        offset = datetime.fromtimestamp(at, ZoneInfo(zone)).utcoffset()
        found = _OFFSETS[key] = 0 if offset is None else int(offset.total_seconds())
    return found


@lru_cache(maxsize=512)
def _zones(region: str) -> tuple[str | None, ...]:
    """The time zones of a region's numbers; None too where a number may not pin one."""
    example = phonenumbers.example_number(region)
    zones = () if example is None else tuple(_country_level_time_zones_for_number(example))
    zones = tuple(z for z in zones if z != "Etc/Unknown")
    return zones if len(zones) == 1 else (*zones, None)


def _frequency_days(region: str | None, channel: Channel, at: int) -> int:
    """The longest statutory frequency period in force (0: none), as the checker counts."""
    if region is None:
        return 0
    return max(
        (days for start, end, days in _frequencies(region, channel) if start <= at < end), default=0
    )


@lru_cache(maxsize=1024)
def _frequencies(region: str, channel: Channel) -> tuple[tuple[float, float, int], ...]:
    """(from, until, days) of the frequency limits of a region and channel, as unix times."""
    return tuple(
        (
            -inf if r.scope.valid_from is None else r.scope.valid_from.timestamp(),
            inf if r.scope.valid_until is None else r.scope.valid_until.timestamp(),
            r.period_days,
        )
        for r in registry.LIMITS
        if r.kind is LimitKind.FREQUENCY
        and region in r.scope.regions
        and channel in r.scope.channels
    )


# ----- small helpers -----

_COLUMNS = (
    "seq",
    "at",
    "company_id",
    "contact",
    "channel",
    "consumer",
    "grant_version",
    "block_number",
    "list_version",
    "decision",
    "reasons",
    "outcome",
    "refers_to",
    "rules",
    "basis",
)


def _from_row(row: Any) -> Recorded:
    (seq, at, company, contact, channel, consumer, version, block, lists, decision, reasons,
     outcome, refers_to, rules, basis) = row  # fmt: skip
    try:
        if channel not in _CHANNEL_NUMBERS:
            raise ValueError(f"unknown channel {channel!r}")
        parsed = _object(basis)
        return Recorded(
            seq,
            at,
            company,
            contact,
            channel,
            consumer,
            version,
            block,
            lists,
            decision,
            _strings(reasons) or (),
            outcome,
            refers_to,
            _strings(rules),
            parsed,
            _kind(parsed),
        )
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"unreadable usage entry {seq}: {exc}", seq=seq) from exc


def _add(windows: dict[Any, list[int]], key: Any, at: int) -> None:
    times = windows.get(key)
    if times is None:
        windows[key] = [at]
    elif times[-1] <= at:
        times.append(at)  # the usual case: the log is written in time order
    else:
        insort(times, at)


def _newest(times: list[int] | None, since: int, newest: int) -> list[int]:
    """The newest ``newest`` times after ``since``, oldest first (``windows.allowed_times``)."""
    if not times:
        return []
    start = max(bisect_right(times, since), len(times) - newest)
    return times[start:]


@lru_cache(maxsize=1024)
def _parsed(text: str) -> Any:
    return json.loads(text)


def _strings(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = _parsed(value)
    if not isinstance(value, list):
        raise ValueError(f"not a list: {value!r}")
    return tuple(str(v) for v in value)


def _object(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = _parsed(value)
    if not isinstance(value, dict):
        raise ValueError(f"not an object: {value!r}")
    return value


def _kind(basis: dict[str, Any] | None) -> str | None:
    kind = None if basis is None else basis.get("kind")
    return None if kind is None else str(kind)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _channel(value: Any) -> int:
    """A channel's number, from its number or its name (``sms``)."""
    number = int(Channel.parse(value)) if isinstance(value, str) else int(value)
    if number not in _CHANNEL_NUMBERS:
        raise ValueError(f"unknown channel {value!r}")
    return number
