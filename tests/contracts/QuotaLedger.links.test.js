const { expect } = require("chai");
const { ethers } = require("hardhat");
const { loadFixture, time } = require("@nomicfoundation/hardhat-network-helpers");
const { commitmentOf, ledgerFixture, signUnlink } = require("./helpers");

const PHONE = commitmentOf("+33612345678");
const EMAIL = commitmentOf("alice@example.org");

async function linkCount(ledger, consumer) {
  return (await ledger.consumerOf(consumer)).linkCount;
}

describe("QuotaLedger: contact links", function () {
  describe("attestLink", function () {
    it("links a commitment to a consumer, stamps it and emits ContactLinked", async function () {
      const { ledger, operator, alice } = await loadFixture(ledgerFixture);
      await expect(ledger.connect(operator).attestLink(alice.address, PHONE))
        .to.emit(ledger, "ContactLinked")
        .withArgs(PHONE, alice.address, ethers.ZeroAddress);
      const link = await ledger.linkOf(PHONE);
      expect(link.consumer).to.equal(alice.address);
      expect(link.linkedAt).to.equal(await time.latest());
      expect(await linkCount(ledger, alice.address)).to.equal(1);
    });

    it("counts several contact points of one consumer", async function () {
      const { ledger, operator, alice } = await loadFixture(ledgerFixture);
      await ledger.connect(operator).attestLink(alice.address, PHONE);
      await ledger.connect(operator).attestLink(alice.address, EMAIL);
      expect(await linkCount(ledger, alice.address)).to.equal(2);
    });

    it("lets the newest attestation win: a reassigned number moves to its new holder", async function () {
      const { ledger, operator, alice, bob } = await loadFixture(ledgerFixture);
      await ledger.connect(operator).attestLink(alice.address, PHONE);
      await expect(ledger.connect(operator).attestLink(bob.address, PHONE))
        .to.emit(ledger, "ContactLinked")
        .withArgs(PHONE, bob.address, alice.address);
      expect((await ledger.linkOf(PHONE)).consumer).to.equal(bob.address);
      expect(await linkCount(ledger, alice.address)).to.equal(0);
      expect(await linkCount(ledger, bob.address)).to.equal(1);
    });

    it("refreshes the timestamp without recounting when the same consumer proves control again", async function () {
      const { ledger, operator, alice } = await loadFixture(ledgerFixture);
      await ledger.connect(operator).attestLink(alice.address, PHONE);
      await time.increase(3600);
      await expect(ledger.connect(operator).attestLink(alice.address, PHONE))
        .to.emit(ledger, "ContactLinked")
        .withArgs(PHONE, alice.address, alice.address);
      expect((await ledger.linkOf(PHONE)).linkedAt).to.equal(await time.latest());
      expect(await linkCount(ledger, alice.address)).to.equal(1);
    });

    it("is restricted to VERIFIER_ROLE", async function () {
      const { ledger, roles, alice } = await loadFixture(ledgerFixture);
      await expect(ledger.connect(alice).attestLink(alice.address, PHONE))
        .to.be.revertedWithCustomError(ledger, "AccessControlUnauthorizedAccount")
        .withArgs(alice.address, roles.verifier);
    });

    it("refuses the zero address as consumer", async function () {
      const { ledger, operator } = await loadFixture(ledgerFixture);
      await expect(ledger.connect(operator).attestLink(ethers.ZeroAddress, PHONE))
        .to.be.revertedWithCustomError(ledger, "LedgerInvalidLink")
        .withArgs(ethers.ZeroAddress, PHONE);
    });

    it("refuses the zero commitment", async function () {
      const { ledger, operator, alice } = await loadFixture(ledgerFixture);
      await expect(ledger.connect(operator).attestLink(alice.address, ethers.ZeroHash))
        .to.be.revertedWithCustomError(ledger, "LedgerInvalidLink")
        .withArgs(alice.address, ethers.ZeroHash);
    });
  });

  describe("unlink", function () {
    it("removes the sender's link and emits ContactUnlinked", async function () {
      const { ledger, operator, alice } = await loadFixture(ledgerFixture);
      await ledger.connect(operator).attestLink(alice.address, PHONE);
      await expect(ledger.connect(alice).unlink(PHONE)).to.emit(ledger, "ContactUnlinked").withArgs(PHONE, alice.address);
      const link = await ledger.linkOf(PHONE);
      expect(link.consumer).to.equal(ethers.ZeroAddress);
      expect(link.linkedAt).to.equal(0);
      expect(await linkCount(ledger, alice.address)).to.equal(0);
    });

    it("refuses a commitment never linked", async function () {
      const { ledger, alice } = await loadFixture(ledgerFixture);
      await expect(ledger.connect(alice).unlink(PHONE))
        .to.be.revertedWithCustomError(ledger, "LedgerNotLinked")
        .withArgs(alice.address, PHONE);
    });

    it("refuses another consumer's link", async function () {
      const { ledger, operator, alice, bob } = await loadFixture(ledgerFixture);
      await ledger.connect(operator).attestLink(alice.address, PHONE);
      await expect(ledger.connect(bob).unlink(PHONE))
        .to.be.revertedWithCustomError(ledger, "LedgerNotLinked")
        .withArgs(bob.address, PHONE);
    });

    it("refuses the previous holder of a reassigned number", async function () {
      const { ledger, operator, alice, bob } = await loadFixture(ledgerFixture);
      await ledger.connect(operator).attestLink(alice.address, PHONE);
      await ledger.connect(operator).attestLink(bob.address, PHONE);
      await expect(ledger.connect(alice).unlink(PHONE))
        .to.be.revertedWithCustomError(ledger, "LedgerNotLinked")
        .withArgs(alice.address, PHONE);
    });

    it("refuses a second unlink", async function () {
      const { ledger, operator, alice } = await loadFixture(ledgerFixture);
      await ledger.connect(operator).attestLink(alice.address, PHONE);
      await ledger.connect(alice).unlink(PHONE);
      await expect(ledger.connect(alice).unlink(PHONE))
        .to.be.revertedWithCustomError(ledger, "LedgerNotLinked")
        .withArgs(alice.address, PHONE);
    });
  });

  describe("unlinkBySig", function () {
    it("removes the signer's link when relayed and uses the signer's nonce", async function () {
      const { ledger, operator, relayer, alice } = await loadFixture(ledgerFixture);
      await ledger.connect(operator).attestLink(alice.address, PHONE);
      const args = await signUnlink(alice, ledger, { commitment: PHONE });
      await expect(ledger.connect(relayer).unlinkBySig(...args))
        .to.emit(ledger, "ContactUnlinked")
        .withArgs(PHONE, alice.address);
      expect(await ledger.nonces(alice.address)).to.equal(1);
      expect(await linkCount(ledger, alice.address)).to.equal(0);
    });

    it("refuses a replay with InvalidAccountNonce, even after the contact is linked again", async function () {
      const { ledger, operator, relayer, alice } = await loadFixture(ledgerFixture);
      await ledger.connect(operator).attestLink(alice.address, PHONE);
      const args = await signUnlink(alice, ledger, { commitment: PHONE });
      await ledger.connect(relayer).unlinkBySig(...args);
      await ledger.connect(operator).attestLink(alice.address, PHONE);
      await expect(ledger.connect(relayer).unlinkBySig(...args))
        .to.be.revertedWithCustomError(ledger, "InvalidAccountNonce")
        .withArgs(alice.address, 1);
    });

    it("refuses a signed unlink of a commitment the signer does not hold", async function () {
      const { ledger, operator, relayer, alice, bob } = await loadFixture(ledgerFixture);
      await ledger.connect(operator).attestLink(bob.address, PHONE);
      const args = await signUnlink(alice, ledger, { commitment: PHONE });
      await expect(ledger.connect(relayer).unlinkBySig(...args))
        .to.be.revertedWithCustomError(ledger, "LedgerNotLinked")
        .withArgs(alice.address, PHONE);
    });

    it("refuses a signature presented for another commitment", async function () {
      const { ledger, operator, relayer, alice } = await loadFixture(ledgerFixture);
      await ledger.connect(operator).attestLink(alice.address, PHONE);
      await ledger.connect(operator).attestLink(alice.address, EMAIL);
      const [consumer, , nonce, epoch, deadline, signature] = await signUnlink(alice, ledger, { commitment: PHONE });
      await expect(ledger.connect(relayer).unlinkBySig(consumer, EMAIL, nonce, epoch, deadline, signature))
        .to.be.revertedWithCustomError(ledger, "LedgerInvalidSignature")
        .withArgs(alice.address);
    });
  });

  describe("linkOf", function () {
    it("returns an empty record for an unknown commitment", async function () {
      const { ledger } = await loadFixture(ledgerFixture);
      const link = await ledger.linkOf(EMAIL);
      expect(link.consumer).to.equal(ethers.ZeroAddress);
      expect(link.linkedAt).to.equal(0);
    });
  });
});
