"""The rolling window: how many contacts a quota has left, and when the next unit frees up."""

from __future__ import annotations


def window_state(times: list[int], *, max_contacts: int, period: int, now: int) -> tuple[int, int]:
    """(remaining, next_free_at) of a rolling window holding ``times`` (oldest first).

    A contact at ``t`` occupies the window over ``[t, t + period)``.
    """
    used = len(times)
    remaining = max(max_contacts - used, 0)
    if remaining > 0:
        return remaining, now
    # The window frees a unit when the contact that put it at its maximum ages out.
    return 0, times[used - max_contacts] + period
