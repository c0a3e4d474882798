"""Test helpers shared by several test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import time

from eth_account.signers.local import LocalAccount

from ledger.consent import messages
from ledger.domain import contacts
from ledger.domain.channels import Channel
from ledger.domain.grants import GrantTerms
from ledger.runtime import Ledger

PHONE = "+33 6 12 34 56 78"
YEAR = 365 * 86400


def link(ledger: Ledger, consumer: str, contact: str) -> None:
    parsed = contacts.parse_contact(contact, default_region="FR")
    ledger.relayer.attest_link(
        consumer, contacts.commitment(parsed, ledger.settings.contact_salt_bytes)
    )


def sms_terms(company_id: int = 1, max_contacts: int = 4, **kw: int) -> GrantTerms:
    return GrantTerms(
        company_id=company_id, channel=Channel.SMS, max_contacts=max_contacts, period=YEAR, **kw
    )  # type: ignore[arg-type]


def signed_grant(
    ledger: Ledger,
    account: LocalAccount,
    terms: GrantTerms,
    *,
    version: int | None = None,
    deadline: int | None = None,
) -> tuple[int, int, bytes]:
    """(version, deadline, signature) for a SetGrant signed by ``account``."""
    if version is None:
        version = ledger.chain.grant_version(account.address, terms.company_id, int(terms.channel))
    if deadline is None:
        deadline = int(time.time()) + 3600
    doc = messages.set_grant(
        ledger.chain.domain,
        consumer=account.address,
        terms=terms,
        version=version,
        deadline=deadline,
    )
    return version, deadline, messages.sign(doc, account.key)


def grant(ledger: Ledger, account: LocalAccount, terms: GrantTerms) -> None:
    version, deadline, signature = signed_grant(ledger, account, terms)
    ledger.relayer.set_grant(
        account.address, terms, version=version, deadline=deadline, signature=signature
    )
