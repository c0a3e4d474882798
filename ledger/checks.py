"""Check and check-and-record: the question every company asks before a contact.

The ledger state is read at one block; the usage window is counted and (when recording) the
entry appended inside one database transaction, so N concurrent requests against a quota of
k record exactly k. When the ledger state or the database cannot be trusted the answer is a
refusal naming why, never an allow.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace

from sqlalchemy.engine import Engine
from sqlmodel import Session

from ledger import contacts, usage_log
from ledger.errors import InvalidContact, LedgerStale, ListUnavailable, Unavailable
from ledger.grants import Channel, CompanyStatus, GrantRecord
from ledger.opposition import OppositionCache
from ledger.quotas import Decision, OppositionStatus, Reason, Snapshot, decide, window_state
from ledger.state import CompanyRecord, ConsumerRecord, LedgerState
from ledger.storage import DatabaseUnavailable, transaction
from ledger.usage_log import Receipt, UsageEntryBase


@dataclass(frozen=True, slots=True)
class CheckResult:
    decision: Decision
    contact: contacts.Contact
    receipt: Receipt | None = None


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
        self.state = state
        self.engine = engine
        self.salt = salt
        self.default_region = default_region
        self.lists = lists  # None: no opposition list, so opt-out regimes refuse (fail closed)

    def check(
        self,
        *,
        company_id: int,
        contact: str,
        channel: Channel,
        record: bool = False,
        now: int | None = None,
    ) -> CheckResult:
        """Decides whether ``company_id`` may contact ``contact`` on ``channel`` now.

        Args:
            company_id: the asking company.
            contact: a phone number in any usual format, or an e-mail address.
            channel: the channel of the contact.
            record: also append the contact to the usage log (atomically with the count).
            now: unix time of the contact (default: the current time).

        Returns:
            The decision, the normalised contact, and a receipt when a contact was recorded.

        Raises:
            InvalidContact: the contact cannot be parsed or does not fit the channel.
        """
        parsed = contacts.parse_contact(contact, default_region=self.default_region)
        _check_channel(parsed, channel)
        at = int(time.time()) if now is None else now
        commitment = contacts.commitment(parsed, self.salt)
        try:
            view = self._read_state(company_id, commitment, channel)
        except Unavailable as exc:
            code = "ledger_stale" if isinstance(exc, LedgerStale) else "ledger_unavailable"
            refusal = Decision(False, [Reason(code, exc.message)])
            return self._finish(refusal, parsed, commitment, company_id, channel, at, record)
        try:
            opposition = (
                OppositionStatus()
                if self.lists is None
                else self.lists.status(parsed, company_id=company_id)
            )
        except ListUnavailable as exc:
            refusal = Decision(False, [Reason(exc.code, exc.message)], consumer=view.consumer)
            return self._finish(refusal, parsed, commitment, company_id, channel, at, record)
        except DatabaseUnavailable as exc:
            return CheckResult(
                Decision(False, [Reason("database_unavailable", exc.message)]), parsed
            )
        try:
            return self._decide(
                view, opposition, parsed, commitment, company_id, channel, at, record
            )
        except DatabaseUnavailable as exc:
            # Without the usage log nothing can be counted: refuse, and nothing was recorded.
            refusal = Decision(False, [Reason("database_unavailable", exc.message)])
            return CheckResult(refusal, parsed)

    def _decide(
        self,
        view: _LedgerView,
        opposition: OppositionStatus,
        parsed: contacts.Contact,
        commitment: bytes,
        company_id: int,
        channel: Channel,
        at: int,
        record: bool,
    ) -> CheckResult:

        with transaction(self.engine) as session:
            if record:
                usage_log.lock(session)  # count and append with no writer in between
            snap = Snapshot(
                now=at,
                company_id=company_id,
                company=view.company,
                channel=channel,
                region=parsed.region,
                time_zone=parsed.time_zone,
                consumer=view.consumer,
                grant=view.grant,
                consumer_record=view.consumer_record,
                block_number=view.block_number,
                opposition=opposition,
            )
            if view.consumer is not None and view.grant is not None and view.grant.active:
                snap = replace(
                    snap,
                    window=usage_log.allowed_times(
                        session,
                        consumer=view.consumer,
                        company_id=company_id,
                        channel=int(channel),
                        since=at - view.grant.period,
                    ),
                    cap_window=self._cap_window(session, view, at),
                )
            decision = decide(snap)
            receipt = None
            if record:
                receipt = usage_log.append(
                    session, _entry(decision, commitment, company_id, channel, at)
                )
                if decision.allowed and view.grant is not None:
                    remaining, next_free = window_state(
                        [*snap.window, at],
                        max_contacts=view.grant.max_contacts,
                        period=view.grant.period,
                        now=at,
                    )
                    decision = replace(decision, remaining=remaining, next_free_at=next_free)
        return CheckResult(decision, parsed, receipt)

    def _cap_window(self, session: Session, view: _LedgerView, at: int) -> list[int]:
        rec = view.consumer_record
        if rec is None or rec.cap_max == 0 or view.consumer is None:
            return []
        return usage_log.allowed_times(session, consumer=view.consumer, since=at - rec.cap_period)

    def _read_state(self, company_id: int, commitment: bytes, channel: Channel) -> _LedgerView:
        block = self.state.head().number
        company = self.state.company(company_id, block)
        link = self.state.link(commitment, block)
        if link.consumer is None or company.status is CompanyStatus.NONE:
            return _LedgerView(block, company, link.consumer, None, None)
        grant = self.state.grant(link.consumer, company_id, int(channel), block)
        record = self.state.consumer(link.consumer, block)
        return _LedgerView(block, company, link.consumer, grant, record)

    def _finish(
        self,
        decision: Decision,
        parsed: contacts.Contact,
        commitment: bytes,
        company_id: int,
        channel: Channel,
        at: int,
        record: bool,
    ) -> CheckResult:
        if not record:
            return CheckResult(decision, parsed)
        with transaction(self.engine) as session:
            receipt = usage_log.append(
                session, _entry(decision, commitment, company_id, channel, at)
            )
        return CheckResult(decision, parsed, receipt)


def _entry(
    decision: Decision, commitment: bytes, company_id: int, channel: Channel, at: int
) -> UsageEntryBase:
    return UsageEntryBase(
        at=at,
        company_id=company_id,
        contact=commitment.hex(),
        channel=int(channel),
        consumer=decision.consumer,
        grant_version=decision.grant_version,
        block_number=decision.block_number,
        list_version=",".join(decision.list_versions) or None,
        decision=usage_log.Decision.ALLOWED if decision.allowed else usage_log.Decision.REFUSED,
        reasons=json.dumps(decision.codes),
    )


def _check_channel(contact: contacts.Contact, channel: Channel) -> None:
    is_email = contact.kind is contacts.ContactKind.EMAIL
    if is_email != (channel is Channel.EMAIL):
        raise InvalidContact(
            contact.value, f"a {contact.kind.value} cannot be reached by {channel.name.lower()}"
        )
