"""Request size limits (413) enforced before a route reads the body."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import problem_bytes


class BodyLimit:
    """ASGI middleware: refuses bodies over ``max_bytes`` (``max_upload`` for upload paths).

    Checks Content-Length first, then counts the bytes actually received, so a chunked body
    cannot slip past the limit.
    """

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, max_upload: int, upload_paths: tuple[str, ...]
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_upload = max_upload
        self.upload_paths = upload_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit = self.max_upload if path.startswith(self.upload_paths) else self.max_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _too_large(send, limit)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge(limit)
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _TooLarge:
            await _too_large(send, limit)


class _TooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(limit)


async def _too_large(send: Send, limit: int) -> None:
    body = problem_bytes(
        413, "payload_too_large", "Payload too large", f"the body exceeds {limit} bytes"
    )
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
