// Fails when line or branch coverage of the ledger contract drops below the floor.
const fs = require("fs");
const path = require("path");

const FLOOR = 95;
const TARGET = "contracts/QuotaLedger.sol";

const summary = JSON.parse(fs.readFileSync(path.join(__dirname, "..", "coverage", "coverage-summary.json"), "utf8"));
const key = Object.keys(summary).find((file) => file.endsWith(TARGET));
if (!key) {
  console.error(`no coverage recorded for ${TARGET}`);
  process.exit(1);
}
const { lines, branches } = summary[key];
console.log(`${TARGET}: lines ${lines.pct}%, branches ${branches.pct}% (floor ${FLOOR}%)`);
if (lines.pct < FLOOR || branches.pct < FLOOR) process.exit(1);
