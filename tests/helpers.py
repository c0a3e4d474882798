"""Test helpers shared by several test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import time
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3.types import TxReceipt

from ledger.consent import messages
from ledger.domain import contacts
from ledger.domain.channels import Channel
from ledger.domain.grants import GrantTerms
from ledger.runtime import Ledger

PHONE = "+33 6 12 34 56 78"
YEAR = 365 * 86400
# A grant must carry the hash of the notice the consumer read (the relay refuses zero).
NOTICE_HASH = keccak(b"Acme may text you offers about its own products.")
NOTICE = "0x" + NOTICE_HASH.hex()


def soon() -> int:
    """A deadline an hour away: inside the relay's cap on how long a signature may live."""
    return int(time.time()) + 3600


def link(ledger: Ledger, consumer: str, contact: str) -> None:
    parsed = contacts.parse_contact(contact, default_region="FR")
    ledger.relayer.attest_link(
        consumer, contacts.commitment(parsed, ledger.settings.contact_salt_bytes)
    )


def sms_terms(company_id: int = 1, max_contacts: int = 4, **kw: Any) -> GrantTerms:
    kw.setdefault("notice_hash", NOTICE_HASH)
    return GrantTerms(
        company_id=company_id, channel=Channel.SMS, max_contacts=max_contacts, period=YEAR, **kw
    )


def signed_grant(
    ledger: Ledger,
    account: LocalAccount,
    terms: GrantTerms,
    *,
    version: int | None = None,
    deadline: int | None = None,
) -> tuple[messages.Message, bytes]:
    """A ``SetGrant`` and ``account``'s signature of it."""
    if version is None:
        version = ledger.chain.grant_version(account.address, terms.company_id, int(terms.channel))
    if deadline is None:
        deadline = soon()
    epoch = ledger.chain.epoch(account.address)
    message = messages.set_grant(
        account.address, terms, version=version, epoch=epoch, deadline=deadline
    )
    return message, sign(ledger, account, message)


def sign(ledger: Ledger, account: LocalAccount, message: messages.Message) -> bytes:
    """``account``'s signature of ``message``, as a wallet makes it."""
    return messages.sign(message.typed_data(ledger.chain.domain), account.key)


def relay(ledger: Ledger, account: LocalAccount, message: messages.Message) -> TxReceipt:
    """Has ``account`` sign ``message`` and the operator relay it."""
    return ledger.relayer.relay(message, sign(ledger, account, message))


def grant(ledger: Ledger, account: LocalAccount, terms: GrantTerms) -> None:
    message, signature = signed_grant(ledger, account, terms)
    ledger.relayer.relay(message, signature)
