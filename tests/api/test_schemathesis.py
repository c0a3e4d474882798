"""Property-based fuzzing of every operation in the OpenAPI document: no input yields a 5xx.

Each operation is called with the credential of the role it serves (so the fuzzer gets past
authentication and reaches the domain code), on a ledger with a registered company.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import schemathesis
from eth_account import Account
from hypothesis import HealthCheck, settings
from schemathesis import Case

from api.main import create_app
from ledger.consent import signin
from ledger.runtime import Ledger
from ledger.services import apikeys
from ledger.services.apikeys import Role
from ledger.settings import Settings

REGULATOR_PATHS = ("/v1/companies", "/v1/keys", "/v1/usage/export")
CONSUMER_PATHS = ("/v1/me", "/v1/links/start", "/v1/links/verify")
COMPANY_PATHS = ("/v1/checks", "/v1/usage", "/v1/receipts", "/v1/outcomes", "/v1/events")
OPERATOR_PATHS = ("/v1/lists",)


# Schemathesis collects operations at import time, so the ledger under test is built here,
# once for the module, in a directory removed when the module's tests end.
_DIR = tempfile.TemporaryDirectory(prefix="ql-fuzz-")
LEDGER = Ledger.open(
    Settings(
        chain="memory",  # type: ignore[arg-type]
        data_dir=Path(_DIR.name),
        database_url=f"sqlite:///{_DIR.name}/ledger.sqlite3",
        # Every fuzzed call comes from one client address: let them all reach the domain code.
        sign_in_per_ip_per_minute=1_000_000,
        relay_per_ip_per_minute=1_000_000,
    )
)
LEDGER.relayer.register_company(1, "Acme SMS", LEDGER.chain.operator.address)


def _key(role: Role, company_id: int | None = None) -> dict[str, str]:
    token, _ = apikeys.create_key(LEDGER.engine, role=role, company_id=company_id)
    return {"Authorization": f"Bearer {token}"}


AUTH = {
    "regulator": _key(Role.REGULATOR),
    "company": _key(Role.COMPANY, 1),
    "operator": _key(Role.OPERATOR),
    "consumer": {
        "Authorization": "Bearer "
        + signin.issue_token(
            Account.create().address,
            datetime.now(UTC) + timedelta(hours=1),
            LEDGER.settings.session_secret_bytes,
        )
    },
    "none": {},
}
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(LEDGER))


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    LEDGER.engine.dispose()
    _DIR.cleanup()


def role_for(path: str) -> str:
    if path.startswith(REGULATOR_PATHS):
        return "regulator"
    if path.startswith(CONSUMER_PATHS):
        return "consumer"
    if path.startswith(COMPANY_PATHS):
        return "company"
    if path.startswith(OPERATOR_PATHS):
        return "operator"
    return "none"


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_no_input_yields_a_server_error(case: Case) -> None:
    if case.operation.path == "/v1/events":
        # A followed event stream never ends by design; fuzz its parameters on a finite one.
        case.query = {**(case.query or {}), "follow": "false"}
    response = case.call(headers=AUTH[role_for(case.operation.path)])
    assert response.status_code < 500, (
        f"{case.operation.method} {case.formatted_path}: {response.text}"
    )
