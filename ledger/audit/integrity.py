"""The running service verifying its own usage log, and failing closed when it is broken.

Each process keeps the last entry it verified or saw committed, as ``(seq, entry_hash)``:

- every append reports the head it read (``ledger.usage.log.watch``): a head below that seq,
  or another hash at that seq, means entries the process had verified were deleted or
  rewritten under it. The append is refused (``UsageLogCorrupt``) and nothing is written. The
  check is two comparisons on values the append already holds: no query is added.
- a background thread (``LogVerifier``) re-hashes the entries appended since its last round
  every second, by any process (``ledger.audit.verify``'s tight loop over raw rows), and
  re-reads a slice of the older ones each round, so that an entry edited in place (its stored
  hash left as it was) is found too, however old.

Once broken, the log stays broken for this process: ``/v1/health`` reports it as failed with
``usage_log_corrupt`` and the seq, and every check refuses with that code, until the operator
repairs the log and restarts. A quota counted from a log that was edited cannot be trusted.

Example:
    >>> integrity = LogIntegrity(engine)
    >>> with LogVerifier(integrity, interval=1.0):
    ...     serve()
"""

from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import dataclass

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from ledger.audit.verify import BATCH_ROWS, Kind, Problem, Verifier, page, pages
from ledger.background import BackgroundLoop
from ledger.db.engine import connect
from ledger.domain.errors import Unavailable
from ledger.usage import log as usage_log
from ledger.usage.hashing import GENESIS_HASH

log = logging.getLogger(__name__)

WALK_BATCHES = 5  # batches of new entries re-hashed per round


class UsageLogCorrupt(Unavailable):
    """The usage log was edited, truncated or rewritten: nothing counted from it is trusted."""

    code = "usage_log_corrupt"

    def __init__(self, seq: int, detail: str) -> None:
        super().__init__(f"usage log corrupt at entry {seq}: {detail}", seq=seq)
        self.seq = seq
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Corruption:
    seq: int
    kind: str
    detail: str

    def error(self) -> UsageLogCorrupt:
        return UsageLogCorrupt(self.seq, f"{self.kind}: {self.detail}")


class LogIntegrity:
    """What this process knows of the log: the last entry verified, and whether it broke.

    Args:
        engine: the usage log's database.
        rescan_rows: older entries re-read per round (the whole log is re-read every
            ``size / rescan_rows`` rounds).
    """

    def __init__(self, engine: Engine, *, rescan_rows: int = 10_000) -> None:
        self.engine = engine
        self.rescan_rows = rescan_rows
        self.corruption: Corruption | None = None
        self._lock = threading.Lock()
        self._known = (0, GENESIS_HASH)  # verified by a walk, or seen committed after a write
        self._written: tuple[int, str] | None = None  # this process's last append, uncommitted
        self._walked = (0, GENESIS_HASH)  # where the walk of new entries got to
        self._rescan = 0  # the older entries are re-read from after this seq

    @property
    def verified(self) -> int:
        """The seq up to which the background walk has re-hashed the log."""
        return self._walked[0]

    def watch(self) -> None:
        """Has every append to ``engine`` in this process check the head it reads."""
        usage_log.watch(self.engine, self.on_append)

    def unwatch(self) -> None:
        usage_log.watch(self.engine, None)

    def ensure_intact(self) -> None:
        """Raises ``UsageLogCorrupt`` once the log was found broken (a check's first step)."""
        corruption = self.corruption
        if corruption is not None:
            raise corruption.error()

    def on_append(self, head_seq: int, head_hash: str, seq: int, entry_hash: str) -> None:
        """The append hook: ``head_*`` is the head the append read, under the writer lock.

        Raises:
            UsageLogCorrupt: the log was found broken, now or before.
        """
        self.ensure_intact()
        with self._lock:
            written = self._written
            if written is not None and written == (head_seq, head_hash):
                # The previous append of this process committed: the head is it.
                self._advance(written)
            known_seq, known_hash = self._known
            if head_seq < known_seq:
                self._broken(
                    head_seq + 1,
                    "deleted",
                    f"the log ends at {head_seq} but entry {known_seq} was verified",
                )
            elif head_seq == known_seq and head_hash != known_hash:
                self._broken(head_seq, "edited", f"entry {head_seq} changed after it was verified")
            self._written = (seq, entry_hash)
        self.ensure_intact()

    def walk(self) -> Corruption | None:
        """One round: re-hashes the entries appended since the last round, then a slice of the
        older ones. Returns the corruption found, if any (it is also kept)."""
        if self.corruption is not None:
            return self.corruption
        walked_seq, walked_hash = self._walked
        verifier = Verifier([], size=walked_seq, last_hash=walked_hash, merkle=False)
        with connect(self.engine, read_only=True) as conn:
            # At most a few batches a round: a process starting on a long log catches up over
            # several rounds instead of holding the interpreter for one long walk.
            batches = itertools.islice(pages(conn, max(walked_seq, 1), BATCH_ROWS), WALK_BATCHES)
            problem = verifier.run(batches)
            if problem is None:
                self._walked = (verifier.size, verifier.last_hash)
                with self._lock:
                    self._advance(self._walked)
                problem = self._rescan_slice(conn)
        if problem is not None:
            with self._lock:
                self._broken(problem.seq, problem.kind.value, problem.detail)
        return self.corruption

    def _rescan_slice(self, conn: Connection) -> Problem | None:
        """Re-hashes up to ``rescan_rows`` older entries after ``_rescan``, wrapping to the
        start at the walked head: an edit in place of an old entry shows up within a cycle."""
        end = self._walked[0]
        if end == 0 or self.rescan_rows <= 0:
            return None
        start = self._rescan if self._rescan < end else 0
        # From the entry before the slice, so the first one's link is checked too.
        rows = page(conn, max(start, 1), self.rescan_rows + 1)
        if start == 0:
            verifier = Verifier([], merkle=False)
        else:
            if not rows or rows[0][0] != start:
                return Problem(Kind.DELETED, start, f"entry {start} is no longer there")
            verifier = Verifier([], size=start, last_hash=rows[0][3], merkle=False)
        problem = verifier.run(iter([rows]))
        if problem is not None and problem.seq <= end:
            return problem
        self._rescan = min(verifier.size, end)
        return None

    def _advance(self, entry: tuple[int, str]) -> None:
        if entry[0] > self._known[0]:
            self._known = entry

    def _broken(self, seq: int, kind: str, detail: str) -> None:
        if self.corruption is None:
            self.corruption = Corruption(seq, kind, detail)
            log.error("usage log corrupt at entry %d (%s): %s; checks refuse", seq, kind, detail)


class LogVerifier(BackgroundLoop):
    """Walks the log every ``interval`` seconds (``LogIntegrity.walk``) until stopped."""

    def __init__(self, integrity: LogIntegrity, *, interval: float = 1.0) -> None:
        super().__init__("usage-log-verifier")
        self.integrity = integrity
        self.interval = interval

    def _run(self) -> None:
        while True:
            try:
                self.integrity.walk()
            except Unavailable as exc:  # the database is down: health and checks say so
                log.warning("usage log verifier: %s", exc.message)
            except SQLAlchemyError as exc:  # a damaged database: tried again next round
                log.warning("usage log verifier: %s", str(exc).splitlines()[0][:200])
            except Exception:  # a bug must not silently end the verification of the log
                log.exception("usage log verifier failed; trying again next round")
            if self._stop.wait(self.interval):
                return
