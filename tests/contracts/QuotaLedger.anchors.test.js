const { expect } = require("chai");
const { ethers } = require("hardhat");
const { loadFixture, time } = require("@nomicfoundation/hardhat-network-helpers");
const { ledgerFixture } = require("./helpers");

const LOG = 7n;
const ROOT_100 = ethers.id("root at 100");
const ROOT_250 = ethers.id("root at 250");

describe("QuotaLedger: anchors", function () {
  describe("anchorRoot", function () {
    it("anchors the first root of a log and emits RootAnchored", async function () {
      const { ledger, operator } = await loadFixture(ledgerFixture);
      await expect(ledger.connect(operator).anchorRoot(LOG, 100, ROOT_100))
        .to.emit(ledger, "RootAnchored")
        .withArgs(LOG, 100, ROOT_100);
      const anchor = await ledger.anchorOf(LOG);
      expect(anchor.root).to.equal(ROOT_100);
      expect(anchor.treeSize).to.equal(100);
      expect(anchor.anchoredAt).to.equal(await time.latest());
    });

    it("replaces the anchor with a larger tree", async function () {
      const { ledger, operator } = await loadFixture(ledgerFixture);
      await ledger.connect(operator).anchorRoot(LOG, 100, ROOT_100);
      await expect(ledger.connect(operator).anchorRoot(LOG, 250, ROOT_250))
        .to.emit(ledger, "RootAnchored")
        .withArgs(LOG, 250, ROOT_250);
      const anchor = await ledger.anchorOf(LOG);
      expect(anchor.root).to.equal(ROOT_250);
      expect(anchor.treeSize).to.equal(250);
    });

    it("refuses a tree of the same size", async function () {
      const { ledger, operator } = await loadFixture(ledgerFixture);
      await ledger.connect(operator).anchorRoot(LOG, 100, ROOT_100);
      await expect(ledger.connect(operator).anchorRoot(LOG, 100, ROOT_250))
        .to.be.revertedWithCustomError(ledger, "LedgerAnchorNotGrowing")
        .withArgs(LOG, 100, 100);
    });

    it("refuses a smaller tree", async function () {
      const { ledger, operator } = await loadFixture(ledgerFixture);
      await ledger.connect(operator).anchorRoot(LOG, 100, ROOT_100);
      await expect(ledger.connect(operator).anchorRoot(LOG, 99, ROOT_250))
        .to.be.revertedWithCustomError(ledger, "LedgerAnchorNotGrowing")
        .withArgs(LOG, 100, 99);
    });

    it("refuses an empty tree as a first anchor", async function () {
      const { ledger, operator } = await loadFixture(ledgerFixture);
      await expect(ledger.connect(operator).anchorRoot(LOG, 0, ethers.ZeroHash))
        .to.be.revertedWithCustomError(ledger, "LedgerAnchorNotGrowing")
        .withArgs(LOG, 0, 0);
    });

    it("keeps logs apart", async function () {
      const { ledger, operator } = await loadFixture(ledgerFixture);
      await ledger.connect(operator).anchorRoot(LOG, 100, ROOT_100);
      await ledger.connect(operator).anchorRoot(LOG + 1n, 5, ROOT_250);
      expect((await ledger.anchorOf(LOG)).treeSize).to.equal(100);
      expect((await ledger.anchorOf(LOG + 1n)).treeSize).to.equal(5);
    });

    it("is restricted to ANCHOR_ROLE", async function () {
      const { ledger, roles, outsider } = await loadFixture(ledgerFixture);
      await expect(ledger.connect(outsider).anchorRoot(LOG, 100, ROOT_100))
        .to.be.revertedWithCustomError(ledger, "AccessControlUnauthorizedAccount")
        .withArgs(outsider.address, roles.anchor);
    });
  });

  describe("anchorOf", function () {
    it("returns an empty record for a log never anchored", async function () {
      const { ledger } = await loadFixture(ledgerFixture);
      const anchor = await ledger.anchorOf(LOG);
      expect(anchor.root).to.equal(ethers.ZeroHash);
      expect(anchor.treeSize).to.equal(0);
      expect(anchor.anchoredAt).to.equal(0);
    });
  });
});
