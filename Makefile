# quota-ledger: every target installs what it needs first, so a fresh clone only needs
# python3 (>= 3.11), node (>= 20) and npm.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: help install up test imports test-contracts test-python test-reliability lint abi abi-check bench bench-gas bench-python clean

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-15s %s\n", $$1, $$2}'

$(PY_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

install: $(PY_STAMP) $(NODE_STAMP) ## Create the venv, install Python and npm packages, compile
	npx hardhat compile --quiet

up: install ## Start a local node, deploy the contract once, serve the API on 127.0.0.1:8000
	$(BIN)/quota-ledger up

test: install browser abi-check imports test-contracts test-python test-reliability bench-smoke ## Run every test (import contracts, contracts, Python, faults, benchmark smoke)

imports: $(PY_STAMP) ## The import contracts: layered rooms, a pure domain, no cycles, ledger never imports api
	$(BIN)/lint-imports

test-contracts: $(NODE_STAMP) ## Hardhat tests under coverage (floor 95%), and solhint
	npx solhint --max-warnings 0 'contracts/**/*.sol'
	npx hardhat coverage
	node scripts/check-coverage.js

test-python: $(PY_STAMP) $(NODE_STAMP) ## pytest, including the end-to-end run against anvil
	$(BIN)/pytest -q --ignore=tests/reliability

test-reliability: $(PY_STAMP) $(NODE_STAMP) ## Faults in real processes: frozen/killed node, killed API, leader handover
	$(BIN)/pytest -q tests/reliability

lint: install ## ruff, mypy and solhint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	npx solhint --max-warnings 0 'contracts/**/*.sol'

abi: $(NODE_STAMP) ## Export the ABI and bytecode the Python side loads
	npx hardhat run scripts/export-abi.js

abi-check: $(NODE_STAMP) ## Fail if ledger/artifacts differs from a fresh compile
	EXPORT_CHECK=1 npx hardhat run scripts/export-abi.js

bench: bench-gas bench-python bench-http bench-bulk bench-scale ## Run the benchmarks

bench-python: $(PY_STAMP) $(NODE_STAMP) ## Python benchmarks (indexer catch-up, revocation latency, opposition lists, decisions, check-and-record, receipt proofs in a 10M-entry log, audit replay, audit verify) into bench/results.json
	$(BIN)/python -m bench.bench_indexer
	$(BIN)/python -m bench.bench_opposition
	$(BIN)/python -m bench.bench_checks
	$(BIN)/python -m bench.bench_proofs
	$(BIN)/python -m bench.bench_replay
	$(BIN)/python -m bench.bench_verify

.PHONY: bench-http bench-bulk bench-scale bench-smoke bench-wrk browser

bench-http: $(PY_STAMP) $(NODE_STAMP) bench-wrk ## POST /v1/checks over HTTP with wrk, beside a bare FastAPI app, into bench/results.json
	$(BIN)/python -m bench.bench_http

bench-bulk: $(PY_STAMP) $(NODE_STAMP) ## Batches of 10,000 and a 1,000,000-row scrub against a 20M list over HTTP, beside in-process baselines
	$(BIN)/python -m bench.bench_bulk

bench-scale: $(PY_STAMP) $(NODE_STAMP) ## Check latency with 1k grants against a ledger grown to 1M (about 2.5 hours of seeding; SIZES=1000,250000 for less)
	$(BIN)/python -m bench.bench_scale $(if $(SIZES),--sizes $(SIZES))

bench-smoke: $(PY_STAMP) $(NODE_STAMP) bench-wrk ## Every HTTP benchmark at small sizes: every row produced, answers of the expected shape
	$(BIN)/python -m bench.bench_http --smoke
	$(BIN)/python -m bench.bench_bulk --smoke
	$(BIN)/python -m bench.bench_scale --smoke
	$(BIN)/python -m bench.bench_proofs --smoke
	$(BIN)/python -m bench.bench_replay --smoke
	$(BIN)/python -m bench.bench_verify --smoke

bench-wrk: ## Install wrk, the HTTP load generator, when missing (apt-get, with sudo when not root)
	@command -v wrk >/dev/null || { \
		sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$sudo apt-get update -qq && $$sudo apt-get install -y -qq wrk; }

browser: ## Install Chromium, the headless browser the report and page tests render in, when missing (apt-get, with sudo when not root)
	@[ -x /usr/bin/chromium ] || { \
		sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$sudo apt-get update -qq && $$sudo apt-get install -y -qq chromium; }

bench-gas: $(NODE_STAMP) ## Gas per operation into bench/gas.md and bench/gas.json
	npx hardhat run scripts/gas-bench.js

clean: ## Remove build outputs (keeps .quota-ledger data)
	rm -rf artifacts cache coverage coverage.json .pytest_cache .mypy_cache .ruff_cache
