"""The servers some tests need: PostgreSQL and Redis on this machine.

A server that does not answer skips its tests, saying why in the summary (``-rs``): a user's
machine without PostgreSQL or Redis still runs everything else. CI sets the server's
``QL_REQUIRE_*`` flag (see ``.ci/run``), which turns that skip into a failure, so that a
missing server can never leave ``make test`` green.

Example:
    >>> for url in postgres_url():  # inside a fixture or a test
    ...     engine = migrated_engine(url)
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, NoReturn
from urllib.parse import unquote, urlsplit

import pytest
from sqlalchemy import create_engine, make_url
from sqlalchemy.exc import OperationalError


@dataclass(frozen=True, slots=True)
class Server:
    """A server the tests may need: where it is, and which flag makes it required."""

    name: str
    url_variable: str  # the environment variable naming another URL
    default_url: str
    require_variable: str  # set to 1: a server that does not answer fails the test

    @property
    def url(self) -> str:
        return os.environ.get(self.url_variable) or self.default_url

    @property
    def required(self) -> bool:
        return os.environ.get(self.require_variable, "").strip().lower() in {"1", "true", "yes"}

    def unreachable(self, reason: object) -> NoReturn:
        """Fails the calling test when the server is required, else skips it; says why."""
        message = f"{self.name} not reachable at {self.url}: {reason}"
        if self.required:
            pytest.fail(f"{message} ({self.require_variable} is set)", pytrace=False)
        pytest.skip(
            f"{message} (set {self.url_variable} to use another; "
            f"{self.require_variable}=1 makes this a failure)"
        )


POSTGRES = Server(
    name="PostgreSQL",
    url_variable="QL_TEST_POSTGRES_URL",
    default_url="postgresql+psycopg://postgres@127.0.0.1:5432/test",
    require_variable="QL_REQUIRE_POSTGRES",
)
REDIS = Server(
    name="Redis",
    url_variable="QL_TEST_REDIS_URL",
    default_url="redis://127.0.0.1:6379/0",
    require_variable="QL_REQUIRE_REDIS",
)


def postgres_url() -> Iterator[str]:
    """Yields a URL whose search_path is a fresh schema; drops the schema afterwards."""
    yield from _postgres_throwaway("SCHEMA")


def postgres_database() -> Iterator[str]:
    """Yields the URL of a fresh database of its own; drops it afterwards, even if the test did.

    For tests that break the database itself (terminate its connections, drop it).
    """
    yield from _postgres_throwaway("DATABASE")


def _postgres_throwaway(kind: Literal["SCHEMA", "DATABASE"]) -> Iterator[str]:
    server = POSTGRES.url
    name = f"ql_test_{uuid.uuid4().hex[:12]}"
    # AUTOCOMMIT: CREATE and DROP DATABASE cannot run inside a transaction.
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE {kind} {name}")
    except OperationalError as exc:
        admin.dispose()
        POSTGRES.unreachable(exc.orig)
    if kind == "SCHEMA":
        url, drop = f"{server}?options=-csearch_path%3D{name}", f"DROP SCHEMA {name} CASCADE"
    else:
        url = make_url(server).set(database=name).render_as_string(hide_password=False)
        drop = f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(drop)
        admin.dispose()


def redis_url() -> str:
    """The test Redis's URL, once it answered a PING."""
    url = REDIS.url
    try:
        _ping(url)
    except (OSError, ValueError) as exc:
        REDIS.unreachable(exc)
    return url


def _ping(url: str, timeout: float = 2.0) -> None:
    # RESP over a plain socket: the tests need no Redis client to learn whether one answers.
    parts = urlsplit(url)
    if parts.scheme != "redis":
        raise ValueError(f"not a redis:// URL: {url}")
    commands = [[b"PING"]]
    if parts.password is not None:
        credentials = [unquote(p).encode() for p in (parts.username, parts.password) if p]
        commands.insert(0, [b"AUTH", *credentials])
    address = (parts.hostname or "127.0.0.1", parts.port or 6379)
    with socket.create_connection(address, timeout) as conn:
        for command in commands:
            conn.sendall(b"*%d\r\n" % len(command))
            conn.sendall(b"".join(b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in command))
            answer = conn.recv(512)
            if not answer or answer.startswith(b"-"):
                raise ConnectionError(answer.decode(errors="replace").strip() or "closed")
    if not answer.startswith(b"+PONG"):
        raise ConnectionError(f"unexpected answer to PING: {answer!r}")
