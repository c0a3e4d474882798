"""A daemon thread that loops until stopped: the shape every background role shares (the
index follower, the head watcher, the elected leader's work, the node supervisor, the
anchorer, the log verifier).

Daemon, so that a process that forgets to stop one still exits; ``stop`` sets an event the
loop waits on between rounds, so stopping never waits a whole interval.

Example:
    >>> class Ticker(BackgroundLoop):
    ...     def _run(self) -> None:
    ...         while not self._stop.wait(1.0):
    ...             tick()
    >>> with Ticker("ticker"):
    ...     serve()
"""

from __future__ import annotations

import threading
from typing import Self


class BackgroundLoop:
    """Runs ``_run`` in a daemon thread named ``name`` between ``start`` and ``stop``."""

    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def alive(self) -> bool:
        """Started, not stopped, and its thread has not died."""
        return self._thread.is_alive() and not self._stop.is_set()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Asks the loop to end and waits up to ``timeout`` seconds for it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        raise NotImplementedError
