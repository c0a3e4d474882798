// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/**
 * @title ERC1271WalletMock
 * @notice A smart-contract wallet for tests: valid signatures are its owner's ECDSA signatures.
 */
contract ERC1271WalletMock is IERC1271 {
    /// @notice The EOA whose signatures the wallet accepts.
    address public immutable owner;

    /// @notice Deploys a wallet controlled by `owner_`.
    /// @param owner_ the EOA whose signatures the wallet accepts
    constructor(address owner_) {
        owner = owner_;
    }

    /// @inheritdoc IERC1271
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        (address recovered, ECDSA.RecoverError err, ) = ECDSA.tryRecover(hash, signature);
        return err == ECDSA.RecoverError.NoError && recovered == owner ? this.isValidSignature.selector : bytes4(0);
    }
}
