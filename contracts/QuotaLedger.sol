// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {AccessControlDefaultAdminRules} from "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {Multicall} from "@openzeppelin/contracts/utils/Multicall.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";

import {IQuotaLedger} from "./IQuotaLedger.sol";
import {
    AnchorRecord,
    Channel,
    CompanyRecord,
    CompanyStatus,
    ConsumerRecord,
    GrantRecord,
    GrantTerms,
    LinkRecord,
    LedgerAnchorNotGrowing,
    LedgerCompanyExists,
    LedgerCompanyStatus,
    LedgerExpiredSignature,
    LedgerGrantNotActive,
    LedgerInvalidCap,
    LedgerInvalidChannel,
    LedgerInvalidCompany,
    LedgerInvalidLink,
    LedgerInvalidQuota,
    LedgerInvalidSchedule,
    LedgerInvalidSignature,
    LedgerInvalidValidity,
    LedgerNotLinked,
    LedgerStaleEpoch,
    LedgerStaleVersion,
    LedgerUnknownCompany
} from "./LedgerTypes.sol";

/**
 * @title QuotaLedger
 * @notice Consumers decide which companies may contact them, on which channel and how often.
 * Every consumer action can be sent directly or relayed by anyone with the consumer's EIP-712
 * signature (EOA or ERC-1271); `multicall` relays many in one transaction.
 *
 * @dev Replay protection: grant messages sign the grant's current `version` (which every set and
 * revoke increases), so a relayed grant writes a single storage slot; consumer-wide messages
 * (revoke-all, global cap, unlink) use OpenZeppelin `Nonces`. Revoke-all is O(1): it moves the
 * consumer's epoch past the epoch stored in each grant. Every message also signs the consumer's
 * current epoch: a signature made before a revoke-all can never be relayed after it.
 */
contract QuotaLedger is IQuotaLedger, AccessControlDefaultAdminRules, EIP712, Nonces, Multicall {
    /// @notice May register, suspend and reinstate companies.
    bytes32 public constant REGISTRAR_ROLE = keccak256("REGISTRAR_ROLE");
    /// @notice May attest contact links after a proof of control.
    bytes32 public constant VERIFIER_ROLE = keccak256("VERIFIER_ROLE");
    /// @notice May anchor usage-log roots.
    bytes32 public constant ANCHOR_ROLE = keccak256("ANCHOR_ROLE");

    /// @notice EIP-712 type hash of `SetGrant`.
    /// @dev keccak256("SetGrant(address consumer,uint64 companyId,uint8 channel,uint32 maxContacts,uint32 period,uint40 validFrom,uint40 validUntil,uint24 hoursMask,uint8 daysMask,bytes32 noticeHash,uint32 version,uint32 epoch,uint256 deadline)")
    bytes32 public constant SET_GRANT_TYPEHASH =
        keccak256(
            "SetGrant(address consumer,uint64 companyId,uint8 channel,uint32 maxContacts,uint32 period,uint40 validFrom,uint40 validUntil,uint24 hoursMask,uint8 daysMask,bytes32 noticeHash,uint32 version,uint32 epoch,uint256 deadline)"
        );
    /// @notice EIP-712 type hash of `RevokeGrant`.
    /// @dev keccak256("RevokeGrant(address consumer,uint64 companyId,uint8 channel,uint32 version,uint32 epoch,uint256 deadline)")
    bytes32 public constant REVOKE_GRANT_TYPEHASH =
        keccak256("RevokeGrant(address consumer,uint64 companyId,uint8 channel,uint32 version,uint32 epoch,uint256 deadline)");
    /// @notice EIP-712 type hash of `RevokeAll`.
    /// @dev keccak256("RevokeAll(address consumer,uint256 nonce,uint32 epoch,uint256 deadline)")
    bytes32 public constant REVOKE_ALL_TYPEHASH = keccak256("RevokeAll(address consumer,uint256 nonce,uint32 epoch,uint256 deadline)");
    /// @notice EIP-712 type hash of `SetGlobalCap`.
    /// @dev keccak256("SetGlobalCap(address consumer,uint32 maxContacts,uint32 period,uint256 nonce,uint32 epoch,uint256 deadline)")
    bytes32 public constant SET_GLOBAL_CAP_TYPEHASH =
        keccak256("SetGlobalCap(address consumer,uint32 maxContacts,uint32 period,uint256 nonce,uint32 epoch,uint256 deadline)");
    /// @notice EIP-712 type hash of `Unlink`.
    /// @dev keccak256("Unlink(address consumer,bytes32 commitment,uint256 nonce,uint32 epoch,uint256 deadline)")
    bytes32 public constant UNLINK_TYPEHASH =
        keccak256("Unlink(address consumer,bytes32 commitment,uint256 nonce,uint32 epoch,uint256 deadline)");

    uint8 private constant _MAX_CHANNEL = uint8(type(Channel).max);
    uint24 private constant _ALL_HOURS = (1 << 24) - 1;
    uint8 private constant _ALL_DAYS = (1 << 7) - 1;

    mapping(uint64 companyId => CompanyRecord company) private _companies;
    mapping(address consumer => mapping(uint64 companyId => mapping(uint8 channel => GrantRecord grant))) private _grants;
    mapping(address consumer => ConsumerRecord record) private _consumers;
    mapping(bytes32 commitment => LinkRecord link) private _links;
    mapping(uint64 logId => AnchorRecord anchor) private _anchors;

    /**
     * @notice Deploys the ledger with its default admin and, optionally, one operator.
     * @param initialDelay delay of a default-admin handover (seconds), see AccessControlDefaultAdminRules
     * @param initialAdmin the default admin
     * @param operator receives the registrar, verifier and anchor roles (zero address: nobody)
     */
    constructor(
        uint48 initialDelay,
        address initialAdmin,
        address operator
    ) AccessControlDefaultAdminRules(initialDelay, initialAdmin) EIP712("QuotaLedger", "1") {
        if (operator != address(0)) {
            _grantRole(REGISTRAR_ROLE, operator);
            _grantRole(VERIFIER_ROLE, operator);
            _grantRole(ANCHOR_ROLE, operator);
        }
    }

    // ----- companies -----

    /// @inheritdoc IQuotaLedger
    function registerCompany(uint64 companyId, string calldata name, address admin) external onlyRole(REGISTRAR_ROLE) {
        if (companyId == 0 || admin == address(0)) revert LedgerInvalidCompany(companyId, admin);
        if (_companies[companyId].status != CompanyStatus.None) revert LedgerCompanyExists(companyId);
        _companies[companyId] = CompanyRecord({admin: admin, status: CompanyStatus.Active});
        emit CompanyRegistered(companyId, admin, name);
    }

    /// @inheritdoc IQuotaLedger
    function suspendCompany(uint64 companyId) external onlyRole(REGISTRAR_ROLE) {
        _moveCompany(companyId, CompanyStatus.Active, CompanyStatus.Suspended);
        emit CompanySuspended(companyId);
    }

    /// @inheritdoc IQuotaLedger
    function reinstateCompany(uint64 companyId) external onlyRole(REGISTRAR_ROLE) {
        _moveCompany(companyId, CompanyStatus.Suspended, CompanyStatus.Active);
        emit CompanyReinstated(companyId);
    }

    // ----- grants -----

    /// @inheritdoc IQuotaLedger
    function setGrant(GrantTerms memory terms) external { // solhint-disable-line gas-calldata-parameters
        // `terms` in memory, not calldata: the decoder validates each field once, where calldata
        // reads re-validate on every access (measured: cheaper here and in setGrantBySig).
        _setGrant(msg.sender, terms, _grants[msg.sender][terms.companyId][terms.channel]);
    }

    /// @inheritdoc IQuotaLedger
    function setGrantBySig( // solhint-disable-line gas-calldata-parameters
        address consumer,
        GrantTerms memory terms,
        uint32 version,
        uint32 epoch,
        uint256 deadline,
        bytes calldata signature
    ) external {
        // A static struct ABI-encodes exactly like its fields written out flat: the SetGrant preimage.
        bytes32 structHash = keccak256(abi.encode(SET_GRANT_TYPEHASH, consumer, terms, version, epoch, deadline));
        _checkSignature(consumer, structHash, epoch, deadline, signature);
        GrantRecord storage grant = _grants[consumer][terms.companyId][terms.channel];
        _checkVersion(grant.version, version);
        _setGrant(consumer, terms, grant);
    }

    /// @inheritdoc IQuotaLedger
    function revokeGrant(uint64 companyId, uint8 channel) external {
        _revokeGrant(msg.sender, companyId, channel);
    }

    /// @inheritdoc IQuotaLedger
    function revokeGrantBySig(
        address consumer,
        uint64 companyId,
        uint8 channel,
        uint32 version,
        uint32 epoch,
        uint256 deadline,
        bytes calldata signature
    ) external {
        bytes32 structHash = keccak256(
            abi.encode(REVOKE_GRANT_TYPEHASH, consumer, companyId, channel, version, epoch, deadline)
        );
        _checkSignature(consumer, structHash, epoch, deadline, signature);
        _checkVersion(_grants[consumer][companyId][channel].version, version);
        _revokeGrant(consumer, companyId, channel);
    }

    /// @inheritdoc IQuotaLedger
    function revokeAll() external {
        _revokeAll(msg.sender);
    }

    /// @inheritdoc IQuotaLedger
    function revokeAllBySig(
        address consumer,
        uint256 nonce,
        uint32 epoch,
        uint256 deadline,
        bytes calldata signature
    ) external {
        bytes32 structHash = keccak256(abi.encode(REVOKE_ALL_TYPEHASH, consumer, nonce, epoch, deadline));
        _checkSignature(consumer, structHash, epoch, deadline, signature);
        _useCheckedNonce(consumer, nonce);
        _revokeAll(consumer);
    }

    /// @inheritdoc IQuotaLedger
    function setGlobalCap(uint32 maxContacts, uint32 period) external {
        _setGlobalCap(msg.sender, maxContacts, period);
    }

    /// @inheritdoc IQuotaLedger
    function setGlobalCapBySig(
        address consumer,
        uint32 maxContacts,
        uint32 period,
        uint256 nonce,
        uint32 epoch,
        uint256 deadline,
        bytes calldata signature
    ) external {
        bytes32 structHash = keccak256(
            abi.encode(SET_GLOBAL_CAP_TYPEHASH, consumer, maxContacts, period, nonce, epoch, deadline)
        );
        _checkSignature(consumer, structHash, epoch, deadline, signature);
        _useCheckedNonce(consumer, nonce);
        _setGlobalCap(consumer, maxContacts, period);
    }

    // ----- contact links -----

    /// @inheritdoc IQuotaLedger
    function attestLink(address consumer, bytes32 commitment) external onlyRole(VERIFIER_ROLE) {
        if (consumer == address(0) || commitment == bytes32(0)) revert LedgerInvalidLink(consumer, commitment);
        LinkRecord storage link = _links[commitment];
        address previous = link.consumer;
        if (previous != consumer) {
            // A reassigned contact: the previous holder's grants no longer reach it.
            if (previous != address(0)) --_consumers[previous].linkCount;
            ++_consumers[consumer].linkCount;
        }
        link.consumer = consumer;
        link.linkedAt = uint40(block.timestamp);
        emit ContactLinked(commitment, consumer, previous);
    }

    /// @inheritdoc IQuotaLedger
    function unlink(bytes32 commitment) external {
        _unlink(msg.sender, commitment);
    }

    /// @inheritdoc IQuotaLedger
    function unlinkBySig(
        address consumer,
        bytes32 commitment,
        uint256 nonce,
        uint32 epoch,
        uint256 deadline,
        bytes calldata signature
    ) external {
        bytes32 structHash = keccak256(abi.encode(UNLINK_TYPEHASH, consumer, commitment, nonce, epoch, deadline));
        _checkSignature(consumer, structHash, epoch, deadline, signature);
        _useCheckedNonce(consumer, nonce);
        _unlink(consumer, commitment);
    }

    // ----- anchors -----

    /// @inheritdoc IQuotaLedger
    function anchorRoot(uint64 logId, uint64 treeSize, bytes32 root) external onlyRole(ANCHOR_ROLE) {
        AnchorRecord storage anchor = _anchors[logId];
        uint64 current = anchor.treeSize;
        if (treeSize <= current) revert LedgerAnchorNotGrowing(logId, current, treeSize);
        anchor.root = root;
        anchor.treeSize = treeSize;
        anchor.anchoredAt = uint40(block.timestamp);
        emit RootAnchored(logId, treeSize, root);
    }

    // ----- views -----

    /// @inheritdoc IQuotaLedger
    function grantOf(address consumer, uint64 companyId, uint8 channel) external view returns (GrantRecord memory) {
        return _grants[consumer][companyId][channel];
    }

    /// @inheritdoc IQuotaLedger
    function isGrantActive(address consumer, uint64 companyId, uint8 channel) public view returns (bool) {
        GrantRecord storage grant = _grants[consumer][companyId][channel];
        return grant.maxContacts != 0 && grant.epoch == _consumers[consumer].epoch;
    }

    /// @inheritdoc IQuotaLedger
    function consumerOf(address consumer) external view returns (ConsumerRecord memory) {
        return _consumers[consumer];
    }

    /// @inheritdoc IQuotaLedger
    function companyOf(uint64 companyId) external view returns (CompanyRecord memory) {
        return _companies[companyId];
    }

    /// @inheritdoc IQuotaLedger
    function linkOf(bytes32 commitment) external view returns (LinkRecord memory) {
        return _links[commitment];
    }

    /// @inheritdoc IQuotaLedger
    function anchorOf(uint64 logId) external view returns (AnchorRecord memory) {
        return _anchors[logId];
    }

    // ----- internals -----

    function _moveCompany(uint64 companyId, CompanyStatus from, CompanyStatus to) private {
        CompanyRecord storage company = _companies[companyId];
        CompanyStatus status = company.status;
        if (status == CompanyStatus.None) revert LedgerUnknownCompany(companyId);
        if (status != from) revert LedgerCompanyStatus(companyId, status);
        company.status = to;
    }

    function _setGrant(address consumer, GrantTerms memory terms, GrantRecord storage grant) private {
        uint8 channel = terms.channel;
        if (channel > _MAX_CHANNEL) revert LedgerInvalidChannel(channel);
        if (_companies[terms.companyId].status == CompanyStatus.None) revert LedgerUnknownCompany(terms.companyId);
        if (terms.maxContacts == 0 || terms.period == 0) revert LedgerInvalidQuota(terms.maxContacts, terms.period);
        if (terms.validFrom >= terms.validUntil || terms.validUntil <= block.timestamp) {
            revert LedgerInvalidValidity(terms.validFrom, terms.validUntil);
        }
        if (terms.hoursMask == 0 || terms.daysMask == 0 || terms.daysMask > _ALL_DAYS) {
            revert LedgerInvalidSchedule(terms.hoursMask, terms.daysMask);
        }
        uint32 version = grant.version + 1;
        uint32 epoch = _consumers[consumer].epoch;
        // One SSTORE of the whole slot, packed in GrantRecord's storage layout (first field in the
        // lowest bits): field-by-field writes from memory cost a warm SLOAD and SSTORE per field.
        uint256 packed = uint256(terms.maxContacts) |
            (uint256(terms.period) << 32) |
            (uint256(terms.validFrom) << 64) |
            (uint256(terms.validUntil) << 104) |
            (uint256(terms.hoursMask) << 144) |
            (uint256(terms.daysMask) << 168) |
            (uint256(version) << 176) |
            (uint256(epoch) << 208);
        // solhint-disable-next-line no-inline-assembly
        assembly ("memory-safe") {
            sstore(grant.slot, packed)
        }
        emit GrantSet(
            consumer,
            terms.companyId,
            channel,
            terms.maxContacts,
            terms.period,
            terms.validFrom,
            terms.validUntil,
            terms.hoursMask,
            terms.daysMask,
            terms.noticeHash,
            version,
            epoch
        );
    }

    function _revokeGrant(address consumer, uint64 companyId, uint8 channel) private {
        if (!isGrantActive(consumer, companyId, channel)) revert LedgerGrantNotActive(consumer, companyId, channel);
        GrantRecord storage grant = _grants[consumer][companyId][channel];
        uint32 version = grant.version + 1;
        grant.maxContacts = 0;
        grant.version = version;
        emit GrantRevoked(consumer, companyId, channel, version);
    }

    function _revokeAll(address consumer) private {
        uint32 epoch = ++_consumers[consumer].epoch;
        emit AllGrantsRevoked(consumer, epoch);
    }

    function _setGlobalCap(address consumer, uint32 maxContacts, uint32 period) private {
        if ((maxContacts == 0) != (period == 0)) revert LedgerInvalidCap(maxContacts, period);
        ConsumerRecord storage record = _consumers[consumer];
        record.capMax = maxContacts;
        record.capPeriod = period;
        emit GlobalCapSet(consumer, maxContacts, period);
    }

    function _unlink(address consumer, bytes32 commitment) private {
        if (_links[commitment].consumer != consumer || consumer == address(0)) {
            revert LedgerNotLinked(consumer, commitment);
        }
        delete _links[commitment];
        --_consumers[consumer].linkCount;
        emit ContactUnlinked(commitment, consumer);
    }

    function _checkVersion(uint32 current, uint32 signed) private pure {
        if (current != signed) revert LedgerStaleVersion(signed, current);
    }

    /// @dev EOA recovery first: it avoids the cold EXTCODESIZE that SignatureChecker pays up front,
    /// and a recovered address cannot be a contract's. ERC-1271 wallets fall through to the call.
    /// ECDSA.tryRecover refuses high-s (malleable) signatures. Every message signs the consumer's
    /// epoch, so a revoke-all voids every signature still in flight, whatever its deadline.
    function _checkSignature(
        address consumer,
        bytes32 structHash,
        uint32 epoch,
        uint256 deadline,
        bytes calldata signature
    ) private view {
        if (block.timestamp > deadline) revert LedgerExpiredSignature(deadline);
        uint32 current = _consumers[consumer].epoch;
        if (epoch != current) revert LedgerStaleEpoch(epoch, current);
        bytes32 digest = _hashTypedDataV4(structHash);
        (address recovered, ECDSA.RecoverError err, ) = ECDSA.tryRecover(digest, signature);
        if (err == ECDSA.RecoverError.NoError && recovered == consumer) return;
        if (!SignatureChecker.isValidERC1271SignatureNow(consumer, digest, signature)) {
            revert LedgerInvalidSignature(consumer);
        }
    }
}
