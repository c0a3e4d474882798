"""Shared fixtures: a ledger on the in-process chain, a company, a consumer with a linked number."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from api.main import create_app
from ledger.chain.anvil import AnvilNode
from ledger.runtime import Ledger
from ledger.schema import migrated_engine
from ledger.services import apikeys
from ledger.services.apikeys import Role
from ledger.settings import Settings
from tests.helpers import PHONE, link
from tests.servers import postgres_url
from tests.stack import free_port


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilNode]:
    """One anvil node for a test module (tests that need a node of their own define ``node``);
    each test's fresh database deploys its own contract on it."""
    anvil = AnvilNode(
        data_dir=tmp_path_factory.mktemp("anvil"), port=free_port(), state_interval=3600
    )
    anvil.start()
    yield anvil
    anvil.stop()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        chain="memory",  # type: ignore[arg-type]
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def db_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated database on SQLite and, when reachable, PostgreSQL (else skipped, saying why)."""
    if request.param == "sqlite":
        made = migrated_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
        yield made
        made.dispose()
        return
    for url in postgres_url():
        made = migrated_engine(url)
        yield made
        made.dispose()


@pytest.fixture
def ledger(settings: Settings) -> Iterator[Ledger]:
    opened = Ledger.open(settings)
    yield opened
    opened.engine.dispose()


@pytest.fixture
def company(ledger: Ledger) -> int:
    ledger.relayer.register_company(1, "Acme SMS", ledger.chain.operator.address)
    return 1


@pytest.fixture
def consumer() -> LocalAccount:
    account: LocalAccount = Account.create()
    return account


@pytest.fixture
def linked(ledger: Ledger, consumer: LocalAccount) -> str:
    """Links PHONE to the consumer; returns the phone as a company would type it."""
    link(ledger, consumer.address, PHONE)
    return PHONE


@pytest.fixture
def client(ledger: Ledger) -> Iterator[TestClient]:
    with TestClient(create_app(ledger)) as test_client:
        yield test_client


@pytest.fixture
def company_auth(ledger: Ledger, company: int) -> dict[str, str]:
    """Authorization header of company 1's API key."""
    token, _ = apikeys.create_key(ledger.engine, role=Role.COMPANY, company_id=company)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def regulator_auth(ledger: Ledger) -> dict[str, str]:
    token, _ = apikeys.create_key(ledger.engine, role=Role.REGULATOR)
    return {"Authorization": f"Bearer {token}"}
