"""Sorted arrays of numbers: membership on both lookup paths, and deltas."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.lists.arrays import apply_delta, member
from tests.lists.list_helpers import values

sorted_sets = st.sets(st.integers(1, 10**15), max_size=60).map(
    lambda s: np.array(sorted(s), dtype=np.uint64)
)


@settings(max_examples=200, deadline=None)
@given(listed=sorted_sets, queries=st.lists(st.integers(0, 10**15 + 1), max_size=60))
def test_membership_agrees_with_a_set(listed: np.ndarray, queries: list[int]) -> None:  # type: ignore[type-arg]
    found = member(listed, np.array(queries, dtype=np.uint64))
    reference = set(values(listed))
    assert found.tolist() == [q in reference for q in queries]


@pytest.mark.parametrize("queries", [1, 4095, 4096, 50_000])
def test_bulk_lookups_agree_with_isin_on_both_paths(queries: int) -> None:
    rng = np.random.default_rng(queries)
    listed = np.unique(rng.integers(0, 10**6, 100_000).astype(np.uint64))
    asked = rng.integers(0, 10**6 + 10, queries).astype(np.uint64)
    assert (member(listed, asked) == np.isin(asked, listed)).all()


@settings(max_examples=200, deadline=None)
@given(base=sorted_sets, additions=sorted_sets, removals=sorted_sets)
def test_a_delta_agrees_with_set_arithmetic(
    base: np.ndarray,  # type: ignore[type-arg]
    additions: np.ndarray,  # type: ignore[type-arg]
    removals: np.ndarray,  # type: ignore[type-arg]
) -> None:
    merged, added, removed = apply_delta(base, additions, removals)
    before, add, rem = set(values(base)), set(values(additions)), set(values(removals))
    after = (before | add) - rem
    assert values(merged) == sorted(after)
    assert (added, removed) == (len(after - before), len(before - after))
