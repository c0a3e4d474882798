"""The storage guarantees on PostgreSQL: append-only log, exact atomic consumption."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy.exc import DatabaseError

from ledger.audit.verify import verify_chain
from ledger.db.engine import transaction
from ledger.domain.channels import Channel
from ledger.runtime import Ledger
from ledger.settings import Settings
from ledger.usage import log as usage_log
from ledger.usage.entries import UsageEntryBase
from tests.helpers import PHONE, grant, link, sms_terms
from tests.servers import postgres_url


@pytest.fixture
def pg_ledger(tmp_path: Path) -> Iterator[Ledger]:
    for url in postgres_url():
        ledger = Ledger.open(Settings(chain="memory", data_dir=tmp_path, database_url=url))  # type: ignore[arg-type]
        yield ledger
        ledger.engine.dispose()


def test_the_log_refuses_update_delete_and_truncate(pg_ledger: Ledger) -> None:
    entry = UsageEntryBase(
        at=1, company_id=1, contact="ab", channel=1, decision="allowed", reasons="[]"
    )
    with transaction(pg_ledger.engine) as s:
        usage_log.append(s, entry)
    for statement in (
        "UPDATE usage_entry SET at = 2",
        "DELETE FROM usage_entry",
        "TRUNCATE usage_entry",
    ):
        with pytest.raises(DatabaseError, match="append-only"), pg_ledger.engine.begin() as conn:
            conn.exec_driver_sql(statement)
    with transaction(pg_ledger.engine) as s:
        assert usage_log.size(s) == 1


def test_concurrent_check_and_record_allows_exactly_the_quota(pg_ledger: Ledger) -> None:
    pg_ledger.relayer.register_company(1, "Acme SMS", pg_ledger.chain.operator.address)
    consumer: LocalAccount = Account.create()
    link(pg_ledger, consumer.address, PHONE)
    grant(pg_ledger, consumer, sms_terms(max_contacts=4))

    def record(_: int) -> bool:
        result = pg_ledger.checker.check(
            company_id=1, contact=PHONE, channel=Channel.SMS, record=True
        )
        return result.decision.allowed

    with ThreadPoolExecutor(max_workers=32) as pool:
        allowed = list(pool.map(record, range(200)))
    assert sum(allowed) == 4
    with transaction(pg_ledger.engine) as s:
        assert usage_log.size(s) == 200
        assert verify_chain(s) is None
