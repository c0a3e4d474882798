"""RFC 9457 problem+json for every error, produced here and nowhere else.

Every text of a problem passes through ``redact``: an exception's message may quote the node's
URL, and hosted nodes carry their API keys in it.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger.chain.redact import redact
from ledger.domain import errors

log = logging.getLogger(__name__)

PROBLEM_BASE = "https://quota-ledger.dev/problems/"
MEDIA_TYPE = "application/problem+json"

_STATUS: list[tuple[type[errors.LedgerError], int]] = [
    (errors.InvalidInput, 422),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.Unauthorized, 401),
    (errors.Forbidden, 403),
    (errors.Unavailable, 503),
    (errors.TooManyRequests, 429),
]


_RESERVED = {"type", "title", "status", "detail", "instance"}


def problem_body(status: int, code: str, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": PROBLEM_BASE + code,
        "title": redact(title),
        "status": status,
        "detail": redact(detail),
        **{k: redact(v) if isinstance(v, str) else v for k, v in extra.items()},
    }


def problem(status: int, code: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = problem_body(status, code, title, detail, **extra)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE)


def problem_bytes(status: int, code: str, title: str, detail: str) -> bytes:
    """A problem document for places below FastAPI (ASGI middleware)."""
    return json.dumps(problem_body(status, code, title, detail)).encode()


def status_of(exc: errors.LedgerError) -> int:
    for category, status in _STATUS:
        if isinstance(exc, category):
            return status
    return 500


async def _ledger_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.LedgerError)
    status = status_of(exc)
    if status >= 500:
        log.error("ledger error %s: %s", exc.code, redact(exc.message))
    retry_after = exc.fields.get("retry_after")
    fields = {
        k: v
        for k, v in exc.fields.items()
        if isinstance(v, str | int | float | bool) and k not in _RESERVED
    }
    response = problem(status, exc.code, type(exc).__name__, exc.message, **fields)
    if isinstance(retry_after, int | float):
        response.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return response


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    invalid = [
        {"field": ".".join(str(p) for p in e["loc"][1:]) or str(e["loc"][0]), "message": e["msg"]}
        for e in exc.errors()
    ]
    return problem(
        422,
        "validation",
        "Invalid request",
        "the request does not match the schema",
        errors=invalid,
    )


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return problem(exc.status_code, f"http_{exc.status_code}", str(exc.detail), str(exc.detail))


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error")
    return problem(500, "internal", "Internal error", "an unexpected error occurred")


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.LedgerError, _ledger_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
