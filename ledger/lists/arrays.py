"""Sorted arrays of E.164 integers: membership, de-duplication and deltas, all vectorised.

Example:
    >>> listed = sorted_unique(array.array("Q", [12125550100, 12024561111, 12125550100]))
    >>> member(listed, np.array([12024561111, 1], dtype=np.uint64)).tolist()
    [True, False]
"""

from __future__ import annotations

import array

import numpy as np
import numpy.typing as npt

Numbers = npt.NDArray[np.uint64]

_SORT_QUERIES_FROM = 4096  # bulk lookups at least this big sort their queries first


def member(listed: Numbers, queries: Numbers) -> npt.NDArray[np.bool_]:
    """Which of ``queries`` are in the sorted array ``listed`` (vectorised binary search)."""
    # Mixed signed/unsigned 64-bit operands would be compared as floats: keep both unsigned.
    queries = np.asarray(queries, dtype=np.uint64)
    if listed.size == 0 or queries.size == 0:
        return np.zeros(queries.shape, dtype=np.bool_)
    if queries.size < _SORT_QUERIES_FROM:
        at = np.searchsorted(listed, queries)
        np.minimum(at, listed.size - 1, out=at)
        return np.asarray(listed[at] == queries)
    # Sorted queries walk the list in order: neighbouring searches share cache lines and
    # pages, which makes a large bulk lookup several times faster than in arrival order.
    order = np.argsort(queries, kind="stable")
    ordered = queries[order]
    at = np.searchsorted(listed, ordered)
    np.minimum(at, listed.size - 1, out=at)
    found = np.empty(queries.shape, dtype=np.bool_)
    found[order] = listed[at] == ordered
    return found


def apply_delta(base: Numbers, additions: Numbers, removals: Numbers) -> tuple[Numbers, int, int]:
    """(new snapshot, numbers added, numbers removed); a number both added and removed goes.

    Linear in the list size: the sorted base is filtered, then the new numbers are inserted
    at their sorted positions.
    """
    gone = member(base, removals)  # removals actually listed
    kept = base[~member(removals, base)] if removals.size else np.asarray(base)
    fresh = additions[~member(kept, additions)]
    if removals.size:
        fresh = fresh[~member(removals, fresh)]
    merged: Numbers = np.insert(kept, np.searchsorted(kept, fresh), fresh)
    return merged, int(fresh.size), int(gone.sum())


def sorted_unique(values: array.array[int]) -> Numbers:
    """The distinct ``values`` in ascending order, as a snapshot holds them."""
    numbers = np.frombuffer(values, dtype=np.uint64).copy() if len(values) else None
    if numbers is None:
        return np.zeros(0, dtype=np.uint64)
    numbers.sort()
    keep = np.empty(numbers.size, dtype=np.bool_)
    keep[0] = True
    np.not_equal(numbers[1:], numbers[:-1], out=keep[1:])
    return numbers[keep]
