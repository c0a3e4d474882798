"""`quota-ledger audit report`: the report written as JSON or HTML from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ledger.cli import app
from ledger.runtime import Ledger
from tests.audit.test_report import small_log  # noqa: F401  (the fixture: a small real log)

pytestmark = pytest.mark.usefixtures("small_log")  # on the ``ledger`` the tests are given


@pytest.mark.parametrize(
    ("args", "first", "last"),
    [
        (["--since", "2026-11-20", "--until", "2026-11-26"], "2026-11-20", "2026-11-26"),
        (["--since", "2026-11-25", "--until", "2026-11-25"], "2026-11-25", "2026-11-25"),
    ],
)
def test_the_cli_writes_the_report_as_json_or_html(
    ledger: Ledger, tmp_path: Path, args: list[str], first: str, last: str
) -> None:
    base = ["audit", "report", "--data-dir", str(ledger.settings.data_dir), "--company", "1"]
    offline = [*base, *args, "--no-verify", "--no-replay"]
    result = CliRunner().invoke(app, [*offline, "--format", "json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    days = sorted({d["day"] for d in body["days"]})
    assert first <= days[0] and days[-1] <= last
    assert body["violations"]["status"] == "not run"
    page = tmp_path / "report.html"
    result = CliRunner().invoke(app, [*offline, "--output", str(page)])
    assert result.exit_code == 0, result.output
    assert page.read_text().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize(
    "args",
    [["--since", "2026-11-20"], ["--since", "2026-11-26", "--until", "2026-11-20"]],
)
def test_the_cli_refuses_a_half_or_backward_period(ledger: Ledger, args: list[str]) -> None:
    base = ["audit", "report", "--data-dir", str(ledger.settings.data_dir), "--no-verify"]
    result = CliRunner().invoke(app, [*base, "--no-replay", *args])
    assert result.exit_code == 2
    said = " ".join(result.output.replace("│", " ").split())  # rich boxes and wraps the message
    assert "(--since, --until)" in said
