"""The running service verifying its own usage log: the issue's scenario (an allowed entry
edited to `refused` in the database, then a 5th contact on a quota of 4) is refused with
`usage_log_corrupt` and health fails; a log cut or rewritten under a verified head is refused
at the next append; a clean log keeps answering."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from ledger.audit.integrity import LogIntegrity, UsageLogCorrupt
from ledger.db.engine import transaction
from ledger.runtime import Ledger
from ledger.usage import log as usage_log
from ledger.usage.entries import UsageEntryBase
from ledger.usage.hashing import canonical, leaf_hash
from tests.helpers import PHONE, grant, sms_terms

CHECK = {"contact": PHONE, "channel": "sms", "record": True}


def wait_until(condition: Callable[[], bool], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.05)


def unguard(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER usage_entry_no_update")
        conn.exec_driver_sql("DROP TRIGGER usage_entry_no_delete")


def entry(at: int) -> UsageEntryBase:
    return UsageEntryBase(
        at=at, company_id=1, contact="ab" * 32, channel=1, decision="allowed", reasons="[]"
    )


def append(engine: Engine, count: int) -> None:
    with transaction(engine) as session:
        for i in range(count):
            usage_log.append(session, entry(i))


def test_an_edited_entry_fails_health_and_every_check_closed(
    client: TestClient,
    ledger: Ledger,
    company_auth: dict[str, str],
    consumer: LocalAccount,
    linked: str,
) -> None:
    grant(ledger, consumer, sms_terms(max_contacts=4))
    for _ in range(4):
        assert client.post("/v1/checks", json=CHECK, headers=company_auth).json()["allowed"]
    wait_until(lambda: ledger.integrity.verified == 4)
    assert client.get("/v1/health").json()["usage_log"]["status"] == "ok"
    # The issue: an allowed entry edited to `refused`, its stored hash left as it was.
    unguard(ledger.engine)
    with ledger.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE usage_entry SET decision = 'refused' WHERE seq = 2")
    wait_until(lambda: client.get("/v1/health").status_code == 503)
    health = client.get("/v1/health").json()
    assert health["status"] == "failed"
    assert health["usage_log"]["code"] == "usage_log_corrupt"
    assert health["usage_log"]["seq"] == 2
    # The 5th contact on a quota of 4 is refused, naming why, and nothing is recorded.
    fifth = client.post("/v1/checks", json=CHECK, headers=company_auth).json()
    assert fifth["allowed"] is False
    assert [r["code"] for r in fifth["reasons"]] == ["usage_log_corrupt"]
    assert fifth["receipt"] is None
    batch = client.post(
        "/v1/checks/batch",
        json={"items": [{"contact": PHONE, "channel": "sms"}], "record": True},
        headers=company_auth,
    ).json()
    assert batch["results"][0]["result"]["reasons"][0]["code"] == "usage_log_corrupt"
    scrub = client.post(
        "/v1/scrub?channel=sms&column=0",
        content=PHONE.encode() + b"\n",
        headers={**company_auth, "Content-Type": "text/csv"},
    )
    assert "usage_log_corrupt" in scrub.text
    with transaction(ledger.engine) as session:
        assert usage_log.size(session) == 4


def test_a_clean_log_stays_ok_while_checks_record(
    client: TestClient,
    ledger: Ledger,
    company_auth: dict[str, str],
    consumer: LocalAccount,
    linked: str,
) -> None:
    grant(ledger, consumer, sms_terms(max_contacts=10))
    for _ in range(6):
        assert client.post("/v1/checks", json=CHECK, headers=company_auth).json()["allowed"]
    wait_until(lambda: ledger.integrity.verified == 6)
    health = client.get("/v1/health").json()
    assert health["status"] == "ok" and health["usage_log"]["status"] == "ok"
    assert ledger.integrity.corruption is None


@pytest.mark.parametrize(
    ("statement", "seq", "kind"),
    [
        ("DELETE FROM usage_entry WHERE seq > 3", 4, "deleted"),
        ("UPDATE usage_entry SET entry_hash = '{fake}' WHERE seq = 5", 5, "edited"),
    ],
)
def test_a_head_changed_under_a_verified_seq_refuses_the_next_append(
    ledger: Ledger, statement: str, seq: int, kind: str
) -> None:
    integrity = LogIntegrity(ledger.engine)  # no background walk: the append alone finds it
    integrity.watch()
    append(ledger.engine, 5)
    assert integrity.walk() is None and integrity.verified == 5
    unguard(ledger.engine)
    with ledger.engine.begin() as conn:
        conn.exec_driver_sql(statement.format(fake="ee" * 32))
    with pytest.raises(UsageLogCorrupt) as refused, transaction(ledger.engine) as session:
        usage_log.append(session, entry(99))
    assert refused.value.seq == seq and refused.value.code == "usage_log_corrupt"
    assert integrity.corruption is not None and integrity.corruption.kind == kind


def test_a_tail_cut_under_this_processs_own_appends_is_refused_without_a_walk(
    ledger: Ledger,
) -> None:
    integrity = LogIntegrity(ledger.engine)
    integrity.watch()
    append(ledger.engine, 5)  # each append sees the one before it committed: 4 is known
    unguard(ledger.engine)
    with ledger.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM usage_entry WHERE seq >= 4")
    with pytest.raises(UsageLogCorrupt) as refused, transaction(ledger.engine) as session:
        usage_log.append(session, entry(99))
    assert refused.value.seq == 4


def test_a_rolled_back_append_is_not_taken_for_a_truncation(ledger: Ledger) -> None:
    integrity = LogIntegrity(ledger.engine)
    integrity.watch()
    append(ledger.engine, 2)
    with pytest.raises(RuntimeError), transaction(ledger.engine) as session:
        usage_log.append(session, entry(3))
        raise RuntimeError("the request failed after appending: its transaction rolls back")
    append(ledger.engine, 2)
    assert integrity.walk() is None and integrity.verified == 4


def test_the_rescan_finds_an_old_entry_edited_in_place(ledger: Ledger) -> None:
    integrity = LogIntegrity(ledger.engine, rescan_rows=3)
    append(ledger.engine, 10)
    assert integrity.walk() is None  # entries 1..10 walked, 1..3 re-read
    unguard(ledger.engine)
    with ledger.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE usage_entry SET at = 7777 WHERE seq = 8")
    found = None
    for _ in range(5):  # a few rounds of 3 older entries reach entry 8
        found = integrity.walk()
        if found is not None:
            break
    assert found is not None and (found.seq, found.kind) == (8, "edited")


def test_an_entry_rehashed_in_place_breaks_the_link_to_the_next(ledger: Ledger) -> None:
    integrity = LogIntegrity(ledger.engine)
    append(ledger.engine, 4)
    assert integrity.walk() is None
    unguard(ledger.engine)
    with ledger.engine.begin() as conn:
        row = dict(conn.exec_driver_sql("SELECT * FROM usage_entry WHERE seq = 2").mappings().one())
        row["decision"] = "refused"
        fields = {k: v for k, v in row.items() if k not in ("seq", "prev_hash", "entry_hash")}
        rehashed = leaf_hash(canonical(fields, seq=2, prev_hash=row["prev_hash"]))
        conn.exec_driver_sql(
            "UPDATE usage_entry SET decision = 'refused', entry_hash = ? WHERE seq = 2",
            (rehashed,),
        )
    found = integrity.walk()
    assert found is not None and (found.seq, found.kind) == (3, "chain_broken")


def test_the_walk_follows_the_log_round_after_round(ledger: Ledger) -> None:
    integrity = LogIntegrity(ledger.engine, rescan_rows=2)
    for count in (3, 2, 3, 1):  # odd sizes: the walk resumes mid-tree each round
        append(ledger.engine, count)
        assert integrity.walk() is None
    assert integrity.verified == 9 and integrity.corruption is None
