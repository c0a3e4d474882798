"""``GET /v1/health`` against databases that are really down: no mocks.

Whatever fails in the database, health answers its documented degraded body (503, status
"degraded", database "unavailable") and still reports what the node alone can tell; never a
generic problem, never a 500 (the test client re-raises any server error).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, make_url

from api.main import create_app
from api.schemas import HealthOut
from ledger.runtime import Ledger
from ledger.settings import Settings
from tests.servers import POSTGRES, postgres_database


def assert_degraded(response: Any, ledger: Ledger) -> dict[str, Any]:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/json"  # the body, not a problem
    body: dict[str, Any] = HealthOut.model_validate(response.json()).model_dump()
    assert (body["status"], body["database"]) == ("degraded", "unavailable")
    assert body["detail"].startswith("database unavailable: ")
    # What the node alone can tell is still there; what needs the database is not guessed.
    assert (body["chain_id"], body["contract"]) == (ledger.chain.chain_id, ledger.chain.address)
    assert body["head_block"] == ledger.chain.head().number
    assert (body["index_block"], body["lag_blocks"], body["lag_seconds"]) == (None, None, None)
    assert body["lists"] == []
    return body


def assert_ok(response: Any) -> None:
    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["database"]) == ("ok", "ok")


def test_health_is_degraded_when_the_sqlite_file_is_not_a_database(
    client: TestClient, ledger: Ledger, settings: Settings
) -> None:
    assert_ok(client.get("/v1/health"))
    database = Path(settings.sqlalchemy_url.removeprefix("sqlite:///"))
    # Overwritten in place (the open connections see it: the same inode), WAL files included.
    for path in (database, *database.parent.glob(f"{database.name}-*")):
        with path.open("r+b") as damaged:
            damaged.write(b"not a database. " * (path.stat().st_size // 16 + 1))
    body = assert_degraded(client.get("/v1/health"), ledger)
    assert "file is not a database" in body["detail"]


class StoppableServer:
    """A TCP relay in front of a server: ``stop`` behaves as that server stopping.

    Open connections are cut and new ones refused, which is what a client of a stopped
    PostgreSQL sees (the server itself is shared by other tests, so it is not stopped).
    """

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._start(self._accept)

    def _start(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            client.settimeout(None)
            upstream = socket.create_connection(self._target)
            with self._lock:
                self._sockets += [client, upstream]
            self._start(_pipe, client, upstream)
            self._start(_pipe, upstream, client)

    def stop(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._threads[0].join()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # the other side closed it already
        for thread in self._threads[1:]:
            thread.join(timeout=5)
        for sock in self._sockets:
            sock.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass  # cut by ``stop``
    try:
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


@contextmanager
def postgres_ledger(tmp_path: Path, url: str) -> Iterator[tuple[Ledger, TestClient]]:
    ledger = Ledger.open(Settings(chain="memory", data_dir=tmp_path, database_url=url))  # type: ignore[arg-type]
    try:
        with TestClient(create_app(ledger)) as client:
            yield ledger, client
    finally:
        ledger.engine.dispose()


@pytest.fixture
def database_url() -> Iterator[str]:
    """A PostgreSQL database of the test's own, which it may break."""
    yield from postgres_database()


def test_health_is_degraded_when_the_postgres_server_stops(
    tmp_path: Path, database_url: str
) -> None:
    url = make_url(database_url)
    server = StoppableServer(url.host or "127.0.0.1", url.port or 5432)
    try:
        through = url.set(host="127.0.0.1", port=server.port).render_as_string(False)
        with postgres_ledger(tmp_path, through) as (ledger, client):
            assert_ok(client.get("/v1/health"))
            server.stop()
            body = assert_degraded(client.get("/v1/health"), ledger)
            assert "refused" in body["detail"] or "failed" in body["detail"]
            assert_degraded(client.get("/v1/health"), ledger)  # and stays so, no 500 later
    finally:
        server.stop()


def test_health_is_degraded_when_the_postgres_database_is_dropped(
    tmp_path: Path, database_url: str
) -> None:
    with postgres_ledger(tmp_path, database_url) as (ledger, client):
        assert_ok(client.get("/v1/health"))
        name = make_url(database_url).database
        # FORCE terminates the ledger's open connections first, as a server going down does.
        admin = create_engine(POSTGRES.url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
        admin.dispose()
        body = assert_degraded(client.get("/v1/health"), ledger)
        assert f'database "{name}" does not exist' in body["detail"]


def test_a_damaged_database_file_is_a_503_on_every_route_not_a_500(
    client: TestClient, ledger: Ledger, settings: Settings, company_auth: dict[str, str]
) -> None:
    database = Path(settings.sqlalchemy_url.removeprefix("sqlite:///"))
    for path in (database, *database.parent.glob(f"{database.name}-*")):
        with path.open("r+b") as damaged:
            damaged.write(b"not a database. " * (path.stat().st_size // 16 + 1))
    check = {"contact": "+33 6 12 34 56 78", "channel": "sms", "record": True}
    for response in (
        client.post("/v1/checks", json=check, headers=company_auth),
        client.get("/v1/usage", headers=company_auth),
    ):
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
