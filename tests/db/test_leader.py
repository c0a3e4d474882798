"""Leader election on SQLite (a file lock) and PostgreSQL (an advisory lock): one holder, who it
is, handed over on release, on a lost connection and on the holder's death (kill -9)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from ledger.db.leader import Elected, LeaderLock
from tests.servers import postgres_url


def test_one_lock_of_two_is_held_and_both_name_its_holder(db_engine: Engine) -> None:
    first, second = LeaderLock(db_engine, "indexer"), LeaderLock(db_engine, "indexer")
    try:
        assert first.acquire() and first.held
        assert not second.acquire() and not second.held
        assert first.leader() == second.leader() == first.me
        assert first.me.pid == os.getpid() and first.me.id != second.me.id
        assert first.confirm() and not second.confirm()
        # Another role is another lock.
        anchorer = LeaderLock(db_engine, "anchorer")
        assert anchorer.acquire()
        anchorer.release()

        first.release()
        assert second.leader() is None  # nobody, until the next one takes it
        assert second.acquire()
        assert first.leader() == second.me
    finally:
        first.release()
        second.release()


def test_an_in_memory_database_is_led_by_its_only_process() -> None:
    lock = LeaderLock(create_engine("sqlite://"), "indexer")
    assert lock.acquire() and lock.confirm() and lock.leader() == lock.me


@pytest.fixture
def pg_engine() -> Iterator[Engine]:
    for url in postgres_url():
        engine = create_engine(url)
        yield engine
        engine.dispose()


def test_a_lost_postgres_session_loses_the_lead(pg_engine: Engine) -> None:
    lock, other = LeaderLock(pg_engine, "indexer"), LeaderLock(pg_engine, "indexer")
    assert lock.acquire()
    with pg_engine.connect() as conn:  # an operator, or a failover, ends the session
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name"
                " LIKE :name"
            ),
            {"name": f"ql-indexer {lock.me.id} %"},
        )
        conn.commit()
    assert not lock.confirm() and not lock.held
    assert other.acquire()
    other.release()


def test_a_deleted_lock_file_loses_the_lead(tmp_path: Path) -> None:
    lock = LeaderLock(create_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}"), "indexer")
    assert lock.acquire()
    (tmp_path / "db.sqlite3.indexer.leader").unlink()  # another process could lock a new one
    assert not lock.confirm() and not lock.held
    lock.release()


HOLDER = """
import sys, time
from sqlalchemy import create_engine
from ledger.db.leader import LeaderLock
lock = LeaderLock(create_engine(sys.argv[1]), "indexer")
assert lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_the_lead_moves_when_its_holder_is_killed(db_engine: Engine) -> None:
    url = db_engine.url.render_as_string(hide_password=False)
    lock = LeaderLock(db_engine, "indexer")
    with subprocess.Popen([sys.executable, "-c", HOLDER, url], stdout=subprocess.PIPE) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
            leader = lock.leader()
            assert leader is not None and leader.pid == holder.pid
            assert not lock.acquire()
        finally:
            holder.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 5
    while not lock.acquire():  # the kernel or the server releases the dead holder's lock
        assert time.monotonic() < deadline
        time.sleep(0.05)
    lock.release()


def test_only_the_leader_works_and_a_follower_takes_over_when_it_stops(
    db_engine: Engine,
) -> None:
    rounds = {"first": 0, "second": 0}

    def work(name: str) -> Elected:
        def count(stop: threading.Event) -> None:
            rounds[name] += 1

        lock = LeaderLock(db_engine, "indexer")
        return Elected(lock, count, interval=0.01, retry=0.05)

    first, second = work("first"), work("second")
    with first:
        deadline = time.monotonic() + 5
        while rounds["first"] < 3:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        second.start()
        time.sleep(0.3)
        assert rounds["second"] == 0
    try:
        deadline = time.monotonic() + 5
        while rounds["second"] == 0:  # the first gave the role up on stop
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        second.stop()
    assert not first.lock.held and not second.lock.held
