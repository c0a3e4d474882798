"""Consumer sign-in with the wallet (EIP-4361)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from api.deps import LedgerDep, SignInLimit
from api.schemas import NonceOut, SignInIn, TokenOut
from ledger.consent import signin
from ledger.services.sign_in_nonces import issue_nonce

router = APIRouter(prefix="/v1/auth", tags=["consumer"])


@router.post("/nonce", response_model=NonceOut, dependencies=[SignInLimit])
def nonce(ledger: LedgerDep) -> NonceOut:
    """Return a single-use nonce for an EIP-4361 sign-in message."""
    authority = ledger.settings.sign_in_authority
    return NonceOut(
        nonce=issue_nonce(engine=ledger.engine, max_kept=ledger.settings.sign_in_max_nonces),
        domain=authority,
        uri=ledger.settings.sign_in_resource,
        chain_id=ledger.chain.chain_id,
    )


@router.post("/token", response_model=TokenOut, dependencies=[SignInLimit])
def token(body: SignInIn, ledger: LedgerDep) -> TokenOut:
    """Exchange a signed sign-in message for a short-lived consumer token."""
    issued, consumer, expires = signin.sign_in(
        ledger.engine,
        text=body.message,
        signature=bytes.fromhex(body.signature[2:]),
        domain=ledger.settings.sign_in_authority,
        uri=ledger.settings.sign_in_resource,
        chain_id=ledger.chain.chain_id,
        secret=ledger.settings.session_secret_bytes,
        ttl=ledger.settings.session_ttl,
        wallets=ledger.chain,
        now=datetime.now(UTC),
    )
    return TokenOut(token=issued, consumer=consumer, expires_at=int(expires.timestamp()))
