const { expect } = require("chai");
const { loadFixture } = require("@nomicfoundation/hardhat-network-helpers");
const {
  COMPANY_ID,
  Channel,
  OTHER_COMPANY_ID,
  commitmentOf,
  grantTerms,
  grantedFixture,
  signRevokeAll,
  signRevokeGrant,
  signSetGrant,
} = require("./helpers");

describe("QuotaLedger: revocations", function () {
  describe("revokeGrant", function () {
    it("revokes the sender's active grant, moves its version and emits GrantRevoked", async function () {
      const { ledger, alice } = await loadFixture(grantedFixture);
      await expect(ledger.connect(alice).revokeGrant(COMPANY_ID, Channel.Call))
        .to.emit(ledger, "GrantRevoked")
        .withArgs(alice.address, COMPANY_ID, Channel.Call, 2);
      const grant = await ledger.grantOf(alice.address, COMPANY_ID, Channel.Call);
      expect(grant.maxContacts).to.equal(0);
      expect(grant.version).to.equal(2);
      expect(await ledger.isGrantActive(alice.address, COMPANY_ID, Channel.Call)).to.equal(false);
    });

    it("refuses a grant already revoked", async function () {
      const { ledger, alice } = await loadFixture(grantedFixture);
      await ledger.connect(alice).revokeGrant(COMPANY_ID, Channel.Call);
      await expect(ledger.connect(alice).revokeGrant(COMPANY_ID, Channel.Call))
        .to.be.revertedWithCustomError(ledger, "LedgerGrantNotActive")
        .withArgs(alice.address, COMPANY_ID, Channel.Call);
    });

    it("refuses a grant never set, and another consumer's grant", async function () {
      const { ledger, alice, bob } = await loadFixture(grantedFixture);
      await expect(ledger.connect(alice).revokeGrant(COMPANY_ID, Channel.Sms))
        .to.be.revertedWithCustomError(ledger, "LedgerGrantNotActive")
        .withArgs(alice.address, COMPANY_ID, Channel.Sms);
      await expect(ledger.connect(bob).revokeGrant(COMPANY_ID, Channel.Call))
        .to.be.revertedWithCustomError(ledger, "LedgerGrantNotActive")
        .withArgs(bob.address, COMPANY_ID, Channel.Call);
    });

    it("refuses a grant cleared by a revoke-all", async function () {
      const { ledger, alice } = await loadFixture(grantedFixture);
      await ledger.connect(alice).revokeAll();
      await expect(ledger.connect(alice).revokeGrant(COMPANY_ID, Channel.Call))
        .to.be.revertedWithCustomError(ledger, "LedgerGrantNotActive")
        .withArgs(alice.address, COMPANY_ID, Channel.Call);
    });

    it("lets the consumer grant again afterwards, at the next version", async function () {
      const { ledger, alice } = await loadFixture(grantedFixture);
      await ledger.connect(alice).revokeGrant(COMPANY_ID, Channel.Call);
      await ledger.connect(alice).setGrant(grantTerms());
      const grant = await ledger.grantOf(alice.address, COMPANY_ID, Channel.Call);
      expect(grant.version).to.equal(3);
      expect(await ledger.isGrantActive(alice.address, COMPANY_ID, Channel.Call)).to.equal(true);
    });
  });

  describe("revokeGrantBySig", function () {
    it("revokes the signer's grant when relayed by anyone", async function () {
      const { ledger, relayer, alice } = await loadFixture(grantedFixture);
      const args = await signRevokeGrant(alice, ledger, { version: 1 });
      await expect(ledger.connect(relayer).revokeGrantBySig(...args))
        .to.emit(ledger, "GrantRevoked")
        .withArgs(alice.address, COMPANY_ID, Channel.Call, 2);
      expect(await ledger.isGrantActive(alice.address, COMPANY_ID, Channel.Call)).to.equal(false);
    });

    it("refuses a replayed revoke, also after the grant is set again", async function () {
      const { ledger, relayer, alice } = await loadFixture(grantedFixture);
      const args = await signRevokeGrant(alice, ledger, { version: 1 });
      await ledger.connect(relayer).revokeGrantBySig(...args);
      await expect(ledger.connect(relayer).revokeGrantBySig(...args))
        .to.be.revertedWithCustomError(ledger, "LedgerStaleVersion")
        .withArgs(1, 2);
      await ledger.connect(alice).setGrant(grantTerms());
      await expect(ledger.connect(relayer).revokeGrantBySig(...args))
        .to.be.revertedWithCustomError(ledger, "LedgerStaleVersion")
        .withArgs(1, 3);
    });

    it("refuses a revoke signed before the grant was replaced", async function () {
      const { ledger, relayer, alice } = await loadFixture(grantedFixture);
      const args = await signRevokeGrant(alice, ledger, { version: 1 });
      await ledger.connect(relayer).setGrantBySig(...(await signSetGrant(alice, ledger, { version: 1 })));
      await expect(ledger.connect(relayer).revokeGrantBySig(...args))
        .to.be.revertedWithCustomError(ledger, "LedgerStaleVersion")
        .withArgs(1, 2);
    });

    it("refuses a grant already revoked, even signed at its current version", async function () {
      const { ledger, relayer, alice } = await loadFixture(grantedFixture);
      await ledger.connect(alice).revokeGrant(COMPANY_ID, Channel.Call);
      const args = await signRevokeGrant(alice, ledger, { version: 2 });
      await expect(ledger.connect(relayer).revokeGrantBySig(...args))
        .to.be.revertedWithCustomError(ledger, "LedgerGrantNotActive")
        .withArgs(alice.address, COMPANY_ID, Channel.Call);
    });

    it("refuses a grant cleared by a revoke-all (signed version still current)", async function () {
      const { ledger, relayer, alice } = await loadFixture(grantedFixture);
      await ledger.connect(alice).revokeAll();
      const args = await signRevokeGrant(alice, ledger, { version: 1 }); // in the new epoch
      await expect(ledger.connect(relayer).revokeGrantBySig(...args))
        .to.be.revertedWithCustomError(ledger, "LedgerGrantNotActive")
        .withArgs(alice.address, COMPANY_ID, Channel.Call);
    });

    it("refuses a signature for another channel or company", async function () {
      const { ledger, relayer, alice } = await loadFixture(grantedFixture);
      const [consumer, , , version, epoch, deadline, signature] = await signRevokeGrant(alice, ledger, { version: 1 });
      await expect(ledger.connect(relayer).revokeGrantBySig(consumer, COMPANY_ID, Channel.Sms, version, epoch, deadline, signature))
        .to.be.revertedWithCustomError(ledger, "LedgerInvalidSignature")
        .withArgs(alice.address);
      await expect(ledger.connect(relayer).revokeGrantBySig(consumer, OTHER_COMPANY_ID, Channel.Call, version, epoch, deadline, signature))
        .to.be.revertedWithCustomError(ledger, "LedgerInvalidSignature")
        .withArgs(alice.address);
    });
  });

  describe("revokeAll", function () {
    it("moves the sender's epoch and emits AllGrantsRevoked", async function () {
      const { ledger, alice } = await loadFixture(grantedFixture);
      await expect(ledger.connect(alice).revokeAll()).to.emit(ledger, "AllGrantsRevoked").withArgs(alice.address, 1);
      expect((await ledger.consumerOf(alice.address)).epoch).to.equal(1);
      await expect(ledger.connect(alice).revokeAll()).to.emit(ledger, "AllGrantsRevoked").withArgs(alice.address, 2);
    });

    it("voids every grant of the sender at once, and only the sender's", async function () {
      const { ledger, alice, bob } = await loadFixture(grantedFixture);
      await ledger.connect(alice).setGrant(grantTerms({ channel: Channel.Sms }));
      await ledger.connect(alice).setGrant(grantTerms({ channel: Channel.Email }));
      await ledger.connect(bob).setGrant(grantTerms());
      await ledger.connect(alice).revokeAll();
      for (const channel of [Channel.Call, Channel.Sms, Channel.Email]) {
        expect(await ledger.isGrantActive(alice.address, COMPANY_ID, channel)).to.equal(false);
      }
      expect(await ledger.isGrantActive(bob.address, COMPANY_ID, Channel.Call)).to.equal(true);
    });

    it("leaves grants set afterwards active", async function () {
      const { ledger, alice } = await loadFixture(grantedFixture);
      await ledger.connect(alice).revokeAll();
      await ledger.connect(alice).setGrant(grantTerms({ channel: Channel.Sms }));
      expect(await ledger.isGrantActive(alice.address, COMPANY_ID, Channel.Sms)).to.equal(true);
      expect(await ledger.isGrantActive(alice.address, COMPANY_ID, Channel.Call)).to.equal(false);
    });

    it("keeps the consumer's cap and links", async function () {
      const { ledger, operator, alice } = await loadFixture(grantedFixture);
      await ledger.connect(operator).attestLink(alice.address, commitmentOf("+33612345678"));
      await ledger.connect(alice).setGlobalCap(10, 86_400);
      await ledger.connect(alice).revokeAll();
      const record = await ledger.consumerOf(alice.address);
      expect(record.toObject()).to.deep.equal({ epoch: 1n, capMax: 10n, capPeriod: 86_400n, linkCount: 1n });
    });
  });

  describe("revokeAllBySig", function () {
    it("revokes all the signer's grants when relayed, using the signer's nonce", async function () {
      const { ledger, relayer, alice } = await loadFixture(grantedFixture);
      const args = await signRevokeAll(alice, ledger);
      expect(args[1]).to.equal(0);
      await expect(ledger.connect(relayer).revokeAllBySig(...args))
        .to.emit(ledger, "AllGrantsRevoked")
        .withArgs(alice.address, 1);
      expect(await ledger.nonces(alice.address)).to.equal(1);
      expect(await ledger.isGrantActive(alice.address, COMPANY_ID, Channel.Call)).to.equal(false);
    });

    it("refuses a replay: the epoch it signed has moved on", async function () {
      const { ledger, relayer, alice } = await loadFixture(grantedFixture);
      const args = await signRevokeAll(alice, ledger);
      await ledger.connect(relayer).revokeAllBySig(...args);
      await expect(ledger.connect(relayer).revokeAllBySig(...args))
        .to.be.revertedWithCustomError(ledger, "LedgerStaleEpoch")
        .withArgs(0, 1);
    });

    it("refuses a used nonce signed in the current epoch", async function () {
      const { ledger, relayer, alice } = await loadFixture(grantedFixture);
      await ledger.connect(relayer).revokeAllBySig(...(await signRevokeAll(alice, ledger)));
      const reused = await signRevokeAll(alice, ledger, { nonce: 0n }); // epoch 1, nonce 0 again
      await expect(ledger.connect(relayer).revokeAllBySig(...reused))
        .to.be.revertedWithCustomError(ledger, "InvalidAccountNonce")
        .withArgs(alice.address, 1);
    });

    it("refuses a nonce ahead of the current one", async function () {
      const { ledger, relayer, alice } = await loadFixture(grantedFixture);
      const args = await signRevokeAll(alice, ledger, { nonce: 3 });
      await expect(ledger.connect(relayer).revokeAllBySig(...args))
        .to.be.revertedWithCustomError(ledger, "InvalidAccountNonce")
        .withArgs(alice.address, 0);
    });

    it("leaves a grant set after it active", async function () {
      const { ledger, relayer, alice } = await loadFixture(grantedFixture);
      await ledger.connect(relayer).revokeAllBySig(...(await signRevokeAll(alice, ledger)));
      await ledger.connect(relayer).setGrantBySig(...(await signSetGrant(alice, ledger, { version: 1 })));
      expect(await ledger.isGrantActive(alice.address, COMPANY_ID, Channel.Call)).to.equal(true);
      expect((await ledger.grantOf(alice.address, COMPANY_ID, Channel.Call)).epoch).to.equal(1);
    });
  });
});
