"""The bare baseline of the HTTP benchmarks: FastAPI with nothing behind the route.

A sync and an async route parse a body shaped like ``POST /v1/checks`` into a pydantic model
and answer a JSON of the size and shape of a check's answer, with no authentication, no
middleware and no storage: what the framework and the server cost by themselves. Served by
uvicorn with the options ``quota-ledger serve`` uses (its access log unless told
``--no-access-log``, as the product's ``QL_ACCESS_LOG``), so that the ratio product/bare
measures what the product adds::

    .venv/bin/python -m bench.bare --port 8100 [--workers 4] [--no-access-log]
"""

from __future__ import annotations

import argparse
import hashlib
from typing import Literal

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, Field


class Body(BaseModel):
    contact: str = Field(min_length=1, max_length=254)
    channel: Literal["call", "sms", "email", "messaging"]
    record: bool = False


class Reason(BaseModel):
    code: str
    message: str
    rule: str | None = None
    reference: str | None = None


class Contact(BaseModel):
    kind: str
    value: str
    region: str | None
    time_zone: str | None


class Receipt(BaseModel):
    seq: int
    entry_hash: str


class Answer(BaseModel):
    allowed: bool
    reasons: list[Reason]
    contact: Contact
    consumer: str | None
    remaining: int | None
    next_free_at: int | None
    grant_version: int | None
    block_number: int | None
    receipt: Receipt | None
    basis: str | None = None
    rules: list[str] = Field(default_factory=list)


def _answer(body: Body) -> Answer:
    digest = hashlib.sha256(body.contact.encode()).hexdigest()
    return Answer(
        allowed=True,
        reasons=[
            Reason(
                code="grant_allows",
                message="signed grant v1: 999999 left before this contact",
                rule="FR-L34-5-consent",
                reference="CPCE L.34-5: prior consent for SMS, e-mail and automated messages",
            )
        ],
        contact=Contact(kind="phone", value=body.contact, region="FR", time_zone="Europe/Paris"),
        consumer="0x" + digest[:40],
        remaining=999_999,
        next_free_at=None,
        grant_version=0,
        block_number=1234,
        receipt=Receipt(seq=1, entry_hash=digest) if body.record else None,
        basis="consent",
        rules=["FR-L34-5-consent"],
    )


app = FastAPI()


@app.post("/sync")
def sync_route(body: Body) -> Answer:
    """In the thread pool, like a sync ``def`` route of the product."""
    return _answer(body)


@app.post("/async")
async def async_route(body: Body) -> Answer:
    """On the event loop."""
    return _answer(body)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-access-log", dest="access_log", action="store_false")
    args = parser.parse_args()
    # As `quota-ledger serve` runs uvicorn; several workers need the app by import string.
    target = app if args.workers == 1 else "bench.bare:app"
    uvicorn.run(
        target,
        host=args.host,
        port=args.port,
        log_level="info",
        workers=args.workers,
        access_log=args.access_log,
    )


if __name__ == "__main__":
    main()
