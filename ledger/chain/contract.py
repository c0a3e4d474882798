"""The compiled ledger contract as the Python side sees it: ABI, bytecode, revert decoding.

The artifact in ``ledger/artifacts`` is exported by ``scripts/export-abi.js`` and checked
against a fresh compile in CI, so the Python side never drifts from the Solidity source.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_utils.abi import function_signature_to_4byte_selector

from ledger.domain import errors

ARTIFACT = "QuotaLedger.json"


@cache
def artifact() -> dict[str, Any]:
    """ABI and bytecode of QuotaLedger."""
    text = resources.files("ledger.artifacts").joinpath(ARTIFACT).read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def abi() -> list[dict[str, Any]]:
    return list(artifact()["abi"])


def bytecode() -> str:
    return str(artifact()["bytecode"])


# Contract custom error -> domain exception. Every error the contract can raise is here;
# a test checks that the ABI has no error missing from this table.
_ERRORS: dict[str, Callable[..., errors.LedgerError]] = {
    "LedgerInvalidCompany": lambda cid, admin: errors.InvalidInput(
        "company id must be non-zero and admin a real address", company_id=cid
    ),
    "LedgerCompanyExists": errors.CompanyExists,
    "LedgerUnknownCompany": errors.UnknownCompany,
    "LedgerCompanyStatus": errors.CompanyStatusConflict,
    "LedgerInvalidChannel": lambda ch: errors.InvalidGrant("unknown channel", channel=ch),
    "LedgerInvalidQuota": lambda m, p: errors.InvalidGrant(
        "max_contacts and period must be positive", max_contacts=m, period=p
    ),
    "LedgerInvalidValidity": lambda f, u: errors.InvalidGrant(
        "validity window is empty or over", valid_from=f, valid_until=u
    ),
    "LedgerInvalidSchedule": lambda h, d: errors.InvalidGrant(
        "hours and days masks must allow something", hours_mask=h, days_mask=d
    ),
    "LedgerGrantNotActive": errors.GrantNotActive,
    "LedgerStaleVersion": errors.StaleVersion,
    "LedgerStaleEpoch": errors.StaleEpoch,
    "LedgerExpiredSignature": errors.ExpiredSignature,
    "LedgerInvalidSignature": errors.InvalidSignature,
    "LedgerInvalidLink": lambda c, h: errors.InvalidInput("invalid link", consumer=c),
    "LedgerNotLinked": lambda c, h: errors.NotLinked(c),
    "LedgerAnchorNotGrowing": errors.AnchorNotGrowing,
    "LedgerInvalidCap": lambda m, p: errors.InvalidInput(
        "global cap needs both a count and a period, or neither", max_contacts=m, period=p
    ),
    "InvalidAccountNonce": errors.StaleNonce,
    "AccessControlUnauthorizedAccount": lambda a, role: errors.MissingRole(a, "0x" + role.hex()),
}


@cache
def _selectors() -> dict[bytes, tuple[str, list[str]]]:
    table: dict[bytes, tuple[str, list[str]]] = {}
    for item in abi():
        if item["type"] != "error":
            continue
        types = [_abi_type(i) for i in item["inputs"]]
        signature = f"{item['name']}({','.join(types)})"
        table[function_signature_to_4byte_selector(signature)] = (item["name"], types)
    return table


def _abi_type(param: dict[str, Any]) -> str:
    if param["type"].startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in param["components"])
        return f"({inner}){param['type'][5:]}"
    return str(param["type"])


def error_names() -> set[str]:
    """Names of every custom error in the ABI."""
    return {name for name, _ in _selectors().values()}


def mapped_error_names() -> set[str]:
    return set(_ERRORS)


def decode_revert(data: bytes) -> errors.LedgerError:
    """The domain exception for the contract's revert data."""
    selector, payload = data[:4], data[4:]
    known = _selectors().get(selector)
    if known is None:
        return errors.ContractReverted("0x" + data.hex() if data else "no revert data")
    name, types = known
    args = abi_decode(types, payload)
    build = _ERRORS.get(name)
    if build is None:
        return errors.ContractReverted(f"{name}{args}")
    return build(*args)


_TESTER_REVERT = re.compile(r"execution reverted: (b'.*'|b\".*\")$", re.DOTALL)


def revert_data(exc: BaseException) -> bytes | None:
    """The raw revert data carried by a web3 / eth-tester exception, if any."""
    data = getattr(exc, "data", None)
    if isinstance(data, str) and data.startswith("0x"):
        return bytes.fromhex(data[2:])
    if isinstance(data, bytes):
        return data
    # The in-process eth-tester chain puts the bytes' repr in the message.
    match = _TESTER_REVERT.match(str(exc))
    if match:
        value = ast.literal_eval(match.group(1))
        return value if isinstance(value, bytes) else None
    return None
