"""`GET /v1/health` says which process leads the indexer, and whether `up` runs the node."""

from __future__ import annotations

import os
import socket
import time

from fastapi.testclient import TestClient

from ledger.runtime import Ledger


def test_health_names_the_indexer_leader_once_this_process_follows_the_index(
    client: TestClient, ledger: Ledger
) -> None:
    body = client.get("/v1/health").json()
    assert body["node"] is None  # the node is not run by this process
    assert body["leader"] == {
        "role": "indexer",
        "this_process": False,
        "id": None,
        "pid": None,
        "host": None,
    }
    follower = ledger.follow_index()
    try:
        deadline = time.monotonic() + 5
        while not ledger.leadership.held:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        body = client.get("/v1/health").json()
    finally:
        follower.stop()
    assert body["leader"] == {
        "role": "indexer",
        "this_process": True,
        "id": ledger.leadership.me.id,
        "pid": os.getpid(),
        "host": socket.gethostname(),
    }
