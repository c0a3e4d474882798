"""The CLI commands that need no node: opposition lists, link codes and the outbox."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect
from typer.testing import CliRunner

from ledger.cli import app
from ledger.domain.errors import InvalidList

runner = CliRunner()
CONSUMER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("QL_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("QL_DATABASE_URL", raising=False)
    return tmp_path


def test_lists_import_and_status(data_dir: Path) -> None:
    full = data_dir / "dnc.txt"
    full.write_text("202,4561111\n212,5550100\nnot a line\n")
    fetched = int(time.time()) - 86400
    os.utime(full, (fetched, fetched))
    result = runner.invoke(app, ["lists", "import", str(full), "--region", "US", "--format", "dnc"])
    assert result.exit_code == 0, result.output
    assert "imported US-" in result.output and "1 invalid lines skipped (first: 3)" in result.output
    changes = data_dir / "changes.txt"
    changes.write_text("212,5550100\n")
    result = runner.invoke(
        app,
        ["lists", "import", str(changes), "--region", "US", "--format", "dnc", "--delta-remove"],
    )
    assert result.exit_code == 0, result.output
    assert "1 numbers (+0 / -1)" in result.output
    company = data_dir / "crm.csv"
    company.write_text("name,phone\nAnn,06 12 34 56 78\n")
    args = ["lists", "import", str(company), "--region", "FR", "--format", "csv"]
    result = runner.invoke(app, [*args, "--column", "phone", "--company", "7"])
    assert result.exit_code == 0, result.output
    status = runner.invoke(app, ["lists", "status"], env={"COLUMNS": "200"})
    assert status.exit_code == 0, status.output
    assert "fresh" in status.output and "company 7" in status.output
    assert "changes.txt" in status.output  # the current US snapshot is the delta's


def test_a_refused_import_is_a_domain_error(data_dir: Path) -> None:
    path = data_dir / "ca.txt"
    path.write_text("+1 416 555 0100\n")
    result = runner.invoke(app, ["lists", "import", str(path), "--region", "CA"])
    assert isinstance(result.exception, InvalidList)  # `main` prints it as one line


def test_link_start_and_the_outbox_show_only_masked_contacts(data_dir: Path) -> None:
    result = runner.invoke(app, ["link-start", "06 12 34 56 78", CONSUMER])
    assert result.exit_code == 0, result.output
    assert "code sent to +336******78" in result.output
    outbox = runner.invoke(app, ["outbox"], env={"COLUMNS": "200"})
    assert outbox.exit_code == 0, outbox.output
    assert "+336******78" in outbox.output and "612345678" not in outbox.output
    assert "Your quota-ledger code is" in outbox.output


def test_migrate_creates_the_schema_and_is_a_no_op_when_run_again(tmp_path: Path) -> None:
    database = tmp_path / "ledger.sqlite3"
    env = {"QL_DATABASE_URL": f"sqlite:///{database}"}
    for _ in range(2):
        result = runner.invoke(app, ["migrate"], env=env)
        assert result.exit_code == 0, result.output
        assert "up to date" in result.output
    engine = create_engine(f"sqlite:///{database}")
    assert "usage_entry" in inspect(engine).get_table_names()
    engine.dispose()
