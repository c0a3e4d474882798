// solidity-coverage: the json summary is read by scripts/check-coverage.js (make test).
module.exports = {
  istanbulReporter: ["html", "lcov", "text", "json", "json-summary"],
};
