// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

/// @notice Contact channels a grant can cover. Stored and signed as `uint8`.
enum Channel {
    Call,
    Sms,
    Email,
    Messaging
}

/// @notice Lifecycle of a registered company.
enum CompanyStatus {
    None,
    Active,
    Suspended
}

/**
 * @notice What a consumer allows one company on one channel.
 * @dev A static struct: ABI-encoded exactly like its fields written out flat, which keeps the
 * relayed functions below the stack limit without giving up a flat EIP-712 type.
 */
struct GrantTerms {
    uint64 companyId;
    uint8 channel;
    uint32 maxContacts; // contacts allowed per rolling period, > 0
    uint32 period; // rolling period in seconds, > 0
    uint40 validFrom; // unix seconds
    uint40 validUntil; // unix seconds, exclusive; type(uint40).max for open-ended
    uint24 hoursMask; // bit h set: hour h (consumer's local time) allowed
    uint8 daysMask; // bit 0 Monday ... bit 6 Sunday
    bytes32 noticeHash; // hash of the notice text the consumer was shown (event only)
}

/**
 * @notice A grant as stored: one storage slot (240 bits).
 * @dev `QuotaLedger._setGrant` writes this slot as one packed word (first field in the lowest
 * bits): keep the field order and widths in step with it.
 */
struct GrantRecord {
    uint32 maxContacts; // 0 once revoked
    uint32 period;
    uint40 validFrom;
    uint40 validUntil;
    uint24 hoursMask;
    uint8 daysMask;
    uint32 version; // increases on every set and revoke of this key
    uint32 epoch; // consumer epoch when set; a revoke-all moves the consumer past it
}

/// @notice Per-consumer state: one storage slot.
struct ConsumerRecord {
    uint32 epoch; // bumped by revoke-all
    uint32 capMax; // global cap across companies, 0 = none
    uint32 capPeriod; // rolling period of the global cap, seconds
    uint32 linkCount; // verified contact points currently linked
}

/// @notice A registered company: one storage slot.
struct CompanyRecord {
    address admin;
    CompanyStatus status;
}

/// @notice The newest verified link of a contact commitment.
struct LinkRecord {
    address consumer;
    uint40 linkedAt;
}

/// @notice The newest anchored root of a usage log.
struct AnchorRecord {
    bytes32 root;
    uint64 treeSize;
    uint40 anchoredAt;
}

/// @notice The company id is 0 or the admin is the zero address.
error LedgerInvalidCompany(uint64 companyId, address admin);
/// @notice A company with this id is already registered.
error LedgerCompanyExists(uint64 companyId);
/// @notice No company is registered under this id.
error LedgerUnknownCompany(uint64 companyId);
/// @notice The company is not in the status the operation needs.
error LedgerCompanyStatus(uint64 companyId, CompanyStatus status);
/// @notice The channel is not one of {@link Channel}.
error LedgerInvalidChannel(uint8 channel);
/// @notice maxContacts or period is zero.
error LedgerInvalidQuota(uint32 maxContacts, uint32 period);
/// @notice The validity window is empty or already over.
error LedgerInvalidValidity(uint40 validFrom, uint40 validUntil);
/// @notice The hour or day mask allows nothing (or names an eighth day).
error LedgerInvalidSchedule(uint24 hoursMask, uint8 daysMask);
/// @notice The grant is not active: never set, revoked, or cleared by a revoke-all.
error LedgerGrantNotActive(address consumer, uint64 companyId, uint8 channel);
/// @notice The signed version is not the grant's current version (replayed or stale message).
error LedgerStaleVersion(uint32 expected, uint32 current);
/// @notice The message was signed in an earlier epoch of the consumer: a revoke-all voided it.
error LedgerStaleEpoch(uint32 signed, uint32 current);
/// @notice The signed message is past its deadline.
error LedgerExpiredSignature(uint256 deadline);
/// @notice The signature is not the consumer's (EOA or ERC-1271) for this message.
error LedgerInvalidSignature(address consumer);
/// @notice The commitment is zero or the consumer the zero address.
error LedgerInvalidLink(address consumer, bytes32 commitment);
/// @notice The commitment is not linked to this consumer.
error LedgerNotLinked(address consumer, bytes32 commitment);
/// @notice An anchor must make the log's tree strictly larger.
error LedgerAnchorNotGrowing(uint64 logId, uint64 currentSize, uint64 newSize);
/// @notice The global cap has a count but no period, or a period but no count.
error LedgerInvalidCap(uint32 maxContacts, uint32 period);
