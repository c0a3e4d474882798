"""The log's hashes: canonical entry bytes and RFC 9162 leaf hashes, chained by ``prev_hash``.

Each entry's hash is ``SHA-256(0x00 || canonical entry)`` where the canonical entry includes
the previous entry's hash, so an edited, deleted or inserted entry breaks the chain, and the
audit can build Merkle proofs over the same leaf hashes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ledger.usage.entries import UsageEntryBase

GENESIS_HASH = "00" * 32
# Fields added after the first entries were written: left out of the canonical bytes while
# unset, so that every earlier entry hashes as it did.
_LATER_FIELDS = ("rules", "basis")


def leaf_bytes(entry: UsageEntryBase, *, seq: int, prev_hash: str) -> bytes:
    """The canonical serialisation hashed into the chain (stable key order, no spaces)."""
    return canonical(entry.model_dump(), seq=seq, prev_hash=prev_hash)


def canonical(fields: dict[str, Any], *, seq: int, prev_hash: str) -> bytes:
    """``leaf_bytes`` of an entry's fields already dumped (the append path has them)."""
    body: dict[str, Any] = {"seq": seq, "prev_hash": prev_hash, **fields}
    for name in _LATER_FIELDS:
        if body.get(name) is None:
            body.pop(name, None)
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def leaf_hash(data: bytes) -> str:
    """RFC 9162 section 2.1.1 leaf hash."""
    return hashlib.sha256(b"\x00" + data).hexdigest()
