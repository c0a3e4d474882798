const { expect } = require("chai");
const { loadFixture } = require("@nomicfoundation/hardhat-network-helpers");
const {
  COMPANY_ID,
  Channel,
  grantSetArgs,
  grantTerms,
  ledgerFixture,
  signRevokeAll,
  signSetGrant,
} = require("./helpers");

describe("QuotaLedger: batching", function () {
  describe("multicall", function () {
    it("relays several consumers' signed grants in one transaction", async function () {
      const { ledger, relayer, alice, bob, carol } = await loadFixture(ledgerFixture);
      const consumers = [alice, bob, carol];
      const terms = consumers.map((_, i) => grantTerms({ maxContacts: i + 1 }));
      const calls = [];
      for (const [i, consumer] of consumers.entries()) {
        const args = await signSetGrant(consumer, ledger, { terms: terms[i] });
        calls.push(ledger.interface.encodeFunctionData("setGrantBySig", args));
      }
      const tx = ledger.connect(relayer).multicall(calls);
      for (const [i, consumer] of consumers.entries()) {
        await expect(tx)
          .to.emit(ledger, "GrantSet")
          .withArgs(...grantSetArgs(consumer.address, terms[i], 1, 0));
      }
      const receipt = await (await tx).wait();
      expect(receipt.logs).to.have.length(3);
      for (const [i, consumer] of consumers.entries()) {
        const grant = await ledger.grantOf(consumer.address, COMPANY_ID, Channel.Call);
        expect(grant.maxContacts).to.equal(i + 1);
        expect(await ledger.isGrantActive(consumer.address, COMPANY_ID, Channel.Call)).to.equal(true);
      }
    });

    it("mixes message kinds: one consumer's grant and another's revoke-all", async function () {
      const { ledger, relayer, alice, bob } = await loadFixture(ledgerFixture);
      await ledger.connect(bob).setGrant(grantTerms());
      const calls = [
        ledger.interface.encodeFunctionData("setGrantBySig", await signSetGrant(alice, ledger)),
        ledger.interface.encodeFunctionData("revokeAllBySig", await signRevokeAll(bob, ledger)),
      ];
      await expect(ledger.connect(relayer).multicall(calls))
        .to.emit(ledger, "AllGrantsRevoked")
        .withArgs(bob.address, 1);
      expect(await ledger.isGrantActive(alice.address, COMPANY_ID, Channel.Call)).to.equal(true);
      expect(await ledger.isGrantActive(bob.address, COMPANY_ID, Channel.Call)).to.equal(false);
    });

    it("is all or nothing: one bad signature reverts the batch with its error", async function () {
      const { ledger, relayer, alice, bob } = await loadFixture(ledgerFixture);
      const good = await signSetGrant(alice, ledger);
      const forged = await signSetGrant(alice, ledger, { consumer: bob.address });
      const calls = [good, forged].map((args) => ledger.interface.encodeFunctionData("setGrantBySig", args));
      await expect(ledger.connect(relayer).multicall(calls))
        .to.be.revertedWithCustomError(ledger, "LedgerInvalidSignature")
        .withArgs(bob.address);
      expect(await ledger.isGrantActive(alice.address, COMPANY_ID, Channel.Call)).to.equal(false);
    });

    it("batches a consumer's own calls under the consumer's address", async function () {
      const { ledger, alice } = await loadFixture(ledgerFixture);
      const calls = [
        ledger.interface.encodeFunctionData("setGrant", [grantTerms({ channel: Channel.Sms })]),
        ledger.interface.encodeFunctionData("setGrant", [grantTerms({ channel: Channel.Email })]),
        ledger.interface.encodeFunctionData("setGlobalCap", [6, 86_400]),
      ];
      await expect(ledger.connect(alice).multicall(calls)).to.emit(ledger, "GlobalCapSet").withArgs(alice.address, 6, 86_400);
      expect(await ledger.isGrantActive(alice.address, COMPANY_ID, Channel.Sms)).to.equal(true);
      expect(await ledger.isGrantActive(alice.address, COMPANY_ID, Channel.Email)).to.equal(true);
    });
  });
});
