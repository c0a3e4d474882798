// The signature rules every relayed function shares (EIP-712, EOA or ERC-1271, deadline,
// replay), run against each of them from one table. Each function's own behaviour is in its file.
const { expect } = require("chai");
const { loadFixture, time } = require("@nomicfoundation/hardhat-network-helpers");
const {
  commitmentOf,
  deployLedger,
  digestOf,
  ecrecoverPrecompile,
  grantTerms,
  malleate,
  signRevokeAll,
  signRevokeGrant,
  signSetGlobalCap,
  signSetGrant,
  signUnlink,
  walletFixture,
} = require("./helpers");

const PHONE = commitmentOf("+33612345678");

// fn: the relayed function; event: what success emits; prepare: state the message needs for
// `consumer` (signed by `owner` where a grant must exist); sign: the message, with `opts`
// {consumer, deadline, domain}; replay: the error and arguments a second submission gets.
const RELAYED = [
  {
    fn: "setGrantBySig",
    event: "GrantSet",
    prepare: async () => {},
    sign: (f, signer, opts) => signSetGrant(signer, f.ledger, opts),
    replay: () => ["LedgerStaleVersion", [0, 1]],
  },
  {
    fn: "revokeGrantBySig",
    event: "GrantRevoked",
    prepare: async (f, consumer, owner) =>
      f.ledger.connect(f.relayer).setGrantBySig(...(await signSetGrant(owner, f.ledger, { consumer }))),
    sign: (f, signer, opts) => signRevokeGrant(signer, f.ledger, { version: 1, ...opts }),
    replay: () => ["LedgerStaleVersion", [1, 2]],
  },
  {
    fn: "revokeAllBySig",
    event: "AllGrantsRevoked",
    prepare: async () => {},
    sign: (f, signer, opts) => signRevokeAll(signer, f.ledger, opts),
    // The revoke-all moved the epoch it signed: the epoch check refuses it before the nonce's.
    replay: () => ["LedgerStaleEpoch", [0, 1]],
  },
  {
    fn: "setGlobalCapBySig",
    event: "GlobalCapSet",
    prepare: async () => {},
    sign: (f, signer, opts) => signSetGlobalCap(signer, f.ledger, { maxContacts: 5, period: 86_400, ...opts }),
    replay: (consumer) => ["InvalidAccountNonce", [consumer, 1]],
  },
  {
    fn: "unlinkBySig",
    event: "ContactUnlinked",
    prepare: async (f, consumer) => f.ledger.connect(f.operator).attestLink(consumer, PHONE),
    sign: (f, signer, opts) => signUnlink(signer, f.ledger, { commitment: PHONE, ...opts }),
    replay: (consumer) => ["InvalidAccountNonce", [consumer, 1]],
  },
];

describe("QuotaLedger: relayed signatures", function () {
  for (const { fn, event, prepare, sign, replay } of RELAYED) {
    describe(fn, function () {
      /** Prepares state for alice and returns her signed arguments (`opts` passed to the signer). */
      async function aliceSigns(opts = {}) {
        const f = await loadFixture(walletFixture);
        await prepare(f, f.alice.address, f.alice);
        return { f, args: await sign(f, f.alice, opts) };
      }

      function relay(f, args) {
        return f.ledger.connect(f.relayer)[fn](...args);
      }

      function expectInvalidSignature(f, tx, consumer) {
        return expect(tx).to.be.revertedWithCustomError(f.ledger, "LedgerInvalidSignature").withArgs(consumer);
      }

      it("accepts the consumer's EIP-712 signature relayed by a third party", async function () {
        const { f, args } = await aliceSigns();
        await expect(relay(f, args)).to.emit(f.ledger, event);
      });

      it("accepts an ERC-1271 wallet's signature made by its owner", async function () {
        const f = await loadFixture(walletFixture);
        const wallet = await f.wallet.getAddress();
        await prepare(f, wallet, f.alice);
        await expect(relay(f, await sign(f, f.alice, { consumer: wallet }))).to.emit(f.ledger, event);
      });

      it("refuses an ERC-1271 wallet's signature made by someone else than its owner", async function () {
        const f = await loadFixture(walletFixture);
        const wallet = await f.wallet.getAddress();
        await prepare(f, wallet, f.alice);
        await expectInvalidSignature(f, relay(f, await sign(f, f.bob, { consumer: wallet })), wallet);
      });

      it("refuses a signature by another key", async function () {
        const f = await loadFixture(walletFixture);
        await prepare(f, f.alice.address, f.alice);
        await expectInvalidSignature(f, relay(f, await sign(f, f.bob, { consumer: f.alice.address })), f.alice.address);
      });

      it("refuses a signature for another chain id", async function () {
        const { f, args } = await aliceSigns({ domain: { chainId: 1n } });
        await expectInvalidSignature(f, relay(f, args), f.alice.address);
      });

      it("refuses a signature for another verifying contract", async function () {
        const f = await loadFixture(walletFixture);
        await prepare(f, f.alice.address, f.alice);
        const other = await deployLedger(f.admin, f.operator);
        const args = await sign(f, f.alice, { domain: { verifyingContract: await other.getAddress() } });
        await expectInvalidSignature(f, relay(f, args), f.alice.address);
      });

      it("refuses the malleable high-s twin of a valid signature", async function () {
        const { f, args } = await aliceSigns();
        const twin = [...args.slice(0, -1), malleate(args.at(-1))];
        await expectInvalidSignature(f, relay(f, twin), f.alice.address);
        await expect(relay(f, args)).to.emit(f.ledger, event); // the low-s original was valid
      });

      it("refuses a signature made before a revoke-all, whatever its deadline", async function () {
        const { f, args } = await aliceSigns();
        await f.ledger.connect(f.alice).revokeAll(); // withdrawing consent voids what is in flight
        await expect(relay(f, args)).to.be.revertedWithCustomError(f.ledger, "LedgerStaleEpoch").withArgs(0, 1);
        // Signed again in the new epoch, the same message goes through.
        const again = await sign(f, f.alice, {});
        if (fn !== "revokeGrantBySig") await expect(relay(f, again)).to.emit(f.ledger, event);
      });

      it("refuses an empty signature", async function () {
        const { f, args } = await aliceSigns();
        await expectInvalidSignature(f, relay(f, [...args.slice(0, -1), "0x"]), f.alice.address);
      });

      it("refuses a signature past its deadline, accepts it within the deadline's second", async function () {
        const f = await loadFixture(walletFixture);
        await prepare(f, f.alice.address, f.alice);
        const deadline = BigInt(await time.latest()) + 60n;
        const args = await sign(f, f.alice, { deadline });
        await time.setNextBlockTimestamp(deadline + 1n);
        await expect(relay(f, args)).to.be.revertedWithCustomError(f.ledger, "LedgerExpiredSignature").withArgs(deadline);

        const fresh = await loadFixture(walletFixture);
        await prepare(fresh, fresh.alice.address, fresh.alice);
        const onTime = BigInt(await time.latest()) + 60n;
        const onTimeArgs = await sign(fresh, fresh.alice, { deadline: onTime });
        await time.setNextBlockTimestamp(onTime);
        await expect(relay(fresh, onTimeArgs)).to.emit(fresh.ledger, event);
      });

      it("refuses a replay", async function () {
        const { f, args } = await aliceSigns();
        await relay(f, args);
        const [error, errorArgs] = replay(f.alice.address);
        await expect(relay(f, args))
          .to.be.revertedWithCustomError(f.ledger, error)
          .withArgs(...errorArgs);
      });
    });
  }

  describe("malleability", function () {
    it("the high-s twin names the same key to bare ecrecover, yet the ledger refuses it", async function () {
      const f = await loadFixture(walletFixture);
      const terms = grantTerms();
      const [consumer, , version, epoch, deadline, signature] = await signSetGrant(f.alice, f.ledger, { terms });
      const digest = await digestOf(f.ledger, "SetGrant", { consumer, ...terms, version, epoch, deadline });
      const twin = malleate(signature);
      expect(twin).to.not.equal(signature);
      expect(await ecrecoverPrecompile(digest, signature)).to.equal(f.alice.address);
      expect(await ecrecoverPrecompile(digest, twin)).to.equal(f.alice.address);
      await expect(f.ledger.connect(f.relayer).setGrantBySig(consumer, terms, version, epoch, deadline, twin))
        .to.be.revertedWithCustomError(f.ledger, "LedgerInvalidSignature")
        .withArgs(f.alice.address);
    });
  });
});
