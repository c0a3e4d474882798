"""A smart-contract wallet (contracts/mocks/ERC1271WalletMock.sol) deployed on a test chain."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from web3 import Web3

ROOT = Path(__file__).resolve().parents[1]
ARTIFACT = ROOT / "artifacts/contracts/mocks/ERC1271WalletMock.sol/ERC1271WalletMock.json"


def deploy_wallet(w3: Web3, owner: str) -> str:
    """Deploys a wallet that accepts ``owner``'s ECDSA signatures; returns its address.

    Hardhat's artifact is built by ``make install``; a bare pytest run compiles it once.
    """
    if not ARTIFACT.exists():
        subprocess.run(["npx", "hardhat", "compile", "--quiet"], cwd=ROOT, check=True)
    artifact = json.loads(ARTIFACT.read_text())
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    tx = factory.constructor(owner).transact({"from": w3.eth.accounts[0]})
    return str(w3.eth.wait_for_transaction_receipt(tx)["contractAddress"])
