"""Legal bases: what makes a contact lawful, the consumer's signed grant or a declared fact.

A company may declare a basis other than a grant with a check (an ongoing contract, an existing
business relationship, soft opt-in, an appointment the consumer asked for). Whether the law of the
contact's region and channel admits that kind is ``domain.law``; whether the declared facts hold
at the time of the contact is ``Declared.validate`` here. The declaration is stored in the usage
log entry, so an audit sees why an unconsented contact was lawful.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from ledger.domain.errors import InvalidInput


class BasisKind(StrEnum):
    CONSENT = "consent"  # a signed grant: prior, specific, revocable consent
    OPPOSITION_LIST = "opposition_list"  # opt-out regimes: absent from a fresh national list
    ONGOING_CONTRACT = "ongoing_contract"
    EXISTING_BUSINESS_RELATIONSHIP = "existing_business_relationship"
    SOFT_OPT_IN = "soft_opt_in"
    APPOINTMENT = "appointment"


DECLARABLE = frozenset(
    {
        BasisKind.ONGOING_CONTRACT,
        BasisKind.EXISTING_BUSINESS_RELATIONSHIP,
        BasisKind.SOFT_OPT_IN,
        BasisKind.APPOINTMENT,
    }
)

APPOINTMENT_SLACK = 30 * 60  # a requested call may start up to 30 minutes after the time asked


@dataclass(frozen=True, slots=True)
class Declared:
    """A basis a company declares with a check; unix seconds for every date.

    Example:
        >>> Declared(BasisKind.APPOINTMENT, appointment_at=1_790_000_000).problem(1_790_000_100)
    """

    kind: BasisKind
    contract_reference: str | None = None  # ongoing_contract
    subject: str | None = None  # ongoing_contract: what the contract and the call are about
    contract_ends_at: int | None = None  # ongoing_contract
    last_purchase_at: int | None = None  # existing_business_relationship (18 months)
    inquiry_at: int | None = None  # existing_business_relationship (3 months)
    existing_customer: bool = False  # soft_opt_in
    similar_products: bool = False  # soft_opt_in
    opt_out_offered: bool = False  # soft_opt_in: at collection and in each message
    appointment_at: int | None = None  # appointment: the time the consumer asked to be called

    def __post_init__(self) -> None:
        if self.kind not in DECLARABLE:
            raise InvalidInput(f"{self.kind.value} cannot be declared", basis=self.kind.value)

    def problem(self, now: int) -> str | None:
        """Why the declared facts do not make a contact at ``now`` lawful, or None if they do."""
        return _PROBLEMS[self.kind](self, now)

    def as_record(self) -> dict[str, Any]:
        """The declaration as stored in the usage log (only the fields that were given)."""
        fields = {
            "contract_reference": self.contract_reference,
            "subject": self.subject,
            "contract_ends_at": self.contract_ends_at,
            "last_purchase_at": self.last_purchase_at,
            "inquiry_at": self.inquiry_at,
            "appointment_at": self.appointment_at,
        }
        record: dict[str, Any] = {"kind": self.kind.value}
        record.update({k: v for k, v in fields.items() if v is not None})
        if self.kind is BasisKind.SOFT_OPT_IN:
            record.update(
                existing_customer=self.existing_customer,
                similar_products=self.similar_products,
                opt_out_offered=self.opt_out_offered,
            )
        return record


def add_months(at: int, months: int) -> int:
    """``at`` plus calendar months (UTC), clamped to the month's last day (31 Jan + 1 = 28 Feb)."""
    moment = datetime.fromtimestamp(at, UTC)
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


def _ongoing_contract(basis: Declared, now: int) -> str | None:
    if not basis.contract_reference or not basis.subject:
        return "an ongoing contract needs its reference and the subject of the call"
    if basis.contract_ends_at is not None and now >= basis.contract_ends_at:
        return f"the contract ended at {basis.contract_ends_at}"
    return None


def _existing_business_relationship(basis: Declared, now: int) -> str | None:
    # 47 CFR 64.1200(f)(5): 18 months after the last purchase or transaction, 3 months after an
    # inquiry or application. Months are calendar months (the reading that ends it no later).
    if basis.last_purchase_at is not None and basis.last_purchase_at <= now:
        if now < add_months(basis.last_purchase_at, 18):
            return None
    if basis.inquiry_at is not None and basis.inquiry_at <= now:
        if now < add_months(basis.inquiry_at, 3):
            return None
    if basis.last_purchase_at is None and basis.inquiry_at is None:
        return "an existing business relationship needs a last purchase or an inquiry date"
    return "the business relationship ended: over 18 months since the purchase, 3 since the inquiry"


def _soft_opt_in(basis: Declared, now: int) -> str | None:
    if not basis.existing_customer:
        return "soft opt-in is only for existing customers"
    if not basis.similar_products:
        return "soft opt-in covers only the company's similar products or services"
    if not basis.opt_out_offered:
        return "soft opt-in needs a free, simple opt-out offered at collection and in each message"
    return None


def _appointment(basis: Declared, now: int) -> str | None:
    if basis.appointment_at is None:
        return "an appointment needs the time the consumer asked to be called"
    if not basis.appointment_at <= now < basis.appointment_at + APPOINTMENT_SLACK:
        return (
            f"the consumer asked to be called at {basis.appointment_at}, "
            f"not at {now} (up to {APPOINTMENT_SLACK // 60} minutes after)"
        )
    return None


_PROBLEMS = {
    BasisKind.ONGOING_CONTRACT: _ongoing_contract,
    BasisKind.EXISTING_BUSINESS_RELATIONSHIP: _existing_business_relationship,
    BasisKind.SOFT_OPT_IN: _soft_opt_in,
    BasisKind.APPOINTMENT: _appointment,
}
