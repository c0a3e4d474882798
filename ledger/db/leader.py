"""Leader election: one process of those sharing a database runs a role (the indexer, the anchorer).

Every API process may run the background loops, but one of them is enough and several only
multiply the load on the node. Each role is a lock in the shared database that the operating
system or the server releases when the holder dies, however it dies:

- PostgreSQL: a session advisory lock on a connection of its own (kept out of the pool). The
  server drops the session, and the lock with it, when the process exits or is killed; TCP
  keepalives on both ends notice a vanished host within about 15 s.
- SQLite: ``flock`` on a file beside the database (``<database>.<role>.leader``), released by
  the kernel when the process dies. An in-memory database is one process's alone: it leads.

Followers try again every few seconds (``Elected``), so the role moves within that interval of
the leader's death. Who leads is readable by every process: on PostgreSQL from the lock's
session (its ``application_name``), on SQLite from the lock file.

Leading is about doing the work once, not about correctness: the index's checkpoint is written
under a row lock in the transaction of the rows it covers, so even two processes that both
believed they lead would not apply a chunk twice.

Example:
    >>> lock = LeaderLock(engine, "indexer")
    >>> with Elected(lock, lambda stop: indexer.sync(stop=stop), interval=0.25, retry=1.0):
    ...     serve()
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from ledger.background import BackgroundLoop

log = logging.getLogger(__name__)

_PG_CLASS = 0x716C6472  # "qldr": the first key of every leader lock (migrations use another)
# libpq keepalives (this end) and the server's (the other end): a silent peer is dropped in
# about idle + interval x count seconds, and with it the lock.
_KEEPALIVE = {"idle": 5, "interval": 2, "count": 3}


@dataclass(frozen=True, slots=True)
class Leader:
    """A process that holds, or may hold, a role."""

    id: str  # random per process: pids are reused, and a host may run several processes
    pid: int
    host: str

    @classmethod
    def this_process(cls) -> Leader:
        return cls(uuid.uuid4().hex[:12], os.getpid(), socket.gethostname())


@dataclass(eq=False)
class LeaderLock:
    """The lock of one role among the processes sharing ``engine``'s database.

    Not thread-safe: one thread (``Elected``'s) acquires, confirms and releases it; ``leader``
    and ``held`` may be read from any thread.

    Args:
        engine: the shared database.
        role: what the holder does (``indexer``, ``anchorer``): one lock per role.
        me: who this process is (default: a new identity for this process).
    """

    engine: Engine
    role: str
    me: Leader = field(default_factory=Leader.this_process)
    _backend: _PostgresLock | _FileLock | None = field(default=None, init=False, repr=False)
    _held: bool = field(default=False, init=False)

    @property
    def held(self) -> bool:
        """Whether this process holds the role (as of the last ``acquire``/``confirm``)."""
        return self._held

    def acquire(self) -> bool:
        """Takes the role if nobody holds it; never waits.

        Returns:
            Whether this process holds the role now.

        Raises:
            sqlalchemy.exc.SQLAlchemyError, OSError: the database or the lock file cannot be
                reached (this process does not hold the role).
        """
        if not self._held:
            self._held = self._lock().acquire()
        return self._held

    def confirm(self) -> bool:
        """Whether the role is still held: False once its connection or lock file is gone.

        A leader calls this between rounds of work and stops working when it returns False.
        """
        if self._held and not self._lock().confirm():
            log.warning("lost the %s lock: another process may lead now", self.role)
            self._lock().release()
            self._held = False
        return self._held

    def release(self) -> None:
        """Gives the role up (a follower may take it at its next try)."""
        if self._backend is not None:
            self._backend.release()
        self._held = False

    def leader(self) -> Leader | None:
        """Who holds the role now (None: nobody, or nobody known).

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database cannot be read (PostgreSQL).
        """
        if self._held:
            return self.me
        return self._lock().holder()

    def _lock(self) -> _PostgresLock | _FileLock:
        if self._backend is None:
            if self.engine.dialect.name == "postgresql":
                self._backend = _PostgresLock(self.engine, self.role, self.me)
            else:
                self._backend = _FileLock(_lock_path(self.engine, self.role), self.me)
        return self._backend


class _PostgresLock:
    """``pg_try_advisory_lock`` on a connection of its own, named after the process."""

    def __init__(self, engine: Engine, role: str, me: Leader) -> None:
        self.role = role
        self.me = me
        self._engine = engine
        # A dedicated connection: a pooled one would be handed to requests and recycled.
        self._dedicated = create_engine(
            engine.url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={
                "connect_timeout": 5,
                "keepalives": 1,
                "keepalives_idle": _KEEPALIVE["idle"],
                "keepalives_interval": _KEEPALIVE["interval"],
                "keepalives_count": _KEEPALIVE["count"],
            },
        )
        self._conn: Connection | None = None
        self._key: int | None = None

    def acquire(self) -> bool:
        conn = self._dedicated.connect()
        try:
            key = self._key_of(conn)
            settings = {f"tcp_keepalives_{name}": str(v) for name, v in _KEEPALIVE.items()}
            settings["application_name"] = _app_name(self.role, self.me)
            for name, value in settings.items():
                conn.execute(text("SELECT set_config(:n, :v, false)"), {"n": name, "v": value})
            got = conn.execute(
                text("SELECT pg_try_advisory_lock(CAST(:c AS integer), CAST(:k AS integer))"),
                {"c": _PG_CLASS, "k": key},
            ).scalar_one()
        except BaseException:
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def confirm(self) -> bool:
        if self._conn is None:
            return False
        try:
            held = self._conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND pid = pg_backend_pid() AND classid::bigint = :c AND objid::bigint = :k"
                    " AND objsubid = 2"
                ),
                {"c": _PG_CLASS, "k": self._key},
            ).scalar_one()
        except Exception as exc:  # the connection is gone, and the lock with its session
            log.warning("the %s lock's connection failed: %s", self.role, exc)
            return False
        return bool(held)

    def release(self) -> None:
        if self._conn is not None:
            # Unlocked at once; closing the session would release it too, a moment later.
            with contextlib.suppress(Exception):
                self._conn.execute(
                    text("SELECT pg_advisory_unlock(CAST(:c AS integer), CAST(:k AS integer))"),
                    {"c": _PG_CLASS, "k": self._key},
                )
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def holder(self) -> Leader | None:
        with self._engine.connect() as conn:
            key = self._key_of(conn)
            name = conn.execute(
                text(
                    "SELECT a.application_name FROM pg_locks l"
                    " JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE l.locktype = 'advisory' AND l.granted"
                    " AND l.database = (SELECT oid FROM pg_database"
                    "   WHERE datname = current_database())"
                    " AND l.classid::bigint = :c AND l.objid::bigint = :k AND l.objsubid = 2"
                ),
                {"c": _PG_CLASS, "k": key},
            ).scalar()
        return None if name is None else _parse_app_name(str(name))

    def _key_of(self, conn: Connection) -> int:
        # Advisory locks are per database: the schema is in the key, so that deployments in
        # several schemas of one database (and parallel test runs) elect separately.
        if self._key is None:
            schema = conn.exec_driver_sql("SELECT current_schema()").scalar()
            self._key = zlib.crc32(f"{schema}/{self.role}".encode()) & 0x7FFFFFFF
        return self._key


class _FileLock:
    """``flock`` on a file beside the SQLite database; the file names the holder."""

    def __init__(self, path: Path | None, me: Leader) -> None:
        self.path = path  # None: an in-memory database, led by its only process
        self.me = me
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self.path is None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(asdict(self.me)).encode(), 0)
        self._fd = fd
        return True

    def confirm(self) -> bool:
        if self.path is None:
            return True
        if self._fd is None:
            return False
        # A lock file deleted (or replaced) under us could be locked anew by another process.
        try:
            return os.stat(self.path).st_ino == os.fstat(self._fd).st_ino
        except OSError:
            return False

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)  # nobody leads until the next holder writes itself
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = None

    def holder(self) -> Leader | None:
        if self.path is None:
            return None
        try:
            found = Leader(**json.loads(self.path.read_text()))
        except (OSError, ValueError, TypeError):
            return None
        if found.host == self.me.host and not _alive(found.pid):
            return None  # a leader that died since; a follower takes over at its next try
        return found


class Elected(BackgroundLoop):
    """Runs ``work`` every ``interval`` seconds in a background thread while this process leads.

    While another process leads, tries to take the role every ``retry`` seconds; while leading,
    confirms the lock every ``retry`` seconds and stops working as soon as it is lost. ``work``
    gets an event set on ``stop``, so that a long round can end early. A failing round is
    logged once until a round succeeds again.

    Example:
        >>> elected = Elected(lock, lambda stop: indexer.sync(stop=stop), interval=0.25, retry=1)
        >>> elected.start()
        >>> elected.stop()
    """

    def __init__(
        self,
        lock: LeaderLock,
        work: Callable[[threading.Event], Any],
        *,
        interval: float,
        retry: float,
    ) -> None:
        self.lock = lock
        self.work = work
        self.interval = interval
        self.retry = retry
        self._failing: str | None = None  # what failed, once logged
        # Stopping ends the work (a round in progress ends early) and gives the role up.
        super().__init__(f"leader-{lock.role}")

    def _run(self) -> None:
        role = self.lock.role
        confirm_at = 0.0
        try:
            while not self._stop.is_set():
                if not self.lock.held:
                    if not self._try(self.lock.acquire, f"trying the {role} lock"):
                        self._stop.wait(self.retry)
                        continue
                    me = self.lock.me
                    log.info("this process leads the %s (pid %d on %s)", role, me.pid, me.host)
                    confirm_at = time.monotonic() + self.retry
                elif time.monotonic() >= confirm_at:
                    if not self.lock.confirm():
                        continue
                    confirm_at = time.monotonic() + self.retry
                self._try(self._round, f"the {role}")
                self._stop.wait(self.interval)
        finally:
            self.lock.release()

    def _round(self) -> bool:
        self.work(self._stop)
        return True

    def _try(self, step: Callable[[], bool], what: str) -> bool:
        try:
            done = step()
        except Exception as exc:  # keep going: the next round may succeed
            if self._failing != what:
                log.warning("%s failed: %s", what, exc)
            self._failing = what
            return False
        if self._failing == what:
            log.info("%s works again", what)
            self._failing = None
        return done


def _lock_path(engine: Engine, role: str) -> Path | None:
    database = engine.url.database
    if not database or database == ":memory:":
        return None
    path = Path(database)
    return path.with_name(f"{path.name}.{role}.leader")


def _app_name(role: str, me: Leader) -> str:
    # application_name is at most 63 bytes, printable ASCII: keep the host's safe characters.
    host = "".join(c for c in me.host if c.isalnum() or c in "-.")
    return f"ql-{role} {me.id} {me.pid} {host}"[:63]


def _parse_app_name(name: str) -> Leader | None:
    parts = name.split(" ", 3)
    if len(parts) != 4 or not parts[0].startswith("ql-") or not parts[2].isdigit():
        return None
    return Leader(parts[1], int(parts[2]), parts[3])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
