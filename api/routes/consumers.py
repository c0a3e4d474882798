"""Consumers: consumer-wide signed messages, contact linking, and their own data."""

from __future__ import annotations

import time

from fastapi import APIRouter

from api.bulkhead import NodeLimit
from api.deps import ConsumerDep, LedgerDep, RelayerDep, RelayLimit
from api.schemas import (
    AddressPath,
    LinkOut,
    LinkStartIn,
    LinkStartOut,
    LinkVerifyIn,
    MyGrantOut,
    NonceInfo,
    SignedGlobalCap,
    SignedRevokeAll,
    SignedUnlink,
    TxOut,
)
from ledger.consent import messages
from ledger.services import consumer_views, linking

router = APIRouter(tags=["consumer"])


@router.get("/v1/consumers/{consumer}/nonce", response_model=NonceInfo, dependencies=[NodeLimit])
def consumer_nonce(consumer: AddressPath, ledger: LedgerDep) -> NonceInfo:
    """Return the nonce and epoch a consumer signs into their messages."""
    return NonceInfo(
        consumer=consumer, nonce=ledger.chain.nonce(consumer), epoch=ledger.chain.epoch(consumer)
    )


@router.post(
    "/v1/revocations/all",
    response_model=TxOut,
    status_code=201,
    dependencies=[RelayLimit, NodeLimit],
)
def relay_revoke_all(body: SignedRevokeAll, relayer: RelayerDep) -> TxOut:
    """Relay a signed revoke-all: every grant of the consumer stops at once."""
    message = messages.revoke_all(
        body.consumer, nonce=body.nonce, epoch=body.epoch, deadline=body.deadline
    )
    receipt = relayer.relay(message, body.signature_bytes)
    return TxOut.of(receipt)


@router.post(
    "/v1/global-caps", response_model=TxOut, status_code=201, dependencies=[RelayLimit, NodeLimit]
)
def relay_global_cap(body: SignedGlobalCap, relayer: RelayerDep) -> TxOut:
    """Relay a signed global cap: at most N contacts per period across all companies."""
    message = messages.set_global_cap(
        body.consumer,
        max_contacts=body.max_contacts,
        period=body.period,
        nonce=body.nonce,
        epoch=body.epoch,
        deadline=body.deadline,
    )
    receipt = relayer.relay(message, body.signature_bytes)
    return TxOut.of(receipt)


@router.post("/v1/links/start", response_model=LinkStartOut, status_code=201)
def start_link(body: LinkStartIn, ledger: LedgerDep, consumer: ConsumerDep) -> LinkStartOut:
    """Send a one-time code to a number or address the signed-in consumer wants to link."""
    started = ledger.linker.start(consumer=consumer, contact=body.contact)
    return LinkStartOut(
        challenge_id=started.challenge_id,
        expires_at=started.expires_at,
        destination=started.destination,
    )


@router.post("/v1/links/verify", response_model=LinkOut, status_code=201, dependencies=[NodeLimit])
def verify_link(body: LinkVerifyIn, ledger: LedgerDep, consumer: ConsumerDep) -> LinkOut:
    """Check the one-time code; on success the operator attests the link on chain."""
    linked = linking.verify_and_attest(
        ledger.linker, ledger.relayer, consumer=consumer, contact=body.contact, code=body.code
    )
    return LinkOut(commitment="0x" + linked.commitment.hex(), linked_at_block=linked.block_number)


@router.post(
    "/v1/links/unlink", response_model=TxOut, status_code=201, dependencies=[RelayLimit, NodeLimit]
)
def relay_unlink(body: SignedUnlink, relayer: RelayerDep) -> TxOut:
    """Relay a signed unlink: the consumer's grants stop reaching that contact."""
    message = messages.unlink(
        body.consumer,
        commitment=bytes.fromhex(body.commitment[2:]),
        nonce=body.nonce,
        epoch=body.epoch,
        deadline=body.deadline,
    )
    receipt = relayer.relay(message, body.signature_bytes)
    return TxOut.of(receipt)


@router.get("/v1/me/grants", response_model=list[MyGrantOut])
def my_grants(ledger: LedgerDep, consumer: ConsumerDep) -> list[MyGrantOut]:
    """List the signed-in consumer's grants with the quota left in each window."""
    return [
        MyGrantOut(
            company_id=g.company_id,
            channel=g.channel.name.lower(),
            active=g.active,
            version=g.version,
            max_contacts=g.max_contacts,
            period=g.period,
            valid_from=g.valid_from,
            valid_until=g.valid_until,
            used_in_window=g.used_in_window,
            remaining=g.remaining,
            next_free_at=g.next_free_at,
        )
        for g in consumer_views.grants_of(ledger.engine, consumer, now=int(time.time()))
    ]


@router.get("/v1/me/links", response_model=list[LinkOut])
def my_links(ledger: LedgerDep, consumer: ConsumerDep) -> list[LinkOut]:
    """List the commitments linked to the signed-in consumer (what an unlink signs)."""
    return [
        LinkOut(commitment=v.commitment, linked_at_block=v.block_number)
        for v in consumer_views.links_of(ledger.engine, consumer)
    ]
