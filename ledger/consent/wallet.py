"""The CLI wallet: signs a consumer's messages locally with eth-account and hands them to the API.

The private key never leaves this process; the API only sees typed data and signatures.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Wallet:
    """A consumer's key and the API it talks to.

    Example:
        >>> Wallet("http://127.0.0.1:8000", key).grant(company_id=1, channel="sms",
        ...     max_contacts=4, period=365 * 86400, notice_hash="0x" + notice.hex())
    """

    api_url: str
    private_key: str
    ttl: int = DEFAULT_TTL  # seconds a signature stays valid
    client: httpx.Client | None = None  # tests pass the app's

    @property
    def address(self) -> str:
        return str(Account.from_key(self.private_key).address)

    def grant(
        self,
        *,
        company_id: int,
        channel: str,
        max_contacts: int,
        period: int,
        notice_hash: str,
        **schedule: int,
    ) -> dict[str, Any]:
        """Signs and relays a grant through the API.

        Args:
            company_id: the company allowed to contact.
            channel: call, sms, email or messaging.
            max_contacts: contacts allowed per period.
            period: rolling window in seconds.
            notice_hash: 0x-hex keccak of the company's notice the consumer read.
            schedule: optional valid_from, valid_until, hours_mask, days_mask.

        Returns:
            The API's answer (transaction hash and block).

        Raises:
            ApiError: the API refused the message.
        """
        draft = {
            "consumer": self.address,
            "company_id": company_id,
            "channel": channel,
            "max_contacts": max_contacts,
            "period": period,
            "notice_hash": notice_hash,
            "deadline": self._deadline(),
            **schedule,
        }
        with self._http() as http:
            prepared = _post(http, "/v1/grants/typed-data", draft)
            body = {**draft, "version": prepared["version"], "epoch": prepared["epoch"]}
            return self._relay(http, "/v1/grants", prepared["typed_data"], body)

    def revoke(self, *, company_id: int, channel: str) -> dict[str, Any]:
        """Signs and relays the revocation of the consumer's current grant."""
        with self._http() as http:
            domain = messages.Domain(**_get(http, "/v1/ledger")["domain"])
            current = _get(http, f"/v1/grants/{self.address}/{company_id}/{channel}")
            epoch = _get(http, f"/v1/consumers/{self.address}/nonce")["epoch"]
            message = messages.revoke_grant(
                self.address,
                company_id=company_id,
                channel=int(Channel.parse(channel)),
                version=current["version"],
                epoch=epoch,
                deadline=self._deadline(),
            )
            body = {
                "consumer": self.address,
                "company_id": company_id,
                "channel": channel,
                "version": message.guard,
                "epoch": message.epoch,
                "deadline": message.deadline,
            }
            return self._relay(http, "/v1/grants/revocations", message.typed_data(domain), body)

    def _relay(
        self, http: httpx.Client, path: str, doc: dict[str, Any], body: dict[str, Any]
    ) -> dict[str, Any]:
        signature = messages.sign(doc, self.private_key)
        return _post(http, path, {**body, "signature": "0x" + signature.hex()})

    def _deadline(self) -> int:
        return int(time.time()) + self.ttl

    def _http(self) -> AbstractContextManager[httpx.Client]:
        if self.client is not None:
            return nullcontext(self.client)  # the caller owns it
        return httpx.Client(base_url=self.api_url, timeout=30)


def _post(http: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    return _answer(http.post(path, json=body))


def _get(http: httpx.Client, path: str) -> dict[str, Any]:
    return _answer(http.get(path))


def _answer(response: httpx.Response) -> dict[str, Any]:
    payload: dict[str, Any] = response.json()
    if response.status_code >= 400:
        raise ApiError(response.status_code, payload)
    return payload
