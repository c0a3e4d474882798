"""Relaying signed messages: a bad message is refused before any gas is spent."""

from __future__ import annotations

import time

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from ledger.chain import contract
from ledger.consent import messages
from ledger.domain.channels import Channel
from ledger.domain.errors import ExpiredSignature, InvalidSignature, StaleVersion, UnknownCompany
from ledger.runtime import Ledger
from tests.helpers import grant, sign, signed_grant, sms_terms, soon


def operator_nonce(ledger: Ledger) -> int:
    return int(ledger.chain.w3.eth.get_transaction_count(ledger.chain.operator.address))


def test_every_contract_error_maps_to_a_domain_exception() -> None:
    assert contract.error_names() - contract.mapped_error_names() <= {
        # OpenZeppelin errors that no operator path can raise (admin handover, ECDSA internals
        # that tryRecover reports as values, role renouncing).
        "AccessControlBadConfirmation",
        "AccessControlEnforcedDefaultAdminDelay",
        "AccessControlEnforcedDefaultAdminRules",
        "AccessControlInvalidDefaultAdmin",
        "SafeCastOverflowedUintDowncast",
        "FailedCall",
        "AddressEmptyCode",
        "InvalidShortString",  # EIP712 constructor only
        "StringTooLong",
    }


def test_a_signed_grant_is_relayed_and_replaces_by_version(
    ledger: Ledger, company: int, consumer: LocalAccount
) -> None:
    grant(ledger, consumer, sms_terms(max_contacts=4))
    grant(ledger, consumer, sms_terms(max_contacts=2))
    record = ledger.chain.grant(consumer.address, company, Channel.SMS, "latest")
    assert (record.active, record.max_contacts, record.version) == (True, 2, 2)


def test_a_replayed_grant_is_refused_without_gas(
    ledger: Ledger, company: int, consumer: LocalAccount
) -> None:
    terms = sms_terms()
    message, sig = signed_grant(ledger, consumer, terms)
    ledger.relayer.relay(message, sig)
    before = operator_nonce(ledger)
    with pytest.raises(StaleVersion):
        ledger.relayer.relay(message, sig)
    assert operator_nonce(ledger) == before


def test_an_expired_message_is_refused(
    ledger: Ledger, company: int, consumer: LocalAccount
) -> None:
    terms = sms_terms()
    message, sig = signed_grant(ledger, consumer, terms, deadline=int(time.time()) - 1)
    with pytest.raises(ExpiredSignature):
        ledger.relayer.relay(message, sig)


def test_someone_elses_signature_is_refused(
    ledger: Ledger, company: int, consumer: LocalAccount
) -> None:
    terms = sms_terms()
    mallory = Account.create()
    message = messages.set_grant(consumer.address, terms, version=0, epoch=0, deadline=soon())
    sig = sign(ledger, mallory, message)  # the consumer's message, mallory's key
    before = operator_nonce(ledger)
    with pytest.raises(InvalidSignature):
        ledger.relayer.relay(message, sig)
    assert operator_nonce(ledger) == before


@pytest.mark.parametrize("field", ["chain_id", "verifying_contract"])
def test_a_signature_for_another_deployment_is_refused(
    ledger: Ledger, company: int, consumer: LocalAccount, field: str
) -> None:
    terms = sms_terms()
    domain = ledger.chain.domain
    other = (
        messages.Domain(domain.chain_id + 1, domain.verifying_contract)
        if field == "chain_id"
        else messages.Domain(domain.chain_id, "0x" + "12" * 20)
    )
    deadline = int(time.time()) + 60
    message = messages.set_grant(consumer.address, terms, version=0, epoch=0, deadline=deadline)
    signature = messages.sign(message.typed_data(other), consumer.key)
    with pytest.raises(InvalidSignature):
        ledger.relayer.relay(message, signature)


def test_a_grant_for_an_unknown_company_is_refused(ledger: Ledger, consumer: LocalAccount) -> None:
    terms = sms_terms(company_id=99)
    message, sig = signed_grant(ledger, consumer, terms)
    with pytest.raises(UnknownCompany):
        ledger.relayer.relay(message, sig)
