"""Prometheus metrics at ``/metrics``: requests, decisions and the event index's lag."""

from __future__ import annotations

import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Metrics:
    """One registry per app, so tests and several apps in one process do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ql_http_requests_total",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ql_http_request_seconds", "HTTP request latency", ["route"], registry=self.registry
        )
        self.decisions = Counter(
            "ql_decisions_total", "check decisions", ["allowed", "reason"], registry=self.registry
        )
        self.lag_blocks = Gauge(
            "ql_index_lag_blocks",
            "blocks the event index is behind the node",
            registry=self.registry,
        )
        self.lag_seconds = Gauge(
            "ql_index_lag_seconds",
            "seconds since the index last matched the node",
            registry=self.registry,
        )
        self.stale = Gauge(
            "ql_index_stale", "1 when checks refuse with ledger_stale", registry=self.registry
        )
        self.head_block = Gauge(
            "ql_chain_head_block", "chain head seen by health", registry=self.registry
        )

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class MetricsMiddleware:
    """Counts requests by route template, never the raw path: no contact in a label, and
    bounded cardinality."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(scope["method"], name, str(status)).inc()
            self.metrics.latency.labels(name).observe(time.perf_counter() - started)


def endpoint(request: Request) -> Response:
    metrics: Metrics = request.app.state.metrics
    lag = request.app.state.ledger.state.lag()  # measured at scrape time
    metrics.lag_blocks.set(lag.lag_blocks)
    metrics.lag_seconds.set(lag.lag_seconds)
    metrics.stale.set(1 if lag.stale else 0)
    return metrics.render()
