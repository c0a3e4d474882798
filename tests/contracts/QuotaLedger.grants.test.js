const { expect } = require("chai");
const { ethers } = require("hardhat");
const { loadFixture, time } = require("@nomicfoundation/hardhat-network-helpers");
const {
  ALL_DAYS,
  ALL_HOURS,
  COMPANY_ID,
  Channel,
  NOTICE_HASH,
  OTHER_COMPANY_ID,
  grantSetArgs,
  grantTerms,
  grantedFixture,
  ledgerFixture,
  signSetGrant,
} = require("./helpers");

/** The stored record `terms` should produce, as `grantOf(...).toObject()` returns it. */
function recordOf(terms, version, epoch) {
  return {
    maxContacts: BigInt(terms.maxContacts),
    period: BigInt(terms.period),
    validFrom: BigInt(terms.validFrom),
    validUntil: BigInt(terms.validUntil),
    hoursMask: BigInt(terms.hoursMask),
    daysMask: BigInt(terms.daysMask),
    version: BigInt(version),
    epoch: BigInt(epoch),
  };
}

const PERIOD = grantTerms().period;

// Terms each validation refuses, with the custom error and its arguments.
const INVALID_TERMS = [
  ["a channel beyond Messaging", { channel: 4 }, "LedgerInvalidChannel", [4]],
  ["channel 255", { channel: 255 }, "LedgerInvalidChannel", [255]],
  ["an unregistered company", { companyId: OTHER_COMPANY_ID }, "LedgerUnknownCompany", [OTHER_COMPANY_ID]],
  ["maxContacts 0", { maxContacts: 0 }, "LedgerInvalidQuota", [0, PERIOD]],
  ["period 0", { period: 0 }, "LedgerInvalidQuota", [2, 0]],
  ["an empty window (validFrom == validUntil)", { validFrom: 5000, validUntil: 5000 }, "LedgerInvalidValidity", [5000, 5000]],
  ["an inverted window", { validFrom: 6000, validUntil: 5000 }, "LedgerInvalidValidity", [6000, 5000]],
  ["a window already over", { validFrom: 0, validUntil: 1000 }, "LedgerInvalidValidity", [0, 1000]],
  ["no allowed hour", { hoursMask: 0 }, "LedgerInvalidSchedule", [0, ALL_DAYS]],
  ["no allowed day", { daysMask: 0 }, "LedgerInvalidSchedule", [ALL_HOURS, 0]],
  ["an eighth day", { daysMask: 0x80 }, "LedgerInvalidSchedule", [ALL_HOURS, 0x80]],
  ["all eight day bits", { daysMask: 0xff }, "LedgerInvalidSchedule", [ALL_HOURS, 0xff]],
];

describe("QuotaLedger: grants", function () {
  describe("setGrant", function () {
    it("stores the sender's grant at version 1 and emits GrantSet with every field", async function () {
      const { ledger, alice } = await loadFixture(ledgerFixture);
      const terms = grantTerms({ channel: Channel.Sms, maxContacts: 4, hoursMask: 0x00ff00, daysMask: 0x1f });
      await expect(ledger.connect(alice).setGrant(terms))
        .to.emit(ledger, "GrantSet")
        .withArgs(...grantSetArgs(alice.address, terms, 1, 0));
      expect((await ledger.grantOf(alice.address, COMPANY_ID, Channel.Sms)).toObject()).to.deep.equal(recordOf(terms, 1, 0));
      expect(await ledger.isGrantActive(alice.address, COMPANY_ID, Channel.Sms)).to.equal(true);
    });

    it("replaces a grant with new terms and a higher version", async function () {
      const { ledger, alice } = await loadFixture(grantedFixture);
      const terms = grantTerms({ maxContacts: 9, period: 7 * 24 * 3600, noticeHash: ethers.id("notice v2") });
      await expect(ledger.connect(alice).setGrant(terms))
        .to.emit(ledger, "GrantSet")
        .withArgs(...grantSetArgs(alice.address, terms, 2, 0));
      expect((await ledger.grantOf(alice.address, COMPANY_ID, Channel.Call)).toObject()).to.deep.equal(recordOf(terms, 2, 0));
    });

    it("records the consumer's current epoch (after a revoke-all)", async function () {
      const { ledger, alice } = await loadFixture(grantedFixture);
      await ledger.connect(alice).revokeAll();
      await ledger.connect(alice).revokeAll();
      const terms = grantTerms();
      await expect(ledger.connect(alice).setGrant(terms))
        .to.emit(ledger, "GrantSet")
        .withArgs(...grantSetArgs(alice.address, terms, 2, 2));
      expect((await ledger.grantOf(alice.address, COMPANY_ID, Channel.Call)).epoch).to.equal(2);
      expect(await ledger.isGrantActive(alice.address, COMPANY_ID, Channel.Call)).to.equal(true);
    });

    it("keeps grants of other consumers, companies and channels apart", async function () {
      const { ledger, operator, alice, bob, companyAdmin } = await loadFixture(grantedFixture);
      await ledger.connect(operator).registerCompany(OTHER_COMPANY_ID, "Globex", companyAdmin.address);
      await ledger.connect(alice).setGrant(grantTerms({ companyId: OTHER_COMPANY_ID, maxContacts: 7 }));
      await ledger.connect(alice).setGrant(grantTerms({ channel: Channel.Email, maxContacts: 8 }));
      await ledger.connect(bob).setGrant(grantTerms({ maxContacts: 9 }));
      expect((await ledger.grantOf(alice.address, COMPANY_ID, Channel.Call)).maxContacts).to.equal(2);
      expect((await ledger.grantOf(alice.address, OTHER_COMPANY_ID, Channel.Call)).maxContacts).to.equal(7);
      expect((await ledger.grantOf(alice.address, COMPANY_ID, Channel.Email)).maxContacts).to.equal(8);
      expect((await ledger.grantOf(bob.address, COMPANY_ID, Channel.Call)).maxContacts).to.equal(9);
      expect((await ledger.grantOf(bob.address, COMPANY_ID, Channel.Call)).version).to.equal(1);
    });

    it("accepts every channel", async function () {
      const { ledger, alice } = await loadFixture(ledgerFixture);
      for (const channel of Object.values(Channel)) {
        await expect(ledger.connect(alice).setGrant(grantTerms({ channel }))).to.emit(ledger, "GrantSet");
      }
    });

    it("accepts a grant for a suspended company (the decision refuses it off chain)", async function () {
      const { ledger, operator, alice } = await loadFixture(ledgerFixture);
      await ledger.connect(operator).suspendCompany(COMPANY_ID);
      await expect(ledger.connect(alice).setGrant(grantTerms())).to.emit(ledger, "GrantSet");
    });

    for (const [what, overrides, error, args] of INVALID_TERMS) {
      it(`refuses ${what} with ${error}`, async function () {
        const { ledger, alice } = await loadFixture(ledgerFixture);
        await expect(ledger.connect(alice).setGrant(grantTerms(overrides)))
          .to.be.revertedWithCustomError(ledger, error)
          .withArgs(...args);
      });
    }

    it("treats validUntil as exclusive: refused when it is the block time, accepted one second later", async function () {
      const { ledger, alice } = await loadFixture(ledgerFixture);
      const now = BigInt(await time.latest()) + 10n;
      await time.setNextBlockTimestamp(now);
      await expect(ledger.connect(alice).setGrant(grantTerms({ validUntil: now })))
        .to.be.revertedWithCustomError(ledger, "LedgerInvalidValidity")
        .withArgs(0, now);
      const later = now + 10n;
      await time.setNextBlockTimestamp(later);
      await expect(ledger.connect(alice).setGrant(grantTerms({ validUntil: later + 1n }))).to.emit(ledger, "GrantSet");
    });

    it("accepts a window that starts in the future", async function () {
      const { ledger, alice } = await loadFixture(ledgerFixture);
      const start = BigInt(await time.latest()) + 86_400n;
      const terms = grantTerms({ validFrom: start, validUntil: start + 1n });
      await expect(ledger.connect(alice).setGrant(terms))
        .to.emit(ledger, "GrantSet")
        .withArgs(...grantSetArgs(alice.address, terms, 1, 0));
    });
  });

  describe("setGrantBySig", function () {
    it("sets the signer's grant when relayed by anyone", async function () {
      const { ledger, relayer, alice } = await loadFixture(ledgerFixture);
      const terms = grantTerms({ channel: Channel.Email, maxContacts: 5 });
      const args = await signSetGrant(alice, ledger, { terms });
      await expect(ledger.connect(relayer).setGrantBySig(...args))
        .to.emit(ledger, "GrantSet")
        .withArgs(...grantSetArgs(alice.address, terms, 1, 0));
      expect((await ledger.grantOf(alice.address, COMPANY_ID, Channel.Email)).toObject()).to.deep.equal(recordOf(terms, 1, 0));
      expect((await ledger.grantOf(relayer.address, COMPANY_ID, Channel.Email)).version).to.equal(0);
    });

    it("replaces a grant when the message signs the current version", async function () {
      const { ledger, relayer, alice } = await loadFixture(grantedFixture);
      const terms = grantTerms({ maxContacts: 3 });
      const args = await signSetGrant(alice, ledger, { terms, version: 1 });
      await expect(ledger.connect(relayer).setGrantBySig(...args))
        .to.emit(ledger, "GrantSet")
        .withArgs(...grantSetArgs(alice.address, terms, 2, 0));
    });

    it("refuses a replayed message: the version has moved on", async function () {
      const { ledger, relayer, alice } = await loadFixture(ledgerFixture);
      const args = await signSetGrant(alice, ledger);
      await ledger.connect(relayer).setGrantBySig(...args);
      await expect(ledger.connect(relayer).setGrantBySig(...args))
        .to.be.revertedWithCustomError(ledger, "LedgerStaleVersion")
        .withArgs(0, 1);
    });

    it("refuses a message signed for a version the grant has not reached", async function () {
      const { ledger, relayer, alice } = await loadFixture(ledgerFixture);
      const args = await signSetGrant(alice, ledger, { version: 5 });
      await expect(ledger.connect(relayer).setGrantBySig(...args))
        .to.be.revertedWithCustomError(ledger, "LedgerStaleVersion")
        .withArgs(5, 0);
    });

    it("refuses an old message once a revoke has moved the version", async function () {
      const { ledger, relayer, alice } = await loadFixture(grantedFixture);
      const args = await signSetGrant(alice, ledger, { terms: grantTerms({ maxContacts: 50 }), version: 1 });
      await ledger.connect(alice).revokeGrant(COMPANY_ID, Channel.Call);
      await expect(ledger.connect(relayer).setGrantBySig(...args))
        .to.be.revertedWithCustomError(ledger, "LedgerStaleVersion")
        .withArgs(1, 2);
    });

    it("refuses terms changed after signing", async function () {
      const { ledger, relayer, alice } = await loadFixture(ledgerFixture);
      const [consumer, terms, version, epoch, deadline, signature] = await signSetGrant(alice, ledger);
      const tampered = { ...terms, maxContacts: 200 };
      await expect(ledger.connect(relayer).setGrantBySig(consumer, tampered, version, epoch, deadline, signature))
        .to.be.revertedWithCustomError(ledger, "LedgerInvalidSignature")
        .withArgs(alice.address);
    });

    it("refuses a signature presented for another consumer", async function () {
      const { ledger, relayer, alice, bob } = await loadFixture(ledgerFixture);
      const [, terms, version, epoch, deadline, signature] = await signSetGrant(alice, ledger);
      await expect(ledger.connect(relayer).setGrantBySig(bob.address, terms, version, epoch, deadline, signature))
        .to.be.revertedWithCustomError(ledger, "LedgerInvalidSignature")
        .withArgs(bob.address);
    });

    it("applies the same term validation as setGrant", async function () {
      const { ledger, relayer, alice } = await loadFixture(ledgerFixture);
      const args = await signSetGrant(alice, ledger, { terms: grantTerms({ period: 0 }) });
      await expect(ledger.connect(relayer).setGrantBySig(...args))
        .to.be.revertedWithCustomError(ledger, "LedgerInvalidQuota")
        .withArgs(2, 0);
    });
  });

  describe("grantOf", function () {
    it("returns an empty record for a grant never set", async function () {
      const { ledger, alice } = await loadFixture(ledgerFixture);
      expect((await ledger.grantOf(alice.address, COMPANY_ID, Channel.Call)).toObject()).to.deep.equal(
        recordOf({ maxContacts: 0, period: 0, validFrom: 0, validUntil: 0, hoursMask: 0, daysMask: 0 }, 0, 0),
      );
    });

    it("round-trips every field at its widest value (the slot is written packed)", async function () {
      const { ledger, alice } = await loadFixture(ledgerFixture);
      await ledger.connect(alice).revokeAll();
      const terms = grantTerms({
        maxContacts: 2 ** 32 - 1,
        period: 2 ** 32 - 1,
        validFrom: 2n ** 40n - 2n,
        validUntil: 2n ** 40n - 1n,
        hoursMask: ALL_HOURS,
        daysMask: ALL_DAYS,
      });
      await ledger.connect(alice).setGrant(terms);
      expect((await ledger.grantOf(alice.address, COMPANY_ID, Channel.Call)).toObject()).to.deep.equal(recordOf(terms, 1, 1));
    });

    it("round-trips distinct bit patterns without one field bleeding into the next", async function () {
      const { ledger, alice } = await loadFixture(ledgerFixture);
      const terms = grantTerms({
        maxContacts: 0x81000001,
        period: 0x80000003,
        validFrom: 0x8000000005,
        validUntil: 0x8000000007,
        hoursMask: 0x800009,
        daysMask: 0x41,
        noticeHash: NOTICE_HASH,
      });
      await ledger.connect(alice).setGrant(terms);
      await ledger.connect(alice).setGrant(terms);
      expect((await ledger.grantOf(alice.address, COMPANY_ID, Channel.Call)).toObject()).to.deep.equal(recordOf(terms, 2, 0));
    });

    it("keeps the terms of a revoked grant but zeroes maxContacts", async function () {
      const { ledger, alice } = await loadFixture(grantedFixture);
      await ledger.connect(alice).revokeGrant(COMPANY_ID, Channel.Call);
      const terms = grantTerms({ maxContacts: 0 });
      expect((await ledger.grantOf(alice.address, COMPANY_ID, Channel.Call)).toObject()).to.deep.equal(recordOf(terms, 2, 0));
    });
  });

  describe("isGrantActive", function () {
    it("is false for a grant never set", async function () {
      const { ledger, alice } = await loadFixture(ledgerFixture);
      expect(await ledger.isGrantActive(alice.address, COMPANY_ID, Channel.Call)).to.equal(false);
    });

    it("follows set, revoke, set again, revoke-all and set again", async function () {
      const { ledger, alice } = await loadFixture(grantedFixture);
      const active = () => ledger.isGrantActive(alice.address, COMPANY_ID, Channel.Call);
      expect(await active()).to.equal(true);
      await ledger.connect(alice).revokeGrant(COMPANY_ID, Channel.Call);
      expect(await active()).to.equal(false);
      await ledger.connect(alice).setGrant(grantTerms());
      expect(await active()).to.equal(true);
      await ledger.connect(alice).revokeAll();
      expect(await active()).to.equal(false);
      await ledger.connect(alice).setGrant(grantTerms());
      expect(await active()).to.equal(true);
    });

    it("does not judge the validity window or the company status (the decision does)", async function () {
      const { ledger, operator, alice } = await loadFixture(ledgerFixture);
      const start = BigInt(await time.latest()) + 1000n;
      await ledger.connect(alice).setGrant(grantTerms({ validFrom: start, validUntil: start + 10n }));
      await ledger.connect(operator).suspendCompany(COMPANY_ID);
      expect(await ledger.isGrantActive(alice.address, COMPANY_ID, Channel.Call)).to.equal(true);
    });
  });
});
