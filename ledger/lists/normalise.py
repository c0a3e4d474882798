"""E.164 integers of numbers as people write them, in chunks spread over processes.

Parsing is what costs (phonenumbers, ~20 µs a number), so a large list is cut into chunks
that worker processes parse side by side.

Example:
    >>> numbers, valid = normalise_many(["06 12 34 56 78", "nope"], default_region="FR")
    >>> valid.tolist()
    [True, False]
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np
import numpy.typing as npt

from ledger.domain import contacts
from ledger.domain.errors import InvalidContact
from ledger.lists.arrays import Numbers

CHUNK = 100_000  # numbers normalised per task: big enough to amortise a worker round trip


def normalise_many(
    raws: Sequence[str], *, default_region: str, workers: int = 1
) -> tuple[Numbers, npt.NDArray[np.bool_]]:
    """E.164 integers of ``raws`` and a mask of the valid ones (invalid entries hold 0).

    ``workers`` > 1 spreads the chunks over processes.
    """
    chunks = [list(raws[i : i + CHUNK]) for i in range(0, len(raws), CHUNK)]
    parts = [values for values, _ in normalise_chunks(chunks, default_region, workers)]
    out: Numbers = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
    return out, out != 0


def normalise_chunks(
    chunks: list[list[str]], default_region: str, workers: int
) -> list[tuple[Numbers, list[int]]]:
    """``_normalise_chunk`` of every chunk, in order, over ``workers`` processes."""
    if workers <= 1 or len(chunks) <= 1:
        return [_normalise_chunk(c, default_region) for c in chunks]
    # "spawn": a forked child of a threaded server may inherit held locks.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        return list(pool.map(_normalise_chunk, chunks, [default_region] * len(chunks)))


def _normalise_chunk(cells: list[str], default_region: str) -> tuple[Numbers, list[int]]:
    """E.164 integers of ``cells`` (0 where invalid) and the indexes of the invalid ones."""
    out = np.zeros(len(cells), dtype=np.uint64)
    bad = []
    for i, cell in enumerate(cells):
        try:
            out[i] = contacts.e164_number(cell, default_region=default_region)
        except InvalidContact:
            bad.append(i)
    return out, bad
