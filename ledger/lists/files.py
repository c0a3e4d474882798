"""Snapshot files: each version's numbers as ``<version>.npy`` in the lists directory.

A file is written once, whole, and never changed; a process maps it read-only and checks it
against its metadata first, so a missing, truncated or altered file fails closed instead of
answering "not listed".

Example:
    >>> save_snapshot(directory=path, version=meta.version, numbers=numbers)
    >>> open_snapshot(directory=path, meta=meta).size == meta.count
    True
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ledger.domain.errors import ListUnavailable
from ledger.lists.arrays import Numbers
from ledger.lists.store import OppositionListBase


def digest(numbers: Numbers) -> str:
    """SHA-256 of the array's bytes: recorded at import, checked on every load."""
    return hashlib.sha256(np.ascontiguousarray(numbers).data).hexdigest()


def snapshot_path(directory: Path, version: str) -> Path:
    return directory / f"{version}.npy"


def save_snapshot(*, directory: Path, version: str, numbers: Numbers) -> None:
    """Writes a version's file unless it is there already (the same version, the same bytes)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = snapshot_path(directory, version)
    if path.exists():
        return
    # Written whole, then renamed: a reader never maps a half-written snapshot.
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with tmp.open("wb") as handle:
        np.save(handle, numbers, allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def open_snapshot(*, directory: Path, meta: OppositionListBase) -> Numbers:
    """The version's numbers, memory-mapped.

    Raises:
        ListUnavailable: the file is missing, unreadable, or not the one its metadata records.
    """
    try:
        numbers: Numbers = np.load(
            snapshot_path(directory, meta.version), mmap_mode="r", allow_pickle=False
        )
    except (OSError, ValueError) as exc:
        raise ListUnavailable(meta.version, f"{type(exc).__name__}: {exc}") from exc
    if numbers.dtype != np.uint64 or numbers.ndim != 1 or numbers.size != meta.count:
        raise ListUnavailable(meta.version, "file does not match its metadata")
    if digest(numbers) != meta.digest:
        raise ListUnavailable(meta.version, "file digest does not match")
    return numbers
