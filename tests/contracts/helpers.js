// Shared fixtures and EIP-712 signing helpers for the QuotaLedger tests and the gas benchmark.
// Messages are signed with ethers v6 `signer.signTypedData(domain, types, value)`, which the
// Hardhat signer sends as `eth_signTypedData_v4`: the same request a browser wallet answers.
const { ethers } = require("hardhat");

const Channel = Object.freeze({ Call: 0, Sms: 1, Email: 2, Messaging: 3 });
const CompanyStatus = Object.freeze({ None: 0, Active: 1, Suspended: 2 });

const ADMIN_DELAY = 24n * 60n * 60n; // default-admin handover delay used by the fixtures
const COMPANY_ID = 1n;
const OTHER_COMPANY_ID = 2n;
const ALL_HOURS = (1 << 24) - 1;
const ALL_DAYS = (1 << 7) - 1;
const OPEN_ENDED = 2n ** 40n - 1n; // type(uint40).max
const MAX_DEADLINE = ethers.MaxUint256;
const NOTICE_HASH = ethers.id("notice v1: Acme may call you twice a month");
// secp256k1 group order: (r, n - s, v ^ 1) is the malleable twin of (r, s, v).
const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

// EIP-712 types, flat, exactly as the type strings in QuotaLedger.sol.
const TYPES = Object.freeze({
  SetGrant: [
    { name: "consumer", type: "address" },
    { name: "companyId", type: "uint64" },
    { name: "channel", type: "uint8" },
    { name: "maxContacts", type: "uint32" },
    { name: "period", type: "uint32" },
    { name: "validFrom", type: "uint40" },
    { name: "validUntil", type: "uint40" },
    { name: "hoursMask", type: "uint24" },
    { name: "daysMask", type: "uint8" },
    { name: "noticeHash", type: "bytes32" },
    { name: "version", type: "uint32" },
    { name: "epoch", type: "uint32" },
    { name: "deadline", type: "uint256" },
  ],
  RevokeGrant: [
    { name: "consumer", type: "address" },
    { name: "companyId", type: "uint64" },
    { name: "channel", type: "uint8" },
    { name: "version", type: "uint32" },
    { name: "epoch", type: "uint32" },
    { name: "deadline", type: "uint256" },
  ],
  RevokeAll: [
    { name: "consumer", type: "address" },
    { name: "nonce", type: "uint256" },
    { name: "epoch", type: "uint32" },
    { name: "deadline", type: "uint256" },
  ],
  SetGlobalCap: [
    { name: "consumer", type: "address" },
    { name: "maxContacts", type: "uint32" },
    { name: "period", type: "uint32" },
    { name: "nonce", type: "uint256" },
    { name: "epoch", type: "uint32" },
    { name: "deadline", type: "uint256" },
  ],
  Unlink: [
    { name: "consumer", type: "address" },
    { name: "commitment", type: "bytes32" },
    { name: "nonce", type: "uint256" },
    { name: "epoch", type: "uint32" },
    { name: "deadline", type: "uint256" },
  ],
});

/** The ledger's EIP-712 domain, as a wallet is asked to sign it. */
async function domainOf(ledger) {
  const { chainId } = await ethers.provider.getNetwork();
  return { name: "QuotaLedger", version: "1", chainId, verifyingContract: await ledger.getAddress() };
}

/** Grant terms with sensible defaults: 2 calls a month to company 1, open-ended, any time. */
function grantTerms(overrides = {}) {
  return {
    companyId: COMPANY_ID,
    channel: Channel.Call,
    maxContacts: 2,
    period: 30 * 24 * 60 * 60,
    validFrom: 0,
    validUntil: OPEN_ENDED,
    hoursMask: ALL_HOURS,
    daysMask: ALL_DAYS,
    noticeHash: NOTICE_HASH,
    ...overrides,
  };
}

/** The GrantSet event arguments for `terms` set by `consumer` at `version` in `epoch`. */
function grantSetArgs(consumer, terms, version, epoch) {
  return [
    consumer,
    terms.companyId,
    terms.channel,
    terms.maxContacts,
    terms.period,
    terms.validFrom,
    terms.validUntil,
    terms.hoursMask,
    terms.daysMask,
    terms.noticeHash,
    version,
    epoch,
  ];
}

/**
 * Signs one ledger message over the ledger's domain; `domainOverrides` replaces some of its
 * fields (to sign for another chain or contract). In the `sign*` helpers below the consumer
 * defaults to the signer's address; an ERC-1271 wallet passes its own address and its owner signs.
 */
async function signMessage(signer, ledger, primaryType, value, domainOverrides = {}) {
  const domain = { ...(await domainOf(ledger)), ...domainOverrides };
  return signer.signTypedData(domain, { [primaryType]: TYPES[primaryType] }, value);
}

/** The consumer's current epoch: every message signs it (a revoke-all moves it on). */
async function epochOf(ledger, consumer) {
  return (await ledger.consumerOf(consumer)).epoch;
}

/** Signs `SetGrant` (epoch read from the ledger unless given) and returns the arguments of `setGrantBySig`. */
async function signSetGrant(signer, ledger, { consumer, terms, version = 0, epoch, deadline = MAX_DEADLINE, domain } = {}) {
  consumer ??= signer.address;
  terms ??= grantTerms();
  epoch ??= await epochOf(ledger, consumer);
  const value = { consumer, ...terms, version, epoch, deadline };
  const signature = await signMessage(signer, ledger, "SetGrant", value, domain);
  return [consumer, terms, version, epoch, deadline, signature];
}

/** Signs `RevokeGrant` and returns the arguments of `revokeGrantBySig`. */
async function signRevokeGrant(signer, ledger, { consumer, companyId = COMPANY_ID, channel = Channel.Call, version, epoch, deadline = MAX_DEADLINE, domain }) {
  consumer ??= signer.address;
  epoch ??= await epochOf(ledger, consumer);
  const value = { consumer, companyId, channel, version, epoch, deadline };
  const signature = await signMessage(signer, ledger, "RevokeGrant", value, domain);
  return [consumer, companyId, channel, version, epoch, deadline, signature];
}

/** Signs `RevokeAll` (nonce read from the ledger unless given) and returns the arguments of `revokeAllBySig`. */
async function signRevokeAll(signer, ledger, { consumer, nonce, epoch, deadline = MAX_DEADLINE, domain } = {}) {
  consumer ??= signer.address;
  nonce ??= await ledger.nonces(consumer);
  epoch ??= await epochOf(ledger, consumer);
  const signature = await signMessage(signer, ledger, "RevokeAll", { consumer, nonce, epoch, deadline }, domain);
  return [consumer, nonce, epoch, deadline, signature];
}

/** Signs `SetGlobalCap` and returns the arguments of `setGlobalCapBySig`. */
async function signSetGlobalCap(signer, ledger, { consumer, maxContacts, period, nonce, epoch, deadline = MAX_DEADLINE, domain }) {
  consumer ??= signer.address;
  nonce ??= await ledger.nonces(consumer);
  epoch ??= await epochOf(ledger, consumer);
  const value = { consumer, maxContacts, period, nonce, epoch, deadline };
  const signature = await signMessage(signer, ledger, "SetGlobalCap", value, domain);
  return [consumer, maxContacts, period, nonce, epoch, deadline, signature];
}

/** Signs `Unlink` and returns the arguments of `unlinkBySig`. */
async function signUnlink(signer, ledger, { consumer, commitment, nonce, epoch, deadline = MAX_DEADLINE, domain }) {
  consumer ??= signer.address;
  nonce ??= await ledger.nonces(consumer);
  epoch ??= await epochOf(ledger, consumer);
  const value = { consumer, commitment, nonce, epoch, deadline };
  const signature = await signMessage(signer, ledger, "Unlink", value, domain);
  return [consumer, commitment, nonce, epoch, deadline, signature];
}

/** The malleable twin of a 65-byte signature: s -> n - s, v flipped. Recovers the same signer. */
function malleate(signature) {
  const sig = ethers.Signature.from(signature);
  const highS = SECP256K1_N - BigInt(sig.s);
  const v = sig.v === 27 ? 28 : 27;
  return ethers.concat([sig.r, ethers.toBeHex(highS, 32), ethers.toBeHex(v, 1)]);
}

/** The EIP-712 digest the ledger computes for a message. */
async function digestOf(ledger, primaryType, value) {
  return ethers.TypedDataEncoder.hash(await domainOf(ledger), { [primaryType]: TYPES[primaryType] }, value);
}

/**
 * Recovers a signer with the bare ecrecover precompile, which (unlike OpenZeppelin ECDSA and
 * ethers) accepts high-s signatures: shows a malleated signature still names the same key.
 */
async function ecrecoverPrecompile(digest, signature) {
  const v = ethers.toBeHex(ethers.getBytes(signature)[64], 32);
  const data = ethers.concat([digest, v, ethers.dataSlice(signature, 0, 32), ethers.dataSlice(signature, 32, 64)]);
  const out = await ethers.provider.call({ to: "0x0000000000000000000000000000000000000001", data });
  return ethers.getAddress(ethers.dataSlice(out, 12));
}

/** A stand-in salted commitment to a contact point: the chain only needs a non-zero bytes32. */
function commitmentOf(contact, salt = "salt") {
  return ethers.solidityPackedKeccak256(["string", "string"], [salt, contact]);
}

/** Deploys a ledger: `admin` holds the default-admin role, `operator` the three operational roles. */
async function deployLedger(admin, operator, delay = ADMIN_DELAY) {
  const factory = await ethers.getContractFactory("QuotaLedger");
  const ledger = await factory.deploy(delay, admin.address, operator.address);
  await ledger.waitForDeployment();
  return ledger;
}

/**
 * The base fixture (wrap with `loadFixture`): a ledger with company 1 registered and active,
 * and named accounts.
 */
async function ledgerFixture() {
  const [admin, operator, relayer, alice, bob, carol, companyAdmin, outsider] = await ethers.getSigners();
  const ledger = await deployLedger(admin, operator);
  await ledger.connect(operator).registerCompany(COMPANY_ID, "Acme", companyAdmin.address);
  const roles = {
    defaultAdmin: await ledger.DEFAULT_ADMIN_ROLE(),
    registrar: await ledger.REGISTRAR_ROLE(),
    verifier: await ledger.VERIFIER_ROLE(),
    anchor: await ledger.ANCHOR_ROLE(),
  };
  return { ledger, roles, admin, operator, relayer, alice, bob, carol, companyAdmin, outsider };
}

/** The base fixture plus an ERC-1271 wallet owned by alice. */
async function walletFixture() {
  const base = await ledgerFixture();
  const factory = await ethers.getContractFactory("ERC1271WalletMock");
  const wallet = await factory.deploy(base.alice.address);
  await wallet.waitForDeployment();
  return { ...base, wallet };
}

/** The base fixture with alice holding an active default grant (version 1) on company 1, call. */
async function grantedFixture() {
  const base = await ledgerFixture();
  await base.ledger.connect(base.alice).setGrant(grantTerms());
  return base;
}

module.exports = {
  ALL_DAYS,
  ALL_HOURS,
  ADMIN_DELAY,
  COMPANY_ID,
  Channel,
  CompanyStatus,
  NOTICE_HASH,
  OTHER_COMPANY_ID,
  TYPES,
  commitmentOf,
  deployLedger,
  digestOf,
  epochOf,
  ecrecoverPrecompile,
  grantSetArgs,
  grantTerms,
  grantedFixture,
  ledgerFixture,
  malleate,
  signRevokeAll,
  signRevokeGrant,
  signSetGlobalCap,
  signSetGrant,
  signUnlink,
  walletFixture,
};
