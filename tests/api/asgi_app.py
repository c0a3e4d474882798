"""The API as a real server process sees it: ``uvicorn --factory tests.api.asgi_app:app``,
configured by the ``QL_`` environment alone (tests that start several API processes)."""

from __future__ import annotations

from fastapi import FastAPI

from api.main import create_app
from ledger.runtime import Ledger
from ledger.settings import Settings


def app() -> FastAPI:
    return create_app(Ledger.open(Settings()))
