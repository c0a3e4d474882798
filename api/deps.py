"""FastAPI dependencies, as ``Annotated`` aliases: the ledger, and who is calling.

Companies, regulators and operators present an API key (``Authorization: Bearer qlk_...``);
consumers present the short-lived token of a wallet sign-in (``Bearer qls2...``), checked on
every request against the sign-outs and revoke-alls every API process shares.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from limits.storage import MemoryStorage

from api.metrics import Metrics
from api.ratelimit import Limit, Limiter, client_key
from api.relay_budget import BudgetedRelayer
from ledger.consent import signin
from ledger.consent.signin import ConsumerToken
from ledger.domain.errors import Forbidden
from ledger.runtime import Ledger
from ledger.services import apikeys, sessions
from ledger.services.apikeys import Principal, Role

# The dependencies that only read the app's state are ``async``: FastAPI runs a ``def``
# dependency in the thread pool, a thread hop per dependency per request.


async def get_ledger(request: Request) -> Ledger:
    ledger: Ledger = request.app.state.ledger
    return ledger


LedgerDep = Annotated[Ledger, Depends(get_ledger)]


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


MetricsDep = Annotated[Metrics, Depends(get_metrics)]


async def get_limiter(request: Request) -> Limiter:
    limiter: Limiter = request.app.state.limiter
    return limiter


LimiterDep = Annotated[Limiter, Depends(get_limiter)]


def _per_client(limit: Limit) -> Callable[..., None]:
    def dependency(request: Request, limiter: LimiterDep) -> None:
        limiter.hit(limit, client_key(request.client.host if request.client else None))

    return dependency


# Anonymous endpoints count per client address (behind a proxy, run uvicorn with
# --forwarded-allow-ips so that the address is the client's, not the proxy's).
SignInLimit = Depends(_per_client(Limit.SIGN_IN))
RelayLimit = Depends(_per_client(Limit.RELAY))


def _relayer(ledger: LedgerDep, limiter: LimiterDep) -> BudgetedRelayer:
    return BudgetedRelayer(ledger.relayer, limiter)


RelayerDep = Annotated[BudgetedRelayer, Depends(_relayer)]

_api_key = HTTPBearer(
    scheme_name="apiKey", description="API key: `Bearer qlk_...`", auto_error=False
)
_consumer_token = HTTPBearer(
    scheme_name="consumerToken",
    description="wallet sign-in token: `Bearer qls2...`",
    auto_error=False,
)
ApiKeyCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_api_key)]
ConsumerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_consumer_token)]


class WrongRole(Forbidden):
    code = "wrong_role"

    def __init__(self, role: str, needed: tuple[Role, ...]) -> None:
        names = " or ".join(r.value for r in needed)
        super().__init__(f"this operation needs a {names} key, not a {role} key", role=role)


async def _principal(
    ledger: Ledger, limiter: Limiter, credentials: HTTPAuthorizationCredentials | None
) -> Principal:
    if credentials is None:
        raise apikeys.InvalidApiKey()
    token, max_age = credentials.credentials, ledger.settings.api_key_cache_seconds
    # In the event loop when the key was read recently; else one read in a worker thread.
    principal = apikeys.cached(ledger.engine, token, max_age=max_age)
    if principal is None:
        principal = await run_in_threadpool(
            apikeys.authenticate, ledger.engine, token, max_age=max_age
        )
    await _blocking_unless_in_memory(limiter, limiter.hit, Limit.API_KEY, principal.key_id)
    return principal


async def _blocking_unless_in_memory(
    limiter: Limiter, operation: Callable[..., None], *args: object
) -> None:
    """Runs a limiter operation inline when its counters are in memory, else (Redis) in a
    worker thread: the event loop never waits on the network."""
    if isinstance(limiter.storage, MemoryStorage):
        operation(*args)
    else:
        await run_in_threadpool(operation, *args)


def _role(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    async def dependency(
        ledger: LedgerDep, limiter: LimiterDep, credentials: ApiKeyCredentials
    ) -> Principal:
        principal = await _principal(ledger, limiter, credentials)
        if principal.role not in roles:
            raise WrongRole(principal.role.value, roles)
        return principal

    return dependency


def _signed_in(
    request: Request, ledger: LedgerDep, credentials: ConsumerCredentials
) -> ConsumerToken:
    if credentials is None:
        raise signin.InvalidToken("missing")
    # One indexed read per request; an unreadable database refuses (503), never lets through.
    token = sessions.verify(
        engine=ledger.engine,
        token=credentials.credentials,
        secret=ledger.settings.session_secret_bytes,
    )
    limiter: Limiter = request.app.state.limiter
    limiter.hit(Limit.CONSUMER, token.consumer)
    return token


ConsumerTokenDep = Annotated[ConsumerToken, Depends(_signed_in)]


def _consumer(token: ConsumerTokenDep) -> str:
    return token.consumer


CompanyDep = Annotated[Principal, Depends(_role(Role.COMPANY))]
RegulatorDep = Annotated[Principal, Depends(_role(Role.REGULATOR))]
# What anyone who checks the log may read: the anchors and the proofs between them.
AuditReaderDep = Annotated[Principal, Depends(_role(Role.COMPANY, Role.REGULATOR))]
OperatorDep = Annotated[Principal, Depends(_role(Role.OPERATOR))]
ConsumerDep = Annotated[str, Depends(_consumer)]
