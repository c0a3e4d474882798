const { expect } = require("chai");
const { ethers } = require("hardhat");
const { loadFixture } = require("@nomicfoundation/hardhat-network-helpers");
const { ADMIN_DELAY, TYPES, deployLedger, ledgerFixture } = require("./helpers");

describe("QuotaLedger: deployment", function () {
  describe("constructor", function () {
    it("gives the default admin its role and delay, and the operator the three operational roles", async function () {
      const { ledger, roles, admin, operator, outsider } = await loadFixture(ledgerFixture);
      expect(await ledger.defaultAdmin()).to.equal(admin.address);
      expect(await ledger.defaultAdminDelay()).to.equal(ADMIN_DELAY);
      expect(await ledger.hasRole(roles.defaultAdmin, admin.address)).to.equal(true);
      for (const role of [roles.registrar, roles.verifier, roles.anchor]) {
        expect(await ledger.hasRole(role, operator.address)).to.equal(true);
        expect(await ledger.hasRole(role, admin.address)).to.equal(false);
        expect(await ledger.hasRole(role, outsider.address)).to.equal(false);
      }
    });

    it("names the roles by the keccak of their names", async function () {
      const { roles } = await loadFixture(ledgerFixture);
      expect(roles.defaultAdmin).to.equal(ethers.ZeroHash);
      expect(roles.registrar).to.equal(ethers.id("REGISTRAR_ROLE"));
      expect(roles.verifier).to.equal(ethers.id("VERIFIER_ROLE"));
      expect(roles.anchor).to.equal(ethers.id("ANCHOR_ROLE"));
    });

    it("grants no operational role when the operator is the zero address", async function () {
      const [admin] = await ethers.getSigners();
      const factory = await ethers.getContractFactory("QuotaLedger");
      const ledger = await factory.deploy(ADMIN_DELAY, admin.address, ethers.ZeroAddress);
      for (const role of ["REGISTRAR_ROLE", "VERIFIER_ROLE", "ANCHOR_ROLE"]) {
        expect(await ledger.hasRole(ethers.id(role), ethers.ZeroAddress)).to.equal(false);
        expect(await ledger.hasRole(ethers.id(role), admin.address)).to.equal(false);
      }
    });

    it("refuses the zero address as default admin", async function () {
      const [, operator] = await ethers.getSigners();
      const factory = await ethers.getContractFactory("QuotaLedger");
      await expect(factory.deploy(ADMIN_DELAY, ethers.ZeroAddress, operator.address))
        .to.be.revertedWithCustomError(factory, "AccessControlInvalidDefaultAdmin")
        .withArgs(ethers.ZeroAddress);
    });
  });

  describe("eip712Domain", function () {
    it("reports the domain a wallet signs: QuotaLedger, version 1, this chain, this contract", async function () {
      const { ledger } = await loadFixture(ledgerFixture);
      const { chainId } = await ethers.provider.getNetwork();
      const domain = await ledger.eip712Domain();
      expect(domain.fields).to.equal("0x0f"); // name, version, chainId, verifyingContract
      expect(domain.name).to.equal("QuotaLedger");
      expect(domain.version).to.equal("1");
      expect(domain.chainId).to.equal(chainId);
      expect(domain.verifyingContract).to.equal(await ledger.getAddress());
      expect(domain.salt).to.equal(ethers.ZeroHash);
      expect(domain.extensions).to.deep.equal([]);
    });

    it("differs between two deployments (the verifying contract is part of it)", async function () {
      const { ledger, admin, operator } = await loadFixture(ledgerFixture);
      const other = await deployLedger(admin, operator);
      expect((await other.eip712Domain()).verifyingContract).to.not.equal(await ledger.getAddress());
    });
  });

  describe("type hashes", function () {
    const constants = {
      SetGrant: "SET_GRANT_TYPEHASH",
      RevokeGrant: "REVOKE_GRANT_TYPEHASH",
      RevokeAll: "REVOKE_ALL_TYPEHASH",
      SetGlobalCap: "SET_GLOBAL_CAP_TYPEHASH",
      Unlink: "UNLINK_TYPEHASH",
    };
    for (const [primaryType, constant] of Object.entries(constants)) {
      it(`${constant} is the hash of the ${primaryType} type a wallet encodes`, async function () {
        const { ledger } = await loadFixture(ledgerFixture);
        const encoded = ethers.TypedDataEncoder.from({ [primaryType]: TYPES[primaryType] }).encodeType(primaryType);
        expect(await ledger[constant]()).to.equal(ethers.id(encoded));
      });
    }
  });

  describe("supportsInterface", function () {
    it("reports ERC-165 and IAccessControl", async function () {
      const { ledger } = await loadFixture(ledgerFixture);
      expect(await ledger.supportsInterface("0x01ffc9a7")).to.equal(true); // IERC165
      expect(await ledger.supportsInterface("0x7965db0b")).to.equal(true); // IAccessControl
      expect(await ledger.supportsInterface("0xffffffff")).to.equal(false);
    });
  });
});
