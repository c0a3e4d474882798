"""A throw-away PostgreSQL schema per test, or a clear skip when no server is reachable."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError

SERVER = os.environ.get("QL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def postgres_url() -> Iterator[str]:
    """Yields a URL whose search_path is a fresh schema; drops the schema afterwards."""
    admin = create_engine(SERVER)
    try:
        with admin.begin() as conn:
            schema = f"ql_test_{uuid.uuid4().hex[:12]}"
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    except OperationalError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at {SERVER} (set QL_TEST_POSTGRES_URL): {exc.orig}")
    try:
        yield f"{SERVER}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()
