"""EIP-712 messages: the one place that builds, signs and verifies what consumers sign.

The CLI wallet, the API and the tests all call these builders, and the browser wallet signs
the same typed data with ``eth_signTypedData_v4``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.address import to_checksum_address

from ledger.domain.errors import DeadlineTooFar, ExpiredSignature, InvalidGrant, InvalidSignature
from ledger.domain.grants import GrantTerms

DOMAIN_NAME = "QuotaLedger"
DOMAIN_VERSION = "1"

_EIP712_DOMAIN = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]

Guard = Literal["version", "nonce"]
ZERO_HASH = b"\x00" * 32


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of consumer message: its EIP-712 type, the contract function that relays it and
    what stops a replay.

    Every message is ``consumer``, the kind's own fields, the guard, ``epoch``, ``deadline`` (in
    that order, as in QuotaLedger.sol), so one table row describes it completely. The epoch is
    the consumer's: a revoke-all moves it on and so voids every signature still in flight.
    """

    primary_type: str
    method: str
    guard: Guard  # "version": the grant's own counter; "nonce": the consumer's counter
    fields: tuple[tuple[str, str], ...]  # (name, Solidity type) between consumer and guard
    as_struct: bool = False  # the contract takes the fields as one struct argument
    # Refuses a message the contract would take but the law would not (before gas is spent).
    admit: Callable[[tuple[Any, ...]], None] | None = None

    def __post_init__(self) -> None:
        # The relayer reads the grant a version guards from the first two fields.
        if self.guard == "version" and [n for n, _ in self.fields[:2]] != ["companyId", "channel"]:
            raise ValueError(f"{self.primary_type}: a version guard needs companyId, channel first")

    @property
    def eip712_fields(self) -> list[dict[str, str]]:
        guard_type = "uint32" if self.guard == "version" else "uint256"
        names = [("consumer", "address"), *self.fields, (self.guard, guard_type)]
        frame = (("epoch", "uint32"), ("deadline", "uint256"))
        return [{"name": n, "type": t} for n, t in (*names, *frame)]


def _require_notice(values: tuple[Any, ...]) -> None:
    # GDPR art. 7(1): the company must be able to show what the consumer was told; a grant
    # signed over no notice cannot be proven later, so it never reaches the chain.
    if values[-1] == ZERO_HASH:
        raise InvalidGrant("notice_hash is zero: sign the hash of the notice the consumer read")


SET_GRANT = Kind(
    "SetGrant",
    "setGrantBySig",
    "version",
    (
        ("companyId", "uint64"),
        ("channel", "uint8"),
        ("maxContacts", "uint32"),
        ("period", "uint32"),
        ("validFrom", "uint40"),
        ("validUntil", "uint40"),
        ("hoursMask", "uint24"),
        ("daysMask", "uint8"),
        ("noticeHash", "bytes32"),
    ),
    as_struct=True,
    admit=_require_notice,
)
REVOKE_GRANT = Kind(
    "RevokeGrant", "revokeGrantBySig", "version", (("companyId", "uint64"), ("channel", "uint8"))
)
REVOKE_ALL = Kind("RevokeAll", "revokeAllBySig", "nonce", ())
SET_GLOBAL_CAP = Kind(
    "SetGlobalCap", "setGlobalCapBySig", "nonce", (("maxContacts", "uint32"), ("period", "uint32"))
)
UNLINK = Kind("Unlink", "unlinkBySig", "nonce", (("commitment", "bytes32"),))

KINDS = {k.primary_type: k for k in (SET_GRANT, REVOKE_GRANT, REVOKE_ALL, SET_GLOBAL_CAP, UNLINK)}
# Field lists must match the type strings written out in QuotaLedger.sol.
TYPES: dict[str, list[dict[str, str]]] = {name: k.eip712_fields for name, k in KINDS.items()}


@dataclass(frozen=True, slots=True)
class Domain:
    """The EIP-712 domain of one deployment: a signature for another chain or contract fails."""

    chain_id: int
    verifying_contract: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": self.chain_id,
            "verifyingContract": to_checksum_address(self.verifying_contract),
        }


@dataclass(frozen=True, slots=True)
class Message:
    """One consumer message, before or after it is signed.

    Example:
        >>> m = revoke_all("0x" + "11" * 20, nonce=0, epoch=0, deadline=2_000_000_000)
        >>> m.typed_data(Domain(31337, "0x" + "22" * 20))["primaryType"]
        'RevokeAll'
    """

    kind: Kind
    consumer: str
    values: tuple[Any, ...]  # the kind's fields, in order (ints and bytes)
    guard: int  # the version or nonce the consumer signed
    epoch: int  # the consumer's epoch when signing
    deadline: int

    @property
    def grant(self) -> tuple[int, int]:
        """(company id, channel) of the grant a version-guarded message is about."""
        return int(self.values[0]), int(self.values[1])

    def admit(self) -> None:
        """Raises when the law refuses this message whatever its signature (see ``Kind.admit``)."""
        if self.kind.admit is not None:
            self.kind.admit(self.values)

    def typed_data(self, domain: Domain) -> dict[str, Any]:
        """The full ``eth_signTypedData_v4`` document."""
        names = [f["name"] for f in self.kind.eip712_fields]
        plain = [_json(v) for v in self.values]
        values = [to_checksum_address(self.consumer), *plain, self.guard, self.epoch, self.deadline]
        return {
            "types": {
                "EIP712Domain": _EIP712_DOMAIN,
                self.kind.primary_type: TYPES[self.kind.primary_type],
            },
            "primaryType": self.kind.primary_type,
            "domain": domain.as_dict(),
            "message": dict(zip(names, values, strict=True)),
        }

    def call_args(self, signature: bytes) -> tuple[Any, ...]:
        """The arguments of the contract function that relays this message."""
        fields = (self.values,) if self.kind.as_struct else self.values
        consumer = to_checksum_address(self.consumer)
        return (consumer, *fields, self.guard, self.epoch, self.deadline, signature)


def _json(value: Any) -> Any:
    return "0x" + value.hex() if isinstance(value, bytes) else int(value)


def set_grant(
    consumer: str, terms: GrantTerms, *, version: int, epoch: int, deadline: int
) -> Message:
    """``SetGrant``; ``version`` is the grant's current version."""
    return Message(SET_GRANT, consumer, terms.as_tuple(), version, epoch, deadline)


def revoke_grant(
    consumer: str, *, company_id: int, channel: int, version: int, epoch: int, deadline: int
) -> Message:
    """``RevokeGrant``: the grant stops from the block that records it."""
    return Message(REVOKE_GRANT, consumer, (company_id, int(channel)), version, epoch, deadline)


def revoke_all(consumer: str, *, nonce: int, epoch: int, deadline: int) -> Message:
    """``RevokeAll``: every grant of the consumer stops at once."""
    return Message(REVOKE_ALL, consumer, (), nonce, epoch, deadline)


def set_global_cap(
    consumer: str, *, max_contacts: int, period: int, nonce: int, epoch: int, deadline: int
) -> Message:
    """``SetGlobalCap``; (0, 0) removes the cap."""
    return Message(SET_GLOBAL_CAP, consumer, (max_contacts, period), nonce, epoch, deadline)


def unlink(consumer: str, *, commitment: bytes, nonce: int, epoch: int, deadline: int) -> Message:
    """``Unlink``: the consumer removes the link of one contact."""
    return Message(UNLINK, consumer, (commitment,), nonce, epoch, deadline)


def sign(document: dict[str, Any], private_key: str | bytes) -> bytes:
    """Signs typed data as a wallet would (65 bytes, r || s || v)."""
    return bytes(Account.sign_typed_data(private_key, full_message=document).signature)


def recover(document: dict[str, Any], signature: bytes) -> str:
    """The address whose key signed ``document``.

    Raises:
        InvalidSignature: the signature is malformed.
    """
    consumer = str(document["message"].get("consumer", ""))
    try:
        return str(
            Account.recover_message(encode_typed_data(full_message=document), signature=signature)
        )
    except Exception as exc:  # eth-keys raises several types for malformed input
        raise InvalidSignature(consumer) from exc


def check_deadline(deadline: int, now: int, max_ttl: int) -> None:
    """Raises ExpiredSignature when ``now`` is past ``deadline`` (the contract's rule), and
    DeadlineTooFar when ``deadline`` is more than ``max_ttl`` seconds ahead (the operator's)."""
    if now > deadline:
        raise ExpiredSignature(deadline)
    if deadline > now + max_ttl:
        raise DeadlineTooFar(deadline, now + max_ttl)
