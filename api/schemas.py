"""Request and response models of the HTTP API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from ledger.domain.grants import ALL_DAYS, ALL_HOURS, OPEN_ENDED

ChannelName = Literal["call", "sms", "email", "messaging"]
ADDRESS_PATTERN = r"^0x[0-9a-fA-F]{40}$"
Address = Field(pattern=ADDRESS_PATTERN, examples=["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"])
AddressPath = Annotated[str, Path(pattern=ADDRESS_PATTERN)]
UINT32 = (1 << 32) - 1
Nonce = Field(
    ge=0,
    lt=1 << 255,
    description="the consumer's current nonce (GET /v1/consumers/{address}/nonce)",
)


class ConsumerMessage(BaseModel):
    """What every message a consumer signs names: who, and until when the signature holds."""

    consumer: str = Address
    deadline: int = Field(gt=0, lt=1 << 63)


class ConsumerSigned(ConsumerMessage):
    """A consumer message with its signature (EOA: 65 bytes; ERC-1271 wallets: longer)."""

    signature: str = Field(pattern=r"^0x([0-9a-fA-F]{2}){65,2048}$")
    epoch: int = Field(
        ge=0,
        le=UINT32,
        description="the consumer's epoch, as signed (GET /v1/consumers/{address}/nonce)",
    )

    @property
    def signature_bytes(self) -> bytes:
        return bytes.fromhex(self.signature[2:])


BasisName = Literal[
    "ongoing_contract", "existing_business_relationship", "soft_opt_in", "appointment"
]
UnixTime = Field(default=None, ge=0, lt=1 << 40)


class DeclaredBasisIn(BaseModel):
    """A legal basis other than consent, with the facts the law asks for (unix times)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal[
        "ongoing_contract", "existing_business_relationship", "soft_opt_in", "appointment"
    ]
    contract_reference: str | None = Field(default=None, min_length=1, max_length=200)
    subject: str | None = Field(default=None, min_length=1, max_length=200)
    contract_ends_at: int | None = UnixTime
    last_purchase_at: int | None = UnixTime
    inquiry_at: int | None = UnixTime
    existing_customer: bool = False
    similar_products: bool = False
    opt_out_offered: bool = False
    appointment_at: int | None = UnixTime


class CheckRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"contact": "+33 6 12 34 56 78", "channel": "sms", "record": True}]
        }
    )

    contact: str = Field(min_length=1, max_length=254, description="phone number or e-mail address")
    channel: ChannelName
    record: bool = Field(default=False, description="also record the contact in the usage log")
    basis: DeclaredBasisIn | None = Field(
        default=None,
        description="a legal basis other than a signed grant, used when no grant is active; "
        "validated against the law of the contact's region and channel and stored in the log",
    )
    at: AwareDatetime | None = Field(
        default=None,
        description="plan: ask about this moment (ISO 8601 with an offset) instead of now; "
        "only without record (a recorded contact is always now, by the server's clock)",
    )

    @model_validator(mode="after")
    def _planning_records_nothing(self) -> CheckRequest:
        if self.at is not None and self.record:
            raise ValueError("a planned check (at) cannot record: a recorded contact is now")
        return self


class ReasonOut(BaseModel):
    code: str
    message: str
    rule: str | None = Field(default=None, description="id of the rule of law (quota-ledger rules)")
    reference: str | None = Field(default=None, description="the legal text of that rule")


class ContactOut(BaseModel):
    kind: str
    value: str
    region: str | None
    time_zone: str | None


class ReceiptOut(BaseModel):
    seq: int
    entry_hash: str


class CheckResponse(BaseModel):
    allowed: bool
    reasons: list[ReasonOut]
    contact: ContactOut
    consumer: str | None
    remaining: int | None = Field(description="contacts left in the grant's window after this one")
    next_free_at: int | None = Field(description="unix time when the next unit frees up")
    grant_version: int | None
    block_number: int | None = Field(description="block of the chain state the decision used")
    receipt: ReceiptOut | None
    basis: str | None = Field(
        default=None, description="what made the contact lawful: consent, opposition_list, ..."
    )
    rules: list[str] = Field(default_factory=list, description="ids of the rules of law applied")


class GrantTermsIn(BaseModel):
    company_id: int = Field(gt=0, lt=1 << 63)
    channel: ChannelName
    max_contacts: int = Field(gt=0, le=UINT32)
    period: int = Field(gt=0, le=UINT32, description="rolling window in seconds")
    valid_from: int = Field(default=0, ge=0, le=OPEN_ENDED)
    valid_until: int = Field(default=OPEN_ENDED, gt=0, le=OPEN_ENDED)
    hours_mask: int = Field(default=ALL_HOURS, gt=0, le=ALL_HOURS)
    days_mask: int = Field(default=ALL_DAYS, gt=0, le=ALL_DAYS)
    notice_hash: str = Field(
        pattern=r"^0x[0-9a-fA-F]{64}$",
        description="keccak-256 of the company's notice the consumer read (not zero)",
    )


class GrantDraft(GrantTermsIn, ConsumerMessage):
    pass


class SignedGrant(GrantTermsIn, ConsumerSigned):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "consumer": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
                    "company_id": 1,
                    "channel": "sms",
                    "max_contacts": 4,
                    "period": 31536000,
                    "notice_hash": "0x" + "5e" * 32,
                    "version": 0,
                    "epoch": 0,
                    "deadline": 1893456000,
                    "signature": "0x" + "00" * 65,
                }
            ]
        }
    )

    version: int = Field(ge=0, le=UINT32, description="the grant's current version, as signed")


class SignedRevocation(ConsumerSigned):
    company_id: int = Field(gt=0, lt=1 << 63)
    channel: ChannelName
    version: int = Field(ge=0, le=UINT32)


class TypedDataOut(BaseModel):
    version: int = Field(description="the grant's current version, to sign")
    epoch: int = Field(description="the consumer's current epoch, to sign")
    typed_data: dict[str, object] = Field(description="sign with eth_signTypedData_v4")


class TxOut(BaseModel):
    tx_hash: str
    block_number: int

    @classmethod
    def of(cls, receipt: Mapping[str, Any]) -> TxOut:
        return cls(
            tx_hash="0x" + bytes(receipt["transactionHash"]).hex(),
            block_number=int(receipt["blockNumber"]),
        )


class ListHealthOut(BaseModel):
    region: str
    company_id: int | None
    version: str
    age_seconds: int
    max_age: int | None
    stale: bool = Field(description="checks relying on this list refuse with opposition_list_stale")


class NodeOut(BaseModel):
    """The local node `quota-ledger up` runs, restarts and replays when it dies."""

    state: Literal["running", "restarting", "stopped"]
    pid: int | None
    restarts: int = Field(description="times the node was brought back since the API started")
    last_restart_at: int | None = Field(description="unix time it last came back, replayed")
    last_exit: int | None = Field(description="how it last died (negative: killed by a signal)")
    detail: str


class LeaderOut(BaseModel):
    """The process that runs the indexer, of those sharing the database."""

    role: str
    this_process: bool
    id: str | None = Field(description="the leader's random process id; null: nobody leads")
    pid: int | None
    host: str | None


class UsageLogHealthOut(BaseModel):
    status: Literal["ok", "corrupt"]
    verified_seq: int | None = Field(
        default=None, description="entries this API process has re-hashed so far"
    )
    code: Literal["usage_log_corrupt"] | None = None
    seq: int | None = Field(default=None, description="where the log was found broken")
    detail: str | None = None


class HealthOut(BaseModel):
    status: Literal["ok", "degraded", "failed"]
    chain_id: int | None
    contract: str | None
    head_block: int | None
    detail: str | None = None
    index_block: int | None = None
    lag_blocks: int | None = None
    lag_seconds: float | None = None
    database: Literal["ok", "unavailable"] = "ok"
    lists: list[ListHealthOut] = Field(default_factory=list)
    node: NodeOut | None = Field(default=None, description="null: the node is not run by this API")
    leader: LeaderOut | None = None
    usage_log: UsageLogHealthOut | None = None


class DomainOut(BaseModel):
    chain_id: int
    verifying_contract: str


class LedgerOut(BaseModel):
    name: str
    version: str
    domain: DomainOut


class GrantOut(BaseModel):
    consumer: str
    company_id: int
    channel: ChannelName
    active: bool
    version: int = Field(description="sign this version to replace or revoke the grant")
    max_contacts: int
    period: int
    valid_from: int
    valid_until: int
    hours_mask: int
    days_mask: int


class NonceOut(BaseModel):
    nonce: str
    domain: str = Field(description="EIP-4361 domain to put in the message")
    uri: str
    chain_id: int


class SignInIn(BaseModel):
    message: str = Field(
        min_length=1, max_length=4096, description="the EIP-4361 message, as signed"
    )
    # EOA: 65 bytes; an ERC-1271 wallet's may be longer.
    signature: str = Field(pattern=r"^0x([0-9a-fA-F]{2}){65,2048}$")


class TokenOut(BaseModel):
    token: str
    consumer: str
    expires_at: int


class CompanyIn(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"company_id": 1, "name": "Acme SMS", "admin": "0x" + "ab" * 20}]
        }
    )

    company_id: int = Field(gt=0, lt=1 << 63)
    name: str = Field(min_length=1, max_length=200)
    admin: str = Address


class CompanyOut(BaseModel):
    company_id: int
    tx_hash: str
    block_number: int
    key_id: str
    api_key: str = Field(description="shown once; store it now")


class KeyOut(BaseModel):
    key_id: str
    api_key: str = Field(description="shown once; store it now")


class KeyInfo(BaseModel):
    key_id: str
    role: str
    company_id: int | None
    revoked: bool


class EntryOut(BaseModel):
    seq: int
    at: int
    company_id: int
    channel: ChannelName
    consumer: str | None
    decision: str
    reasons: list[str]
    outcome: str | None
    refers_to: int | None
    grant_version: int | None
    block_number: int | None
    list_version: str | None
    prev_hash: str
    entry_hash: str


class InclusionOut(BaseModel):
    """Where an entry sits in an anchored tree, and the path from its leaf to the root."""

    tree_size: int = Field(description="entries the anchor covers")
    root: str = Field(description="the anchored RFC 9162 root (hex), also readable on chain")
    anchor_block: int = Field(description="block of the anchoring transaction")
    inclusion: list[str] = Field(
        description="RFC 9162 inclusion proof of leaf seq - 1 (hex hashes, leaf side first)"
    )


class ReceiptEntryOut(EntryOut):
    leaf_hash: str = Field(description="the entry's RFC 9162 leaf hash (its entry_hash)")
    proof: InclusionOut | None = Field(description="null until an anchor covers the entry")


class AnchorOut(BaseModel):
    log_id: int
    tree_size: int
    root: str = Field(description="RFC 9162 root of the first tree_size entries (hex)")
    block_number: int
    anchored_at: int = Field(description="the block's time, unix seconds")
    tx_hash: str


class ConsistencyOut(BaseModel):
    first: AnchorOut
    second: AnchorOut
    proof: list[str] = Field(
        description="RFC 9162 consistency proof from the first tree to the second (hex)"
    )


class EntryPage(BaseModel):
    entries: list[EntryOut]
    next_after_seq: int | None = Field(description="pass as after_seq for the next page")


class OutcomeIn(BaseModel):
    seq: int = Field(gt=0, lt=1 << 63, description="receipt sequence number of the contact")
    outcome: Literal["answered", "no_answer", "refused_by_consumer"]


class ContactedOut(BaseModel):
    at: int
    company_id: int
    channel: ChannelName
    grant_version: int | None
    seq: int


BATCH_MAX = 10_000


class BatchItemIn(BaseModel):
    contact: str = Field(min_length=1, max_length=254)
    channel: ChannelName


class BatchRequest(BaseModel):
    items: list[BatchItemIn] = Field(min_length=1, max_length=BATCH_MAX)
    record: bool = False


class BatchItemOut(BaseModel):
    index: int
    result: CheckResponse | None = None
    error: str | None = Field(default=None, description="problem type suffix, e.g. invalid_contact")


class BatchResponse(BaseModel):
    results: list[BatchItemOut]


class SignedRevokeAll(ConsumerSigned):
    nonce: int = Nonce


class SignedGlobalCap(ConsumerSigned):
    max_contacts: int = Field(ge=0, le=UINT32, description="0 with period 0 removes the cap")
    period: int = Field(ge=0, le=UINT32)
    nonce: int = Nonce


class SignedUnlink(ConsumerSigned):
    commitment: str = Field(pattern=r"^0x[0-9a-fA-F]{64}$")
    nonce: int = Nonce


class NonceInfo(BaseModel):
    consumer: str
    nonce: int = Field(description="signed into revoke-all, global-cap and unlink messages")
    epoch: int = Field(description="signed into every message; a revoke-all moves it on")


class LinkStartIn(BaseModel):
    contact: str = Field(min_length=1, max_length=254, examples=["+33 6 12 34 56 78"])


class LinkStartOut(BaseModel):
    challenge_id: int
    expires_at: int
    destination: str = Field(description="where the code was sent, masked")


class LinkVerifyIn(BaseModel):
    contact: str = Field(min_length=1, max_length=254)
    code: str = Field(pattern=r"^[0-9]{6}$")


class LinkOut(BaseModel):
    commitment: str
    linked_at_block: int


class MyGrantOut(BaseModel):
    company_id: int
    channel: ChannelName
    active: bool
    version: int
    max_contacts: int
    period: int
    valid_from: int
    valid_until: int
    used_in_window: int
    remaining: int
    next_free_at: int


class GrantEventOut(BaseModel):
    id: str = Field(description="block:log_index; resume with after=")
    type: Literal["grant_set", "grant_revoked", "all_grants_revoked"]
    consumer: str
    channel: ChannelName | None
    version: int | None
    block_number: int


class ListOut(BaseModel):
    version: str
    region: str
    company_id: int | None
    source: str
    fetched_at: int
    max_age: int | None
    count: int
    added: int
    removed: int
    invalid: int
    imported_at: int


class ListImportOut(BaseModel):
    snapshot: ListOut
    created: bool
    invalid_lines: list[int]


class ReplayReasonOut(BaseModel):
    code: str
    message: str


class ReplayFindingOut(BaseModel):
    seq: int
    kind: Literal["violation", "wrongly_refused", "mismatch", "unknown_block"]
    recorded: dict[str, Any] = Field(description="the decision as the log records it")
    chain: dict[str, Any] = Field(description="the decision replayed from the chain and the log")
    reasons: list[ReplayReasonOut] = Field(description="the replayed decision's reasons")
    differences: list[str] = Field(description="the recorded fields the replay does not give")


class ReplayOut(BaseModel):
    ok: bool
    chain_head: int
    entries: int
    decisions: int
    agreed: int
    violations: int
    wrongly_refused: int
    mismatches: int
    outcomes: int
    not_replayable: int = Field(description="refusals recorded before the ledger was read")
    not_rechecked: dict[str, int] = Field(
        description="what the replay took from the entries, with how many decisions rest on it"
    )
    findings: list[ReplayFindingOut]


class VerifyProblemOut(BaseModel):
    kind: Literal[
        "edited",
        "deleted",
        "inserted",
        "reordered",
        "chain_broken",
        "truncated",
        "anchor_mismatch",
    ]
    seq: int = Field(description="the first entry where the log does not hold")
    last_seq: int | None = Field(
        default=None, description="an anchor mismatch: the end of the range it lies in"
    )
    detail: str


class VerifyOut(BaseModel):
    ok: bool
    problem: VerifyProblemOut | None
    size: int = Field(description="entries verified")
    read: int = Field(description="entries read by this verification")
    resumed_from: int
    root: str = Field(description="hex RFC 9162 root of the verified entries")
    anchors: int = Field(description="anchors read from the chain and checked against the log")
    newest_anchor: int | None = Field(description="the largest anchored tree size")
    source: str
