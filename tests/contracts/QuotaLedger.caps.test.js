const { expect } = require("chai");
const { loadFixture } = require("@nomicfoundation/hardhat-network-helpers");
const { commitmentOf, ledgerFixture, signSetGlobalCap, signUnlink } = require("./helpers");

const YEAR = 365 * 24 * 60 * 60;

describe("QuotaLedger: global caps", function () {
  describe("setGlobalCap", function () {
    it("sets the sender's cap and emits GlobalCapSet", async function () {
      const { ledger, alice } = await loadFixture(ledgerFixture);
      await expect(ledger.connect(alice).setGlobalCap(5, YEAR)).to.emit(ledger, "GlobalCapSet").withArgs(alice.address, 5, YEAR);
      const record = await ledger.consumerOf(alice.address);
      expect(record.capMax).to.equal(5);
      expect(record.capPeriod).to.equal(YEAR);
    });

    it("removes the cap with (0, 0)", async function () {
      const { ledger, alice } = await loadFixture(ledgerFixture);
      await ledger.connect(alice).setGlobalCap(5, YEAR);
      await expect(ledger.connect(alice).setGlobalCap(0, 0)).to.emit(ledger, "GlobalCapSet").withArgs(alice.address, 0, 0);
      const record = await ledger.consumerOf(alice.address);
      expect(record.capMax).to.equal(0);
      expect(record.capPeriod).to.equal(0);
    });

    it("refuses a count without a period", async function () {
      const { ledger, alice } = await loadFixture(ledgerFixture);
      await expect(ledger.connect(alice).setGlobalCap(5, 0))
        .to.be.revertedWithCustomError(ledger, "LedgerInvalidCap")
        .withArgs(5, 0);
    });

    it("refuses a period without a count", async function () {
      const { ledger, alice } = await loadFixture(ledgerFixture);
      await expect(ledger.connect(alice).setGlobalCap(0, YEAR))
        .to.be.revertedWithCustomError(ledger, "LedgerInvalidCap")
        .withArgs(0, YEAR);
    });

    it("leaves the epoch and the link count alone", async function () {
      const { ledger, alice } = await loadFixture(ledgerFixture);
      await ledger.connect(alice).revokeAll();
      await ledger.connect(alice).setGlobalCap(3, YEAR);
      const record = await ledger.consumerOf(alice.address);
      expect(record.toObject()).to.deep.equal({ epoch: 1n, capMax: 3n, capPeriod: BigInt(YEAR), linkCount: 0n });
    });
  });

  describe("setGlobalCapBySig", function () {
    it("sets the signer's cap when relayed and uses the signer's nonce", async function () {
      const { ledger, relayer, alice } = await loadFixture(ledgerFixture);
      const args = await signSetGlobalCap(alice, ledger, { maxContacts: 4, period: YEAR });
      await expect(ledger.connect(relayer).setGlobalCapBySig(...args))
        .to.emit(ledger, "GlobalCapSet")
        .withArgs(alice.address, 4, YEAR);
      expect(await ledger.nonces(alice.address)).to.equal(1);
      expect((await ledger.consumerOf(relayer.address)).capMax).to.equal(0);
    });

    it("refuses a replay with InvalidAccountNonce", async function () {
      const { ledger, relayer, alice } = await loadFixture(ledgerFixture);
      const args = await signSetGlobalCap(alice, ledger, { maxContacts: 4, period: YEAR });
      await ledger.connect(relayer).setGlobalCapBySig(...args);
      await expect(ledger.connect(relayer).setGlobalCapBySig(...args))
        .to.be.revertedWithCustomError(ledger, "InvalidAccountNonce")
        .withArgs(alice.address, 1);
    });

    it("shares the nonce with the other consumer-wide messages", async function () {
      const { ledger, relayer, alice, operator } = await loadFixture(ledgerFixture);
      const cap = await signSetGlobalCap(alice, ledger, { maxContacts: 4, period: YEAR });
      const phone = commitmentOf("+33612345678");
      await ledger.connect(operator).attestLink(alice.address, phone);
      await ledger.connect(relayer).unlinkBySig(...(await signUnlink(alice, ledger, { commitment: phone })));
      await expect(ledger.connect(relayer).setGlobalCapBySig(...cap))
        .to.be.revertedWithCustomError(ledger, "InvalidAccountNonce")
        .withArgs(alice.address, 1);
    });

    it("refuses an invalid cap even when signed", async function () {
      const { ledger, relayer, alice } = await loadFixture(ledgerFixture);
      const args = await signSetGlobalCap(alice, ledger, { maxContacts: 0, period: YEAR });
      await expect(ledger.connect(relayer).setGlobalCapBySig(...args))
        .to.be.revertedWithCustomError(ledger, "LedgerInvalidCap")
        .withArgs(0, YEAR);
    });
  });

  describe("consumerOf", function () {
    it("returns an empty record for a consumer never seen", async function () {
      const { ledger, outsider } = await loadFixture(ledgerFixture);
      expect((await ledger.consumerOf(outsider.address)).toObject()).to.deep.equal({
        epoch: 0n,
        capMax: 0n,
        capPeriod: 0n,
        linkCount: 0n,
      });
    });
  });
});
