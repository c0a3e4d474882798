"""The FastAPI application: thin routes over ``ledger``."""

from __future__ import annotations

from fastapi import FastAPI

from api import errors
from api.routes import checks, grants, health
from ledger.runtime import Ledger


def create_app(ledger: Ledger) -> FastAPI:
    """Builds the API around an opened ledger."""
    app = FastAPI(
        title="quota-ledger",
        version="0.1.0",
        description="Consent-based contact quotas: companies ask before every contact; "
        "consumers hold the keys.",
    )
    app.state.ledger = ledger
    errors.install(app)
    app.include_router(checks.router)
    app.include_router(grants.router)
    app.include_router(health.router)
    return app
