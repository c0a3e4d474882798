"""Consumer sign-in with the wallet (EIP-4361)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, status

from api.deps import ConsumerTokenDep, LedgerDep, SignInLimit
from api.schemas import NonceOut, SignInIn, TokenOut
from ledger.services import sessions
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
    issued, consumer, expires = sessions.sign_in(
        engine=ledger.engine,
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


@router.post("/sign-out", status_code=status.HTTP_204_NO_CONTENT)
def sign_out(token: ConsumerTokenDep, ledger: LedgerDep) -> None:
    """End the presented token, in every API process."""
    sessions.sign_out(engine=ledger.engine, token=token)


@router.post("/sign-out-everywhere", status_code=status.HTTP_204_NO_CONTENT)
def sign_out_everywhere(token: ConsumerTokenDep, ledger: LedgerDep) -> None:
    """End every token the consumer holds now, the presented one too, in every API process."""
    sessions.sign_out_everywhere(
        engine=ledger.engine, consumer=token.consumer, ttl=ledger.settings.session_ttl
    )
