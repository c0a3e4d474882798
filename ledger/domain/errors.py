"""The exception tree. ``LedgerError`` is the root; the API maps each category to a status.

Every exception carries its fields and builds its own message, so callers never format
error strings and the API can put the fields in the problem document.
"""

from __future__ import annotations

from typing import Any, ClassVar


class LedgerError(Exception):
    """Root of every quota-ledger error.

    ``code`` is stable and machine-readable (used as the problem ``type`` suffix).
    """

    code: ClassVar[str] = "ledger_error"

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields


# ----- categories (the API maps these to HTTP statuses) -----


class InvalidInput(LedgerError):
    """The caller's input cannot be used (422)."""

    code = "invalid_input"


class NotFound(LedgerError):
    """The thing named does not exist (404)."""

    code = "not_found"


class Conflict(LedgerError):
    """The request is stale or clashes with the current state (409)."""

    code = "conflict"


class Unauthorized(LedgerError):
    """A signature or credential does not prove what it claims (401)."""

    code = "unauthorized"


class Forbidden(LedgerError):
    """The caller is known but may not do this (403)."""

    code = "forbidden"


class Unavailable(LedgerError):
    """A dependency (node, database, list) cannot be trusted right now (503)."""

    code = "unavailable"


# ----- contacts -----


class InvalidContact(InvalidInput):
    code = "invalid_contact"

    def __init__(self, raw: str, reason: str) -> None:
        # The raw input is not echoed: it may be a phone number or an e-mail address.
        super().__init__(f"invalid contact: {reason}", reason=reason)
        self.raw = raw


# ----- signatures and relaying -----


class InvalidSignature(Unauthorized):
    code = "invalid_signature"

    def __init__(self, consumer: str) -> None:
        super().__init__(f"signature is not {consumer}'s for this message", consumer=consumer)


class ExpiredSignature(InvalidInput):
    code = "expired_signature"

    def __init__(self, deadline: int) -> None:
        super().__init__(f"signed message expired at {deadline}", deadline=deadline)


class DeadlineTooFar(InvalidInput):
    code = "deadline_too_far"

    def __init__(self, deadline: int, latest: int) -> None:
        super().__init__(
            f"signed message's deadline {deadline} is too far ahead: at most {latest}",
            deadline=deadline,
            latest=latest,
        )


class StaleVersion(Conflict):
    code = "stale_version"

    def __init__(self, expected: int, current: int) -> None:
        super().__init__(
            f"message signed for version {expected}, the grant is at version {current}",
            expected=expected,
            current=current,
        )


class StaleEpoch(Conflict):
    code = "stale_epoch"

    def __init__(self, signed: int, current: int) -> None:
        super().__init__(
            f"message signed in epoch {signed}; the consumer revoked everything since "
            f"(epoch {current}): sign again",
            signed=signed,
            current=current,
        )


class StaleNonce(Conflict):
    code = "stale_nonce"

    def __init__(self, account: str, current: int) -> None:
        super().__init__(f"nonce is not {account}'s current nonce {current}", current=current)


class InvalidGrant(InvalidInput):
    code = "invalid_grant"

    def __init__(self, reason: str, **fields: Any) -> None:
        super().__init__(f"invalid grant: {reason}", reason=reason, **fields)


class GrantNotActive(Conflict):
    code = "grant_not_active"

    def __init__(self, consumer: str, company_id: int, channel: int) -> None:
        super().__init__(
            f"no active grant of {consumer} for company {company_id} on channel {channel}",
            consumer=consumer,
            company_id=company_id,
            channel=channel,
        )


class UnknownCompany(NotFound):
    code = "unknown_company"

    def __init__(self, company_id: int) -> None:
        super().__init__(f"no company {company_id}", company_id=company_id)


class CompanyExists(Conflict):
    code = "company_exists"

    def __init__(self, company_id: int) -> None:
        super().__init__(f"company {company_id} is already registered", company_id=company_id)


class CompanyStatusConflict(Conflict):
    code = "company_status"

    def __init__(self, company_id: int, status: int) -> None:
        super().__init__(f"company {company_id} is in status {status}", company_id=company_id)


class NotLinked(Conflict):
    code = "not_linked"

    def __init__(self, consumer: str) -> None:
        super().__init__(f"contact is not linked to {consumer}", consumer=consumer)


class AnchorNotGrowing(Conflict):
    code = "anchor_not_growing"

    def __init__(self, log_id: int, current: int, new: int) -> None:
        super().__init__(
            f"log {log_id}: anchor size {new} does not grow past {current}",
            log_id=log_id,
            current=current,
        )


class MissingRole(Forbidden):
    code = "missing_role"

    def __init__(self, account: str, role: str) -> None:
        super().__init__(f"{account} lacks role {role}", account=account, role=role)


class ContractReverted(LedgerError):
    """A revert the contract does not name (should not happen: a bug, reported as such)."""

    code = "contract_reverted"

    def __init__(self, detail: str) -> None:
        super().__init__(f"transaction reverted: {detail}", cause=detail)


# ----- infrastructure -----


class ChainUnavailable(Unavailable):
    code = "chain_unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__(f"EVM node unavailable: {detail}", cause=detail)


class LedgerStale(Unavailable):
    """The ledger index lags the chain beyond its bound: its answers cannot be trusted."""

    code = "ledger_stale"

    def __init__(self, lag_blocks: int, lag_seconds: float, detail: str = "") -> None:
        lag = f"{lag_blocks} blocks / {lag_seconds:.0f} s"
        super().__init__(
            f"ledger index is {lag} behind the chain {detail}".strip(),
            lag_blocks=lag_blocks,
            lag_seconds=lag_seconds,
        )


class DeploymentMismatch(Unavailable):
    code = "deployment_mismatch"

    def __init__(self, detail: str) -> None:
        super().__init__(f"ledger contract deployment does not match: {detail}", cause=detail)


# ----- opposition lists -----


class InvalidList(InvalidInput):
    """An opposition-list import that cannot be applied as asked."""

    code = "invalid_list"

    def __init__(self, reason: str, **fields: Any) -> None:
        super().__init__(f"opposition list refused: {reason}", reason=reason, **fields)


class ListUnavailable(Unavailable):
    """A list snapshot named in the database cannot be read: decisions needing it refuse."""

    code = "opposition_list_unavailable"

    def __init__(self, version: str, detail: str) -> None:
        super().__init__(
            f"opposition list {version} cannot be read: {detail}", version=version, cause=detail
        )


# ----- proof of control of a contact -----


class TooManyRequests(LedgerError):
    """The caller must wait before asking again (429)."""

    code = "too_many_requests"


class RateLimited(TooManyRequests):
    code = "rate_limited"

    def __init__(self, scope: str, limit: int, retry_after: int) -> None:
        super().__init__(
            f"at most {limit} link codes per hour per {scope}: retry in {retry_after} s",
            scope=scope,
            limit=limit,
            retry_after=retry_after,
        )


class InvalidAddress(InvalidInput):
    code = "invalid_address"

    def __init__(self, value: str) -> None:
        super().__init__(f"not an account address: {value[:64]!r}", value=value[:64])


class LinkCodeRejected(Unauthorized):
    code = "link_code_rejected"

    def __init__(self, attempts_left: int) -> None:
        super().__init__(f"wrong code: {attempts_left} attempts left", attempts_left=attempts_left)


class NoLinkChallenge(Conflict):
    """No code can be verified: none was sent, or it expired, or its attempts are used up."""

    code = "link_challenge_missing"

    def __init__(self, reason: str) -> None:
        super().__init__(f"no code to verify ({reason}): ask for a new one", reason=reason)


class SenderUnavailable(Unavailable):
    code = "sender_unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__(f"the code could not be sent: {detail}", cause=detail)
