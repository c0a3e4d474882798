"""The CLI wallet: signs a consumer's messages locally with eth-account and hands them to the API.

The private key never leaves this process; the API only sees typed data and signatures.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import httpx
from eth_account import Account

from ledger.consent import messages
from ledger.domain.channels import Channel
from ledger.domain.errors import LedgerError

DEFAULT_TTL = 3600  # seconds a signed message stays valid


class ApiError(LedgerError):
    code = "api_error"

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        detail = str(problem.get("detail", problem))
        super().__init__(f"API answered {status}: {detail}", status=status)
        self.problem = problem


def grant(
    api_url: str,
    private_key: str,
    *,
    company_id: int,
    channel: str,
    max_contacts: int,
    period: int,
    ttl: int = DEFAULT_TTL,
    client: httpx.Client | None = None,
    **schedule: int | str,
) -> dict[str, Any]:
    """Signs and relays a grant through the API.

    Args:
        api_url: base URL of the quota-ledger API.
        private_key: the consumer's key (stays local).
        company_id: the company allowed to contact.
        channel: call, sms, email or messaging.
        max_contacts: contacts allowed per period.
        period: rolling window in seconds.
        ttl: seconds the signature stays valid.
        client: an HTTP client (tests pass the app's).
        schedule: optional valid_from, valid_until, hours_mask, days_mask, notice_hash.

    Returns:
        The API's answer (transaction hash and block).

    Raises:
        ApiError: the API refused the message.
    """
    account = Account.from_key(private_key)
    draft = {
        "consumer": account.address,
        "company_id": company_id,
        "channel": channel,
        "max_contacts": max_contacts,
        "period": period,
        "deadline": int(time.time()) + ttl,
        **schedule,
    }
    with _client(api_url, client) as http:
        prepared = _post(http, "/v1/grants/typed-data", draft)
        signature = messages.sign(prepared["typed_data"], private_key)
        body = {**draft, "version": prepared["version"], "signature": "0x" + signature.hex()}
        return _post(http, "/v1/grants", body)


def revoke(
    api_url: str,
    private_key: str,
    *,
    company_id: int,
    channel: str,
    ttl: int = DEFAULT_TTL,
    client: httpx.Client | None = None,
) -> dict[str, Any]:
    """Signs and relays the revocation of the consumer's current grant."""
    account = Account.from_key(private_key)
    deadline = int(time.time()) + ttl
    with _client(api_url, client) as http:
        domain = messages.Domain(**_get(http, "/v1/ledger")["domain"])
        current = _get(http, f"/v1/grants/{account.address}/{company_id}/{channel}")
        doc = messages.revoke_grant(
            domain,
            consumer=account.address,
            company_id=company_id,
            channel=int(Channel.parse(channel)),
            version=current["version"],
            deadline=deadline,
        )
        body = {
            "consumer": account.address,
            "company_id": company_id,
            "channel": channel,
            "version": current["version"],
            "deadline": deadline,
            "signature": "0x" + messages.sign(doc, private_key).hex(),
        }
        return _post(http, "/v1/grants/revocations", body)


def _client(api_url: str, client: httpx.Client | None) -> AbstractContextManager[httpx.Client]:
    if client is not None:
        return nullcontext(client)  # the caller owns it
    return httpx.Client(base_url=api_url, timeout=30)


def _post(http: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    return _answer(http.post(path, json=body))


def _get(http: httpx.Client, path: str) -> dict[str, Any]:
    return _answer(http.get(path))


def _answer(response: httpx.Response) -> dict[str, Any]:
    payload: dict[str, Any] = response.json()
    if response.status_code >= 400:
        raise ApiError(response.status_code, payload)
    return payload
