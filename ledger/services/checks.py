"""Check and check-and-record: the question every company asks before a contact.

The ledger state is read at one block; the usage window is counted and (when recording) the
entry appended inside one database transaction, so N concurrent requests against a quota of
k record exactly k. When the ledger state or the database cannot be trusted the answer is a
refusal naming why, never an allow.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

from sqlalchemy.engine import Connection, Engine

from ledger.audit.integrity import LogIntegrity, UsageLogCorrupt
from ledger.db.engine import DatabaseUnavailable, connect
from ledger.domain import contacts
from ledger.domain.bases import BasisKind, Declared
from ledger.domain.channels import Channel
from ledger.domain.decision import DAY, Decision, OppositionStatus, Reason, Snapshot, decide
from ledger.domain.errors import InvalidContact, LedgerStale, ListUnavailable, Unavailable
from ledger.domain.grants import CompanyStatus, GrantRecord
from ledger.domain.law import registry
from ledger.domain.law.rules import LimitKind
from ledger.domain.state import CompanyRecord, ConsumerRecord, LedgerState
from ledger.domain.window import window_state
from ledger.lists.cache import OppositionCache
from ledger.usage import log as usage_log
from ledger.usage.entries import EntryKind, Receipt, UsageEntryBase
from ledger.usage.locks import lock
from ledger.usage.windows import allowed_times, contact_times, last_refusal


@dataclass(frozen=True, slots=True)
class CheckResult:
    decision: Decision
    contact: contacts.Contact
    receipt: Receipt | None = None


# Called inside the transaction that records a check, before it commits, with the final result:
# whatever it writes on the connection commits with the usage entry or not at all.
OnRecord = Callable[[Connection, CheckResult], None]


@runtime_checkable
class SnapshotState(Protocol):
    """A ledger state whose reads at one block can share one database snapshot (the index)."""

    def snapshot(self) -> AbstractContextManager[LedgerState]: ...


@dataclass(frozen=True, slots=True)
class Ask:
    """One question: may this company contact this contact on this channel at ``at``?"""

    company_id: int
    contact: contacts.Contact
    commitment: bytes
    channel: Channel
    at: int
    record: bool  # also append the answer to the usage log
    declared: Declared | None = None  # a basis other than a grant, declared by the company
    on_record: OnRecord | None = None  # run in the recording transaction, before it commits

    def decide(
        self,
        *,
        block_number: int,
        company: CompanyRecord,
        consumer: str | None,
        grant: GrantRecord | None,
        consumer_record: ConsumerRecord | None,
        window: list[int],
        cap_window: list[int],
        opposition: OppositionStatus,
        company_contacts: list[int],
        last_refusal_at: int | None,
    ) -> Decision:
        """Decides this ask from what was read for it: the ledger at one block, the log's counts.
        One place for single checks and for batches, so that both answer alike."""
        return decide(
            Snapshot(
                now=self.at,
                company_id=self.company_id,
                company=company,
                channel=self.channel,
                region=self.contact.region,
                time_zone=self.contact.time_zone,
                consumer=consumer,
                grant=grant,
                consumer_record=consumer_record,
                block_number=block_number,
                window=window,
                cap_window=cap_window,
                opposition=opposition,
                declared=self.declared,
                company_contacts=company_contacts,
                last_refusal_at=last_refusal_at,
            )
        )

    def counted(self, decision: Decision, window: list[int], grant: GrantRecord | None) -> Decision:
        """``decision`` with what is left of the grant's quota once this contact counts."""
        if not (decision.allowed and decision.basis is BasisKind.CONSENT and grant is not None):
            return decision
        remaining, next_free = window_state(
            [*window, self.at], max_contacts=grant.max_contacts, period=grant.period, now=self.at
        )
        return replace(decision, remaining=remaining, next_free_at=next_free)

    def entry(self, decision: Decision) -> UsageEntryBase:
        """The usage-log entry recording ``decision`` (the contact only as its commitment)."""
        return UsageEntryBase(
            at=self.at,
            company_id=self.company_id,
            contact=self.commitment.hex(),
            channel=int(self.channel),
            consumer=decision.consumer,
            grant_version=decision.grant_version,
            block_number=decision.block_number,
            list_version=",".join(decision.list_versions) or None,
            decision=EntryKind.ALLOWED if decision.allowed else EntryKind.REFUSED,
            reasons=json.dumps(decision.codes),
            rules=json.dumps(decision.rules),
            basis=_basis_record(decision, self.declared),
        )


@dataclass(frozen=True, slots=True)
class _LedgerView:
    block_number: int
    company: CompanyRecord
    consumer: str | None
    grant: GrantRecord | None
    consumer_record: ConsumerRecord | None


class Checker:
    """Answers checks from the ledger state (chain or index) and the usage log.

    Example:
        >>> checker = Checker(state=chain, engine=engine, salt=b"...", default_region="FR")
        >>> checker.check(company_id=1, contact="+33612345678", channel=Channel.SMS, record=True)
    """

    def __init__(
        self,
        *,
        state: LedgerState,
        engine: Engine,
        salt: bytes,
        default_region: str,
        lists: OppositionCache | None = None,
    ) -> None:
        self.state = state  # through the setter below
        self.engine = engine
        self.salt = salt
        self.default_region = default_region
        self.lists = lists  # None: no opposition list, so opt-out regimes refuse (fail closed)
        # The log's own verification in this process: once it finds the log broken, every
        # check refuses (``usage_log_corrupt``), since no count read from it can be trusted.
        self.integrity: LogIntegrity | None = None
        # The server's clock: a recorded contact is always now. Replaceable so that tests can
        # pin the legal calendar (a French call is lawful at 11:00 on a Tuesday, not at 21:00).
        self.clock: Callable[[], float] = time.time

    @property
    def state(self) -> LedgerState:
        return self._state

    @state.setter
    def state(self, state: LedgerState) -> None:
        self._state = state
        # Told apart once here, not on every check: a runtime protocol check costs microseconds.
        self._snapshot: Callable[[], AbstractContextManager[LedgerState]] = (
            state.snapshot
            if isinstance(state, SnapshotState)
            else lambda: nullcontext(state)  # the chain pins each read to the block itself
        )

    def check(
        self,
        *,
        company_id: int,
        contact: str,
        channel: Channel,
        record: bool = False,
        now: int | None = None,
        declared: Declared | None = None,
        on_record: OnRecord | None = None,
    ) -> CheckResult:
        """Decides whether ``company_id`` may contact ``contact`` on ``channel`` now.

        Args:
            company_id: the asking company.
            contact: a phone number in any usual format, or an e-mail address.
            channel: the channel of the contact.
            record: also append the contact to the usage log (atomically with the count).
            now: unix time of the contact (default: the current time).
            declared: a legal basis other than a grant (ongoing contract, existing business
                relationship, soft opt-in, appointment), used when no grant is active.
            on_record: when a contact is recorded, called with the connection and the final
                result inside the recording transaction, before it commits: what it writes
                (an idempotency key and its answer) commits with the usage entry or not at all.

        Returns:
            The decision, the normalised contact, and a receipt when a contact was recorded.

        Raises:
            InvalidContact: the contact cannot be parsed or does not fit the channel.
            Exception: whatever ``on_record`` raised; the contact was then not recorded.
        """
        parsed = contacts.parse_contact(contact, default_region=self.default_region)
        check_channel(parsed, channel)
        ask = Ask(
            company_id=company_id,
            contact=parsed,
            commitment=contacts.commitment(parsed, self.salt),
            channel=channel,
            at=int(self.clock()) if now is None else now,
            record=record,
            declared=declared,
            on_record=on_record,
        )
        try:
            if self.integrity is not None:
                self.integrity.ensure_intact()
            return self._answer(ask)
        except (DatabaseUnavailable, UsageLogCorrupt) as exc:
            # Without a usage log to trust nothing can be counted: refuse, and record nothing.
            return CheckResult(Decision(False, [Reason(exc.code, exc.message)]), parsed)

    def _answer(self, ask: Ask) -> CheckResult:
        try:
            view = self._read_state(ask)
        except Unavailable as exc:
            return self._refuse(ask, Decision(False, [Reason(unavailable_code(exc), exc.message)]))
        try:
            opposition = (
                OppositionStatus()
                if self.lists is None
                else self.lists.status(ask.contact, company_id=ask.company_id)
            )
        except ListUnavailable as exc:
            reason = Reason(exc.code, exc.message)
            return self._refuse(ask, Decision(False, [reason], consumer=view.consumer))
        return self._decide(view, opposition, ask)

    def _decide(self, view: _LedgerView, opposition: OppositionStatus, ask: Ask) -> CheckResult:
        # Recording takes the write lock before counting (SQLite BEGIN IMMEDIATE, PostgreSQL's
        # advisory lock), so N concurrent checks on a quota of k record exactly k allows. A
        # check that records nothing only counts, from a snapshot that waits for no writer.
        with connect(self.engine, read_only=not ask.record) as conn:
            if ask.record:
                lock(conn)  # count and append with no writer in between
            window: list[int] = []
            cap_window: list[int] = []
            if view.consumer is not None and view.grant is not None and view.grant.active:
                window = allowed_times(
                    conn,
                    consumer=view.consumer,
                    company_id=ask.company_id,
                    channel=int(ask.channel),
                    since=ask.at - view.grant.period,
                    newest=view.grant.max_contacts,
                )
                cap_window = self._cap_window(conn, view, ask.at)
            company_contacts, refused_at = _statutory_counts(conn, ask)
            decision = ask.decide(
                block_number=view.block_number,
                company=view.company,
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
            receipt = usage_log.append(conn, ask.entry(decision))
            decision = ask.counted(decision, window, view.grant)
            return _recorded(conn, ask, CheckResult(decision, ask.contact, receipt))

    def _cap_window(self, conn: Connection, view: _LedgerView, at: int) -> list[int]:
        rec = view.consumer_record
        if rec is None or rec.cap_max == 0 or view.consumer is None:
            return []
        return allowed_times(
            conn, consumer=view.consumer, since=at - rec.cap_period, newest=rec.cap_max
        )

    def _read_state(self, ask: Ask) -> _LedgerView:
        if self._head_in_snapshot():
            # The head from memory and the checkpoint in the snapshot: one transaction.
            with self._snapshot() as state:
                return self._read_at(state, state.head().number, ask)
        block = self.state.head().number  # first, outside the snapshot: it may ask the node
        with self._snapshot() as state:
            return self._read_at(state, block, ask)

    def _head_in_snapshot(self) -> bool:
        # An index whose node head is read in the background (``IndexedState.watching``).
        return bool(getattr(self._state, "watching", False))

    @staticmethod
    def _read_at(state: LedgerState, block: int, ask: Ask) -> _LedgerView:
        company = state.company(ask.company_id, block)
        link = state.link(ask.commitment, block)
        if link.consumer is None or company.status is CompanyStatus.NONE:
            return _LedgerView(block, company, link.consumer, None, None)
        grant = state.grant(link.consumer, ask.company_id, int(ask.channel), block)
        record = state.consumer(link.consumer, block)
        return _LedgerView(block, company, link.consumer, grant, record)

    def _refuse(self, ask: Ask, refusal: Decision) -> CheckResult:
        """A refusal decided before the log was read, recorded when the check records."""
        if not ask.record:
            return CheckResult(refusal, ask.contact)
        with connect(self.engine) as conn:
            receipt = usage_log.append(conn, ask.entry(refusal))
            return _recorded(conn, ask, CheckResult(refusal, ask.contact, receipt))


def _recorded(conn: Connection, ask: Ask, result: CheckResult) -> CheckResult:
    """``result``, once the caller's ``on_record`` wrote its part in the same transaction."""
    if ask.on_record is not None:
        ask.on_record(conn, result)
    return result


def _statutory_counts(conn: Connection, ask: Ask) -> tuple[list[int], int | None]:
    """What the statutory limits in force count: this company's contacts to this contact point
    over the longest frequency period, and the consumer's last refusal of it."""
    limits = registry.limits(ask.contact.region, ask.channel, ask.at)
    days = max((r.period_days for r in limits if r.kind is LimitKind.FREQUENCY), default=0)
    contact, company, channel = ask.commitment.hex(), ask.company_id, int(ask.channel)
    times = (
        contact_times(
            conn, contact=contact, company_id=company, channel=channel, since=ask.at - days * DAY
        )
        if days
        else []
    )
    paused = any(r.kind is LimitKind.PAUSE_AFTER_REFUSAL for r in limits)
    refused = (
        last_refusal(conn, contact=contact, company_id=company, channel=channel) if paused else None
    )
    return times, refused


def _basis_record(decision: Decision, declared: Declared | None) -> str | None:
    """The basis the log entry records: the declaration in full when it was the basis."""
    if decision.basis is None:
        return None
    if declared is not None and decision.basis is declared.kind:
        return json.dumps(declared.as_record(), sort_keys=True)
    return json.dumps({"kind": decision.basis.value})


def unavailable_code(exc: Unavailable) -> str:
    # The index reads SQL too: a database outage while reading it is named as such.
    if isinstance(exc, LedgerStale):
        return "ledger_stale"
    if isinstance(exc, DatabaseUnavailable):
        return "database_unavailable"
    return "ledger_unavailable"


def check_channel(contact: contacts.Contact, channel: Channel) -> None:
    is_email = contact.kind is contacts.ContactKind.EMAIL
    if is_email != (channel is Channel.EMAIL):
        raise InvalidContact(
            contact.value, f"a {contact.kind.value} cannot be reached by {channel.name.lower()}"
        )
