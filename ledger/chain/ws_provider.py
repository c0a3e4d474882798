"""JSON-RPC over a WebSocket, synchronously: what ``Chain`` uses for ``ws://`` and ``wss://`` URLs.

web3.py 8 ships WebSocket support only for ``AsyncWeb3`` (its synchronous legacy provider was
removed), while the rest of ``ledger`` is synchronous and thread-based. This provider keeps one
connection, sends one request at a time under a lock and reads until the matching answer.
A broken connection is reported as ``ConnectionError`` (so ``Chain`` retries it like any
transient failure) and re-opened on the next request.

Example:
    >>> w3 = Web3(WebSocketSyncProvider("ws://127.0.0.1:8545", timeout=5.0))
"""

from __future__ import annotations

import json
import threading
from typing import Any

from web3.providers.base import JSONBaseProvider
from web3.types import RPCEndpoint, RPCResponse
from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect


class WebSocketSyncProvider(JSONBaseProvider):
    """A synchronous, thread-safe web3 provider over one WebSocket connection."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        super().__init__()
        self.endpoint_uri = url
        self.timeout = timeout
        self._lock = threading.Lock()
        self._ws: ClientConnection | None = None

    def __str__(self) -> str:
        return f"WebSocket connection {self.endpoint_uri}"

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        request = self.encode_rpc_request(method, params)
        request_id = json.loads(request)["id"]
        with self._lock:
            try:
                ws = self._connection()
                ws.send(request.decode())
                while True:
                    response = self.decode_rpc_response(_as_bytes(ws.recv(timeout=self.timeout)))
                    # Anything else on the socket (a subscription notification) is not ours.
                    if response.get("id") == request_id:
                        return response
            except (OSError, TimeoutError, WebSocketException) as exc:
                self._drop()
                raise ConnectionError(f"{self.endpoint_uri}: {type(exc).__name__}: {exc}") from exc

    def is_connected(self, show_traceback: bool = False) -> bool:
        try:
            return "result" in self.make_request(RPCEndpoint("web3_clientVersion"), [])
        except ConnectionError:
            if show_traceback:
                raise
            return False

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _connection(self) -> ClientConnection:
        if self._ws is None:
            # One long-lived connection that we close ourselves (hence `legacy`); results of
            # eth_getLogs can be large, so no message size limit beyond the node's own.
            self._ws = connect(
                self.endpoint_uri, open_timeout=self.timeout, max_size=None, legacy=True
            )
        return self._ws

    def _drop(self) -> None:
        if self._ws is not None:
            try:
                self._ws.close()
            except Exception:  # closing a broken socket may fail again; it is dropped anyway
                pass
            self._ws = None


def _as_bytes(message: str | bytes) -> bytes:
    return message.encode() if isinstance(message, str) else message
