"""Onboarding companies: the on-chain registration and the API key that goes with it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from ledger.chain.relayer import Relayer
from ledger.services import apikeys
from ledger.services.apikeys import Role


@dataclass(frozen=True, slots=True)
class Registered:
    company_id: int
    tx_hash: str
    block_number: int
    api_key: str  # shown once
    key_id: str


def register(
    relayer: Relayer, engine: Engine, *, company_id: int, name: str, admin: str
) -> Registered:
    """Registers the company on chain, then issues its first API key.

    Raises:
        CompanyExists, InvalidInput: from the contract, before anything is written.
    """
    receipt = relayer.register_company(company_id, name, admin)
    token, record = apikeys.create_key(engine, role=Role.COMPANY, company_id=company_id, label=name)
    return Registered(
        company_id=company_id,
        tx_hash="0x" + bytes(receipt["transactionHash"]).hex(),
        block_number=int(receipt["blockNumber"]),
        api_key=token,
        key_id=record.id,
    )
