"""The test servers' helpers: a server that does not answer is a skip saying why, or a failure
when CI requires it (``QL_REQUIRE_POSTGRES``, ``QL_REQUIRE_REDIS``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.servers import POSTGRES, REDIS, Server, postgres_database, postgres_url, redis_url

ROOT = Path(__file__).resolve().parent.parent


def closed_port() -> int:
    """A local port nothing listens on (connections to it are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def unreachable_urls() -> dict[str, str]:
    port = closed_port()
    return {
        POSTGRES.url_variable: f"postgresql+psycopg://postgres@127.0.0.1:{port}/test",
        REDIS.url_variable: f"redis://127.0.0.1:{port}/0",
    }


HELPERS: list[tuple[Server, Callable[[], object]]] = [
    (POSTGRES, lambda: next(postgres_url())),
    (POSTGRES, lambda: next(postgres_database())),
    (REDIS, redis_url),
]
IDS = ["postgres_url", "postgres_database", "redis_url"]


@pytest.mark.parametrize("flag", [None, "", "0"])
@pytest.mark.parametrize(("server", "reach"), HELPERS, ids=IDS)
def test_a_server_that_does_not_answer_is_a_skip_saying_why(
    monkeypatch: pytest.MonkeyPatch,
    server: Server,
    reach: Callable[[], object],
    flag: str | None,
) -> None:
    url = unreachable_urls()[server.url_variable]
    monkeypatch.setenv(server.url_variable, url)
    if flag is None:
        monkeypatch.delenv(server.require_variable, raising=False)
    else:
        monkeypatch.setenv(server.require_variable, flag)
    with pytest.raises(pytest.skip.Exception) as skipped:
        reach()
    reason = str(skipped.value)
    assert f"{server.name} not reachable at {url}" in reason
    assert server.url_variable in reason and f"{server.require_variable}=1" in reason


@pytest.mark.parametrize("flag", ["1", "true"])
@pytest.mark.parametrize(("server", "reach"), HELPERS, ids=IDS)
def test_a_required_server_that_does_not_answer_is_a_failure(
    monkeypatch: pytest.MonkeyPatch,
    server: Server,
    reach: Callable[[], object],
    flag: str,
) -> None:
    url = unreachable_urls()[server.url_variable]
    monkeypatch.setenv(server.url_variable, url)
    monkeypatch.setenv(server.require_variable, flag)
    with pytest.raises(pytest.fail.Exception) as failed:
        reach()
    assert f"{server.name} not reachable at {url}" in str(failed.value)
    assert f"{server.require_variable} is set" in str(failed.value)


def test_a_server_that_does_not_answer_ping_is_not_a_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    # Something listens, but refuses the PING (as a Redis that wants a password does).
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def refuse() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(512)
                conn.sendall(b"-NOAUTH Authentication required.\r\n")

        answering = threading.Thread(target=refuse)
        answering.start()
        monkeypatch.setenv(REDIS.url_variable, f"redis://127.0.0.1:{listener.getsockname()[1]}/0")
        monkeypatch.delenv(REDIS.require_variable, raising=False)
        with pytest.raises(pytest.skip.Exception, match="NOAUTH Authentication required"):
            redis_url()
        answering.join(timeout=5)


def run_pytest(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    test = tmp_path / "test_needs_servers.py"
    test.write_text(
        textwrap.dedent(
            """
            from tests.servers import postgres_url, redis_url

            def test_postgres():
                for _ in postgres_url():
                    pass

            def test_redis():
                redis_url()
            """
        )
    )
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        + ["-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT), str(test)],
        cwd=ROOT,
        # No third-party plugins: the run needs pytest alone, and starts in a second.
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_the_flags_the_summary_lists_each_skip_and_its_reason(tmp_path: Path) -> None:
    env = {**unreachable_urls(), POSTGRES.require_variable: "", REDIS.require_variable: ""}
    run = run_pytest(tmp_path, env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 skipped" in run.stdout
    assert "SKIPPED [1]" in run.stdout  # -rs in addopts: the reasons are in the summary
    assert "PostgreSQL not reachable at" in run.stdout and "Redis not reachable at" in run.stdout


def test_with_the_flags_set_as_ci_does_the_run_fails(tmp_path: Path) -> None:
    env = {**unreachable_urls(), POSTGRES.require_variable: "1", REDIS.require_variable: "1"}
    run = run_pytest(tmp_path, env)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "2 failed" in run.stdout
    assert "QL_REQUIRE_POSTGRES is set" in run.stdout and "QL_REQUIRE_REDIS is set" in run.stdout


def test_ci_requires_both_servers_and_still_runs_make_test() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    exports = script.index("export QL_REQUIRE_POSTGRES=1 QL_REQUIRE_REDIS=1")
    assert script.rstrip().endswith("make test") and exports < script.index("make test")
