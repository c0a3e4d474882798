"""Idempotency keys commit with the usage entry they answer for, or not at all."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.engine import Connection, Engine
from sqlmodel import select

from ledger.audit.verify import verify_chain
from ledger.db.engine import transaction
from ledger.domain.channels import Channel
from ledger.services.checks import Checker, CheckResult
from ledger.usage import idempotency
from ledger.usage import log as usage_log
from ledger.usage.idempotency import IdempotencyConflict, IdempotentRequest, Seal
from tests.services.test_processes import QUOTA, FixedState

BODY = {"contact": "+33612345678", "channel": "sms", "record": True}


class Crash(Exception):
    """Stands for a kill between the key's insert and the commit: the transaction never ends."""


@pytest.fixture
def checker(db_engine: Engine) -> Checker:
    return Checker(state=FixedState(), engine=db_engine, salt=b"s", default_region="FR")


def answer(result: CheckResult) -> dict[str, Any]:
    assert result.receipt is not None
    return {"allowed": result.decision.allowed, "seq": result.receipt.seq}


def recording(
    checker: Checker, after_seal: Callable[[], None] = lambda: None
) -> Callable[[Seal], dict[str, Any]]:
    """A check-and-record whose answer is sealed with its entry (as the route does)."""

    def run(seal: Seal) -> dict[str, Any]:
        def on_record(conn: Connection, result: CheckResult) -> None:
            seal(conn, answer(result))
            after_seal()

        return answer(
            checker.check(
                company_id=1,
                contact=BODY["contact"],
                channel=Channel.SMS,
                record=True,
                on_record=on_record,
            )
        )

    return run


def run_once(checker: Checker, key: str, run: Callable[[Seal], dict[str, Any]]) -> Any:
    return idempotency.run_once(
        checker.engine, company_id=1, key=key, body=BODY, records=True, run=run
    )


def rows(engine: Engine) -> tuple[int, list[IdempotentRequest]]:
    with transaction(engine) as session:
        return usage_log.size(session), list(session.exec(select(IdempotentRequest)).all())


def test_the_key_and_its_entry_commit_together_or_not_at_all(checker: Checker) -> None:
    def crash() -> None:
        raise Crash

    with pytest.raises(Crash):
        run_once(checker, "order-1", recording(checker, after_seal=crash))
    assert rows(checker.engine) == (0, [])  # the key was written, then rolled back with the entry

    first, replayed = run_once(checker, "order-1", recording(checker))
    assert (first, replayed) == ({"allowed": True, "seq": 1}, False)
    entries, keys = rows(checker.engine)
    assert entries == 1
    assert [(k.key, k.response) for k in keys] == [("order-1", '{"allowed": true, "seq": 1}')]

    again = run_once(checker, "order-1", recording(checker))
    assert again == (first, True)
    assert rows(checker.engine)[0] == 1


def test_concurrent_requests_with_one_key_record_once_and_answer_alike(checker: Checker) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda _: run_once(checker, "k", recording(checker)), range(16)))
    assert {str(a) for a, _ in outcomes} == {str({"allowed": True, "seq": 1})}
    assert sorted(replayed for _, replayed in outcomes) == [False] + [True] * 15
    assert rows(checker.engine)[0] == 1


def test_many_keys_at_once_consume_exactly_the_quota(checker: Checker) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(
            pool.map(lambda i: run_once(checker, f"k{i}", recording(checker)), range(20))
        )
    assert sum(a["allowed"] for a, _ in outcomes) == QUOTA
    assert sorted(a["seq"] for a, _ in outcomes) == list(range(1, 21))
    with transaction(checker.engine) as session:
        assert verify_chain(session) is None


def test_an_answer_that_recorded_nothing_is_not_kept(checker: Checker) -> None:
    calls: list[int] = []

    def unavailable(seal: Seal) -> dict[str, Any]:
        calls.append(1)
        return {"allowed": False, "code": "database_unavailable"}  # nothing sealed

    assert run_once(checker, "k", unavailable) == (
        {"allowed": False, "code": "database_unavailable"},
        False,
    )
    assert rows(checker.engine) == (0, [])
    assert run_once(checker, "k", recording(checker)) == ({"allowed": True, "seq": 1}, False)


def test_a_check_that_records_nothing_keeps_its_answer_on_its_own(checker: Checker) -> None:
    body = {**BODY, "record": False}

    def read(seal: Seal) -> dict[str, Any]:
        return {"allowed": True}

    for replayed in (False, True):
        assert idempotency.run_once(
            checker.engine, company_id=1, key="r", body=body, records=False, run=read
        ) == ({"allowed": True}, replayed)
    with pytest.raises(IdempotencyConflict, match="different request"):
        run_once(checker, "r", recording(checker))


def test_a_claim_left_by_an_earlier_release_is_a_conflict(checker: Checker) -> None:
    with transaction(checker.engine) as session:
        session.add(
            IdempotentRequest(
                company_id=1,
                key="old",
                fingerprint=idempotency.fingerprint(BODY),
                created_at=datetime.now(UTC),
            )
        )
    with pytest.raises(IdempotencyConflict, match="earlier release"):
        run_once(checker, "old", recording(checker))
    assert rows(checker.engine)[0] == 0
