// Role administration from OpenZeppelin AccessControlDefaultAdminRules, as this ledger uses it:
// a two-step, delayed default-admin handover, and the admin granting the operational roles.
const { expect } = require("chai");
const { loadFixture, time } = require("@nomicfoundation/hardhat-network-helpers");
const { ADMIN_DELAY, OTHER_COMPANY_ID, commitmentOf, ledgerFixture } = require("./helpers");

/** The base fixture with a handover to `carol` begun by the admin; `schedule` is when it may be accepted. */
async function handoverFixture() {
  const base = await ledgerFixture();
  await base.ledger.connect(base.admin).beginDefaultAdminTransfer(base.carol.address);
  const [, schedule] = await base.ledger.pendingDefaultAdmin();
  return { ...base, newAdmin: base.carol, schedule };
}

describe("QuotaLedger: administration", function () {
  describe("beginDefaultAdminTransfer", function () {
    it("schedules the handover after the delay and emits DefaultAdminTransferScheduled", async function () {
      const { ledger, admin, carol } = await loadFixture(ledgerFixture);
      const now = BigInt(await time.latest()) + 5n;
      const expected = now + ADMIN_DELAY;
      await time.setNextBlockTimestamp(now);
      await expect(ledger.connect(admin).beginDefaultAdminTransfer(carol.address)).to.emit(ledger, "DefaultAdminTransferScheduled").withArgs(carol.address, expected);
      const [pending, schedule] = await ledger.pendingDefaultAdmin();
      expect(pending).to.equal(carol.address);
      expect(schedule).to.equal(expected);
      expect(await ledger.defaultAdmin()).to.equal(admin.address);
    });

    it("is restricted to the default admin", async function () {
      const { ledger, roles, operator, outsider } = await loadFixture(ledgerFixture);
      await expect(ledger.connect(operator).beginDefaultAdminTransfer(outsider.address))
        .to.be.revertedWithCustomError(ledger, "AccessControlUnauthorizedAccount")
        .withArgs(operator.address, roles.defaultAdmin);
    });
  });

  describe("acceptDefaultAdminTransfer", function () {
    it("refuses acceptance until the delay has passed", async function () {
      const { ledger, newAdmin, schedule } = await loadFixture(handoverFixture);
      await expect(ledger.connect(newAdmin).acceptDefaultAdminTransfer())
        .to.be.revertedWithCustomError(ledger, "AccessControlEnforcedDefaultAdminDelay")
        .withArgs(schedule);
      await time.setNextBlockTimestamp(schedule);
      await expect(ledger.connect(newAdmin).acceptDefaultAdminTransfer())
        .to.be.revertedWithCustomError(ledger, "AccessControlEnforcedDefaultAdminDelay")
        .withArgs(schedule);
    });

    it("refuses anyone but the pending admin", async function () {
      const { ledger, outsider, schedule } = await loadFixture(handoverFixture);
      await time.increaseTo(schedule + 1n);
      await expect(ledger.connect(outsider).acceptDefaultAdminTransfer())
        .to.be.revertedWithCustomError(ledger, "AccessControlInvalidDefaultAdmin")
        .withArgs(outsider.address);
    });

    it("hands the role over once the delay has passed; the old admin loses it", async function () {
      const { ledger, roles, admin, newAdmin, outsider, schedule } = await loadFixture(handoverFixture);
      await time.increaseTo(schedule + 1n);
      await expect(ledger.connect(newAdmin).acceptDefaultAdminTransfer())
        .to.emit(ledger, "RoleGranted")
        .withArgs(roles.defaultAdmin, newAdmin.address, newAdmin.address);
      expect(await ledger.defaultAdmin()).to.equal(newAdmin.address);
      expect(await ledger.hasRole(roles.defaultAdmin, admin.address)).to.equal(false);
      const [pending, schedule2] = await ledger.pendingDefaultAdmin();
      expect(pending).to.equal("0x0000000000000000000000000000000000000000");
      expect(schedule2).to.equal(0);

      // The new admin runs the roles; the old one cannot.
      await ledger.connect(newAdmin).grantRole(roles.registrar, outsider.address);
      await expect(ledger.connect(outsider).registerCompany(OTHER_COMPANY_ID, "Globex", outsider.address))
        .to.emit(ledger, "CompanyRegistered")
        .withArgs(OTHER_COMPANY_ID, outsider.address, "Globex");
      await expect(ledger.connect(admin).grantRole(roles.registrar, admin.address))
        .to.be.revertedWithCustomError(ledger, "AccessControlUnauthorizedAccount")
        .withArgs(admin.address, roles.defaultAdmin);
    });
  });

  describe("cancelDefaultAdminTransfer", function () {
    it("cancels a pending handover", async function () {
      const { ledger, admin, newAdmin, schedule } = await loadFixture(handoverFixture);
      await ledger.connect(admin).cancelDefaultAdminTransfer();
      await time.increaseTo(schedule + 1n);
      await expect(ledger.connect(newAdmin).acceptDefaultAdminTransfer())
        .to.be.revertedWithCustomError(ledger, "AccessControlInvalidDefaultAdmin")
        .withArgs(newAdmin.address);
      expect(await ledger.defaultAdmin()).to.equal(admin.address);
    });
  });

  describe("grantRole", function () {
    it("refuses to grant the default-admin role directly", async function () {
      const { ledger, roles, admin, carol } = await loadFixture(ledgerFixture);
      await expect(ledger.connect(admin).grantRole(roles.defaultAdmin, carol.address)).to.be.revertedWithCustomError(
        ledger,
        "AccessControlEnforcedDefaultAdminRules",
      );
    });

    it("lets the admin add a verifier, who may then attest links", async function () {
      const { ledger, roles, admin, alice, carol } = await loadFixture(ledgerFixture);
      await expect(ledger.connect(admin).grantRole(roles.verifier, carol.address))
        .to.emit(ledger, "RoleGranted")
        .withArgs(roles.verifier, carol.address, admin.address);
      await expect(ledger.connect(carol).attestLink(alice.address, commitmentOf("+33612345678"))).to.emit(
        ledger,
        "ContactLinked",
      );
    });

    it("is restricted to the role's admin", async function () {
      const { ledger, roles, operator, carol } = await loadFixture(ledgerFixture);
      await expect(ledger.connect(operator).grantRole(roles.verifier, carol.address))
        .to.be.revertedWithCustomError(ledger, "AccessControlUnauthorizedAccount")
        .withArgs(operator.address, roles.defaultAdmin);
    });
  });

  describe("revokeRole", function () {
    it("lets the admin withdraw an operational role", async function () {
      const { ledger, roles, admin, operator } = await loadFixture(ledgerFixture);
      await ledger.connect(admin).revokeRole(roles.anchor, operator.address);
      await expect(ledger.connect(operator).anchorRoot(1, 1, "0x" + "11".repeat(32)))
        .to.be.revertedWithCustomError(ledger, "AccessControlUnauthorizedAccount")
        .withArgs(operator.address, roles.anchor);
    });
  });
});
