const { expect } = require("chai");
const { ethers } = require("hardhat");
const { loadFixture } = require("@nomicfoundation/hardhat-network-helpers");
const { COMPANY_ID, CompanyStatus, OTHER_COMPANY_ID, ledgerFixture } = require("./helpers");

describe("QuotaLedger: companies", function () {
  describe("registerCompany", function () {
    it("registers an active company and emits CompanyRegistered with its name", async function () {
      const { ledger, operator, companyAdmin } = await loadFixture(ledgerFixture);
      await expect(ledger.connect(operator).registerCompany(OTHER_COMPANY_ID, "Globex", companyAdmin.address))
        .to.emit(ledger, "CompanyRegistered")
        .withArgs(OTHER_COMPANY_ID, companyAdmin.address, "Globex");
      const company = await ledger.companyOf(OTHER_COMPANY_ID);
      expect(company.admin).to.equal(companyAdmin.address);
      expect(company.status).to.equal(CompanyStatus.Active);
    });

    it("is restricted to REGISTRAR_ROLE", async function () {
      const { ledger, roles, outsider } = await loadFixture(ledgerFixture);
      await expect(ledger.connect(outsider).registerCompany(OTHER_COMPANY_ID, "Globex", outsider.address))
        .to.be.revertedWithCustomError(ledger, "AccessControlUnauthorizedAccount")
        .withArgs(outsider.address, roles.registrar);
    });

    it("is not open to the default admin without the role", async function () {
      const { ledger, roles, admin } = await loadFixture(ledgerFixture);
      await expect(ledger.connect(admin).registerCompany(OTHER_COMPANY_ID, "Globex", admin.address))
        .to.be.revertedWithCustomError(ledger, "AccessControlUnauthorizedAccount")
        .withArgs(admin.address, roles.registrar);
    });

    it("refuses company id 0", async function () {
      const { ledger, operator, companyAdmin } = await loadFixture(ledgerFixture);
      await expect(ledger.connect(operator).registerCompany(0, "Nobody", companyAdmin.address))
        .to.be.revertedWithCustomError(ledger, "LedgerInvalidCompany")
        .withArgs(0, companyAdmin.address);
    });

    it("refuses the zero address as company admin", async function () {
      const { ledger, operator } = await loadFixture(ledgerFixture);
      await expect(ledger.connect(operator).registerCompany(OTHER_COMPANY_ID, "Globex", ethers.ZeroAddress))
        .to.be.revertedWithCustomError(ledger, "LedgerInvalidCompany")
        .withArgs(OTHER_COMPANY_ID, ethers.ZeroAddress);
    });

    it("refuses an id already registered, also while suspended", async function () {
      const { ledger, operator, companyAdmin } = await loadFixture(ledgerFixture);
      await expect(ledger.connect(operator).registerCompany(COMPANY_ID, "Acme again", companyAdmin.address))
        .to.be.revertedWithCustomError(ledger, "LedgerCompanyExists")
        .withArgs(COMPANY_ID);
      await ledger.connect(operator).suspendCompany(COMPANY_ID);
      await expect(ledger.connect(operator).registerCompany(COMPANY_ID, "Acme again", companyAdmin.address))
        .to.be.revertedWithCustomError(ledger, "LedgerCompanyExists")
        .withArgs(COMPANY_ID);
    });
  });

  describe("suspendCompany", function () {
    it("suspends an active company and emits CompanySuspended", async function () {
      const { ledger, operator } = await loadFixture(ledgerFixture);
      await expect(ledger.connect(operator).suspendCompany(COMPANY_ID))
        .to.emit(ledger, "CompanySuspended")
        .withArgs(COMPANY_ID);
      expect((await ledger.companyOf(COMPANY_ID)).status).to.equal(CompanyStatus.Suspended);
    });

    it("is restricted to REGISTRAR_ROLE", async function () {
      const { ledger, roles, companyAdmin } = await loadFixture(ledgerFixture);
      await expect(ledger.connect(companyAdmin).suspendCompany(COMPANY_ID))
        .to.be.revertedWithCustomError(ledger, "AccessControlUnauthorizedAccount")
        .withArgs(companyAdmin.address, roles.registrar);
    });

    it("refuses an unknown company", async function () {
      const { ledger, operator } = await loadFixture(ledgerFixture);
      await expect(ledger.connect(operator).suspendCompany(OTHER_COMPANY_ID))
        .to.be.revertedWithCustomError(ledger, "LedgerUnknownCompany")
        .withArgs(OTHER_COMPANY_ID);
    });

    it("refuses a company already suspended", async function () {
      const { ledger, operator } = await loadFixture(ledgerFixture);
      await ledger.connect(operator).suspendCompany(COMPANY_ID);
      await expect(ledger.connect(operator).suspendCompany(COMPANY_ID))
        .to.be.revertedWithCustomError(ledger, "LedgerCompanyStatus")
        .withArgs(COMPANY_ID, CompanyStatus.Suspended);
    });
  });

  describe("reinstateCompany", function () {
    it("reinstates a suspended company and emits CompanyReinstated", async function () {
      const { ledger, operator, companyAdmin } = await loadFixture(ledgerFixture);
      await ledger.connect(operator).suspendCompany(COMPANY_ID);
      await expect(ledger.connect(operator).reinstateCompany(COMPANY_ID))
        .to.emit(ledger, "CompanyReinstated")
        .withArgs(COMPANY_ID);
      const company = await ledger.companyOf(COMPANY_ID);
      expect(company.status).to.equal(CompanyStatus.Active);
      expect(company.admin).to.equal(companyAdmin.address);
    });

    it("is restricted to REGISTRAR_ROLE", async function () {
      const { ledger, roles, operator, outsider } = await loadFixture(ledgerFixture);
      await ledger.connect(operator).suspendCompany(COMPANY_ID);
      await expect(ledger.connect(outsider).reinstateCompany(COMPANY_ID))
        .to.be.revertedWithCustomError(ledger, "AccessControlUnauthorizedAccount")
        .withArgs(outsider.address, roles.registrar);
    });

    it("refuses an unknown company", async function () {
      const { ledger, operator } = await loadFixture(ledgerFixture);
      await expect(ledger.connect(operator).reinstateCompany(OTHER_COMPANY_ID))
        .to.be.revertedWithCustomError(ledger, "LedgerUnknownCompany")
        .withArgs(OTHER_COMPANY_ID);
    });

    it("refuses a company that is active", async function () {
      const { ledger, operator } = await loadFixture(ledgerFixture);
      await expect(ledger.connect(operator).reinstateCompany(COMPANY_ID))
        .to.be.revertedWithCustomError(ledger, "LedgerCompanyStatus")
        .withArgs(COMPANY_ID, CompanyStatus.Active);
    });
  });

  describe("companyOf", function () {
    it("returns an empty record for an unknown id", async function () {
      const { ledger } = await loadFixture(ledgerFixture);
      const company = await ledger.companyOf(OTHER_COMPANY_ID);
      expect(company.admin).to.equal(ethers.ZeroAddress);
      expect(company.status).to.equal(CompanyStatus.None);
    });
  });
});
