// Writes the ABI and bytecode the Python side loads into ledger/artifacts/.
// EXPORT_CHECK=1 compares instead of writing and exits 1 when the committed files are stale.
const fs = require("fs");
const path = require("path");
const hre = require("hardhat");

const CONTRACTS = ["QuotaLedger"];
const OUT_DIR = path.join(__dirname, "..", "ledger", "artifacts");

async function main() {
  await hre.run("compile", { quiet: true });
  const check = process.env.EXPORT_CHECK === "1";
  let stale = false;
  for (const name of CONTRACTS) {
    const artifact = await hre.artifacts.readArtifact(name);
    const exported = {
      contractName: artifact.contractName,
      sourceName: artifact.sourceName,
      abi: artifact.abi,
      bytecode: artifact.bytecode,
    };
    const text = JSON.stringify(exported, null, 2) + "\n";
    const file = path.join(OUT_DIR, `${name}.json`);
    if (check) {
      const current = fs.existsSync(file) ? fs.readFileSync(file, "utf8") : "";
      if (current !== text) {
        console.error(`${path.relative(process.cwd(), file)} differs from a fresh compile: run make abi`);
        stale = true;
      }
    } else {
      fs.mkdirSync(OUT_DIR, { recursive: true });
      fs.writeFileSync(file, text);
      console.log(`wrote ${path.relative(process.cwd(), file)}`);
    }
  }
  if (stale) process.exitCode = 1;
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
