"""The FastAPI application: thin routes over ``ledger``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors, metrics
from api.bulkhead import CheckThreads, NodeSlots
from api.limits import BodyLimit
from api.ratelimit import Limiter
from api.routes import (
    anchors,
    audit,
    auth,
    bulk,
    checks,
    companies,
    consent,
    consumers,
    events,
    grants,
    health,
    lists,
    usage,
)
from ledger.runtime import Ledger

UPLOAD_PATHS = ("/v1/scrub", "/v1/lists")


def create_app(ledger: Ledger, *, follow_index: bool = False) -> FastAPI:
    """Builds the API around an opened ledger.

    Args:
        ledger: the opened ledger.
        follow_index: while serving, also run ``ledger.follow_index`` and
            ``ledger.anchor_in_background`` (a worker process that nobody else starts them
            for); otherwise the caller runs them.
    """
    settings = ledger.settings

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # While serving, checks, health and metrics read the node's head as a background
        # thread last saw it: no request waits on the node for it.
        watcher = ledger.state.watch_head(interval=settings.index_poll_interval)
        verifier = ledger.verify_log()  # fails checks closed once the usage log is broken
        follower = ledger.follow_index() if follow_index else None
        anchorer = ledger.anchor_in_background() if follow_index else None
        try:
            yield
        finally:
            if anchorer is not None:
                anchorer.stop()
            if follower is not None:
                follower.stop()
            verifier.stop(timeout=1.0)
            watcher.stop(timeout=1.0)

    app = FastAPI(
        lifespan=lifespan,
        title="quota-ledger",
        version="0.1.0",
        description="Consent-based contact quotas: companies ask before every contact; "
        "consumers hold the keys. Errors are RFC 9457 problem documents.",
    )
    app.state.ledger = ledger
    app.state.limiter = Limiter.from_settings(settings)
    app.state.metrics = metrics.Metrics()
    app.state.node_slots = NodeSlots(wait=settings.rpc_timeout)
    app.state.check_threads = CheckThreads(settings.check_threads)
    errors.install(app)
    for module in (
        checks,
        bulk,
        consent,
        events,
        usage,
        grants,
        consumers,
        auth,
        companies,
        lists,
        anchors,
        audit,
        health,
    ):
        app.include_router(module.router)
    app.add_api_route("/metrics", metrics.endpoint, include_in_schema=False)
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        max_upload=settings.max_upload_bytes,
        upload_paths=UPLOAD_PATHS,
    )
    app.add_middleware(metrics.MetricsMiddleware, metrics=app.state.metrics)
    return app
