// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {GrantTerms, GrantRecord, ConsumerRecord, CompanyRecord, LinkRecord, AnchorRecord} from "./LedgerTypes.sol";

/**
 * @title IQuotaLedger
 * @notice Consumer-signed contact quotas, the company registry, verified contact links and
 * usage-log anchors. Every state change emits one event carrying every field needed to rebuild
 * the state from logs alone.
 */
interface IQuotaLedger {
    /**
     * @notice A registrar registered a company.
     * @param companyId the company's id
     * @param admin the company's administrative address
     * @param name display name (kept only in this event)
     */
    event CompanyRegistered(uint64 indexed companyId, address indexed admin, string name);
    /// @notice A registrar suspended a company; its grants stay but checks refuse it.
    /// @param companyId the company
    event CompanySuspended(uint64 indexed companyId);
    /// @notice A registrar reinstated a suspended company.
    /// @param companyId the company
    event CompanyReinstated(uint64 indexed companyId);

    /**
     * @notice A consumer set (or replaced) a grant.
     * @param consumer the consumer
     * @param companyId the company
     * @param channel the channel, see {Channel}
     * @param maxContacts contacts allowed per rolling period
     * @param period rolling period in seconds
     * @param validFrom start of validity, unix seconds
     * @param validUntil end of validity (exclusive), unix seconds
     * @param hoursMask allowed hours, bit h for hour h
     * @param daysMask allowed days, bit 0 Monday ... bit 6 Sunday
     * @param noticeHash hash of the notice text the consumer was shown
     * @param version the grant's new version
     * @param epoch the consumer's epoch the grant was set in
     */
    event GrantSet(
        address indexed consumer,
        uint64 indexed companyId,
        uint8 indexed channel,
        uint32 maxContacts,
        uint32 period,
        uint40 validFrom,
        uint40 validUntil,
        uint24 hoursMask,
        uint8 daysMask,
        bytes32 noticeHash,
        uint32 version,
        uint32 epoch
    );
    /**
     * @notice A consumer revoked one grant; effective from this block.
     * @param consumer the consumer
     * @param companyId the company
     * @param channel the channel
     * @param version the grant's new version
     */
    event GrantRevoked(address indexed consumer, uint64 indexed companyId, uint8 indexed channel, uint32 version);
    /// @notice A consumer revoked all their grants at once; grants set before `epoch` are void.
    /// @param consumer the consumer
    /// @param epoch the consumer's new epoch
    event AllGrantsRevoked(address indexed consumer, uint32 epoch);
    /// @notice A consumer set their global cap across companies (0, 0 removes it).
    /// @param consumer the consumer
    /// @param maxContacts contacts per period, 0 for none
    /// @param period rolling period in seconds, 0 for none
    event GlobalCapSet(address indexed consumer, uint32 maxContacts, uint32 period);

    /// @notice A verifier attested that `consumer` controls the contact behind `commitment`.
    /// @param commitment salted commitment to the contact point
    /// @param consumer the consumer now linked
    /// @param previousConsumer the consumer linked before (zero address if none)
    event ContactLinked(bytes32 indexed commitment, address indexed consumer, address previousConsumer);
    /// @notice A consumer removed the link of `commitment`.
    /// @param commitment the commitment
    /// @param consumer the consumer who was linked
    event ContactUnlinked(bytes32 indexed commitment, address indexed consumer);

    /// @notice An anchorer recorded the Merkle root of a usage log at a tree size.
    /// @param logId the usage log
    /// @param treeSize number of entries covered
    /// @param root RFC 9162 Merkle tree head of the first `treeSize` entries
    event RootAnchored(uint64 indexed logId, uint64 treeSize, bytes32 root);

    // ----- companies -----

    /**
     * @notice Registers a company. Only REGISTRAR_ROLE.
     * @param companyId non-zero id chosen by the registrar
     * @param name display name (kept in the event)
     * @param admin the company's administrative address
     */
    function registerCompany(uint64 companyId, string calldata name, address admin) external;

    /// @notice Suspends an active company. Only REGISTRAR_ROLE.
    /// @param companyId the company
    function suspendCompany(uint64 companyId) external;

    /// @notice Reinstates a suspended company. Only REGISTRAR_ROLE.
    /// @param companyId the company
    function reinstateCompany(uint64 companyId) external;

    // ----- grants -----

    /**
     * @notice Sets or replaces the sender's grant for (terms.companyId, terms.channel).
     * @param terms what the consumer allows
     */
    function setGrant(GrantTerms calldata terms) external;

    /**
     * @notice Sets a grant on behalf of `consumer`, who signed the EIP-712 `SetGrant` message.
     * @param consumer the signer (EOA or ERC-1271 wallet)
     * @param terms what the consumer allows
     * @param version the grant's current version, as signed; a replay finds it moved on
     * @param epoch the consumer's current epoch, as signed; a revoke-all moves it on
     * @param deadline unix time after which the signature is refused
     * @param signature the consumer's signature
     */
    function setGrantBySig(
        address consumer,
        GrantTerms calldata terms,
        uint32 version,
        uint32 epoch,
        uint256 deadline,
        bytes calldata signature
    ) external;

    /**
     * @notice Revokes the sender's active grant for (companyId, channel).
     * @param companyId the company
     * @param channel the channel
     */
    function revokeGrant(uint64 companyId, uint8 channel) external;

    /**
     * @notice Revokes a grant on behalf of `consumer`, who signed `RevokeGrant`.
     * @param consumer the signer
     * @param companyId the company
     * @param channel the channel
     * @param version the grant's current version, as signed
     * @param epoch the consumer's current epoch, as signed; a revoke-all moves it on
     * @param deadline unix time after which the signature is refused
     * @param signature the consumer's signature
     */
    function revokeGrantBySig(
        address consumer,
        uint64 companyId,
        uint8 channel,
        uint32 version,
        uint32 epoch,
        uint256 deadline,
        bytes calldata signature
    ) external;

    /// @notice Revokes every grant of the sender in O(1).
    function revokeAll() external;

    /**
     * @notice Revokes every grant of `consumer`, who signed `RevokeAll`.
     * @param consumer the signer
     * @param nonce the consumer's current nonce
     * @param epoch the consumer's current epoch, as signed; a revoke-all moves it on
     * @param deadline unix time after which the signature is refused
     * @param signature the consumer's signature
     */
    function revokeAllBySig(
        address consumer,
        uint256 nonce,
        uint32 epoch,
        uint256 deadline,
        bytes calldata signature
    ) external;

    /**
     * @notice Sets the sender's global cap: at most `maxContacts` contacts per `period` seconds
     * across all companies and channels. (0, 0) removes the cap.
     * @param maxContacts contacts per period
     * @param period rolling period in seconds
     */
    function setGlobalCap(uint32 maxContacts, uint32 period) external;

    /**
     * @notice Sets the global cap of `consumer`, who signed `SetGlobalCap`.
     * @param consumer the signer
     * @param maxContacts contacts per period
     * @param period rolling period in seconds
     * @param nonce the consumer's current nonce
     * @param epoch the consumer's current epoch, as signed; a revoke-all moves it on
     * @param deadline unix time after which the signature is refused
     * @param signature the consumer's signature
     */
    function setGlobalCapBySig(
        address consumer,
        uint32 maxContacts,
        uint32 period,
        uint256 nonce,
        uint32 epoch,
        uint256 deadline,
        bytes calldata signature
    ) external;

    // ----- contact links -----

    /**
     * @notice Attests that `consumer` proved control of the contact behind `commitment`.
     * Only VERIFIER_ROLE. The newest attestation of a commitment wins.
     * @param consumer the consumer who proved control
     * @param commitment salted commitment to the normalised contact (never the contact itself)
     */
    function attestLink(address consumer, bytes32 commitment) external;

    /// @notice Removes the sender's link of `commitment`.
    /// @param commitment the linked commitment
    function unlink(bytes32 commitment) external;

    /**
     * @notice Removes the link of `commitment` for `consumer`, who signed `Unlink`.
     * @param consumer the signer
     * @param commitment the linked commitment
     * @param nonce the consumer's current nonce
     * @param epoch the consumer's current epoch, as signed; a revoke-all moves it on
     * @param deadline unix time after which the signature is refused
     * @param signature the consumer's signature
     */
    function unlinkBySig(
        address consumer,
        bytes32 commitment,
        uint256 nonce,
        uint32 epoch,
        uint256 deadline,
        bytes calldata signature
    ) external;

    // ----- anchors -----

    /**
     * @notice Anchors the Merkle root of usage log `logId` at `treeSize` entries. Only ANCHOR_ROLE.
     * @param logId the usage log
     * @param treeSize number of entries covered; strictly larger than the last anchor's
     * @param root RFC 9162 Merkle tree head of the first `treeSize` entries
     */
    function anchorRoot(uint64 logId, uint64 treeSize, bytes32 root) external;

    // ----- views -----

    /// @notice The stored grant record (check `isGrantActive` for effect).
    /// @param consumer the consumer
    /// @param companyId the company
    /// @param channel the channel
    /// @return the record
    function grantOf(address consumer, uint64 companyId, uint8 channel) external view returns (GrantRecord memory);

    /// @notice Whether the grant is set, not revoked and not cleared by a revoke-all.
    /// @param consumer the consumer
    /// @param companyId the company
    /// @param channel the channel
    /// @return true when active
    function isGrantActive(address consumer, uint64 companyId, uint8 channel) external view returns (bool);

    /// @notice Per-consumer state: epoch, global cap, link count.
    /// @param consumer the consumer
    /// @return the record
    function consumerOf(address consumer) external view returns (ConsumerRecord memory);

    /// @notice The company record.
    /// @param companyId the company
    /// @return the record
    function companyOf(uint64 companyId) external view returns (CompanyRecord memory);

    /// @notice The newest link of a commitment.
    /// @param commitment the commitment
    /// @return the record (zero consumer if none)
    function linkOf(bytes32 commitment) external view returns (LinkRecord memory);

    /// @notice The newest anchor of a usage log.
    /// @param logId the usage log
    /// @return the record
    function anchorOf(uint64 logId) external view returns (AnchorRecord memory);
}
