"""GET /v1/audit/report: the audit report over HTTP, for regulators, as HTML or JSON."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.audit.test_report import small_log  # noqa: F401  (the fixture: a small real log)

pytestmark = pytest.mark.usefixtures("small_log")

REPORT = "/v1/audit/report?since=2026-11-20&until=2026-11-26&company_id=1"


@pytest.mark.parametrize(
    ("query", "accept", "media"),
    [
        ("", "text/html,application/xhtml+xml,*/*;q=0.8", "text/html"),
        ("", "application/json", "application/json"),
        ("&format=json", "text/html", "application/json"),
        ("&format=html", "application/json", "text/html"),
    ],
)
def test_the_api_serves_the_report_as_html_or_json(
    client: TestClient,
    regulator_auth: dict[str, str],
    query: str,
    accept: str,
    media: str,
) -> None:
    response = client.get(REPORT + query, headers={**regulator_auth, "Accept": accept})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(media)
    if media == "application/json":
        body = response.json()
        assert body["totals"] == {"entries": 6, "allowed": 3, "refused": 3, "outcomes": 1}
        assert body["verification"]["status"] == body["violations"]["status"] == "passed"
    else:
        assert "<h1>Usage audit: Acme SMS (company 1)" in response.text
        assert "No violations found" in response.text


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("?since=2026-11-20", 422),
        ("?since=2026-11-26&until=2026-11-20", 422),
        ("?format=pdf", 422),
        ("?days=0", 422),
        ("?days=3661", 422),
        ("?since=1970-01-01&until=9999-12-30", 422),  # one bar a day: ten years at most
    ],
)
def test_the_api_refuses_a_bad_report_request_with_a_problem(
    client: TestClient, regulator_auth: dict[str, str], query: str, status: int
) -> None:
    response = client.get("/v1/audit/report" + query, headers=regulator_auth)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")


def test_a_report_without_audits_says_they_were_not_run(
    client: TestClient, regulator_auth: dict[str, str]
) -> None:
    response = client.get(REPORT + "&format=json&verify=false&replay=false", headers=regulator_auth)
    body = response.json()
    assert body["verification"]["status"] == body["violations"]["status"] == "not run"


def test_the_report_is_for_regulators_only(
    client: TestClient, company_auth: dict[str, str]
) -> None:
    assert client.get("/v1/audit/report", headers=company_auth).status_code == 403
    assert client.get("/v1/audit/report").status_code == 401
