"""Consumer sessions (``ledger.services.sessions``): sign-out, sign-out everywhere, revoke-all.

On SQLite and PostgreSQL; a second engine on the same database stands for another API process.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine

from ledger.consent import signin
from ledger.consent.signin import ConsumerToken, InvalidToken, SignInMessage
from ledger.db.engine import DatabaseUnavailable, make_engine, transaction
from ledger.index.tables import CheckpointRow, ConsumerRow
from ledger.schema import migrated_engine
from ledger.services import sessions
from ledger.services.sessions import ConsumerSignOut, RevokedToken, TokenCheckUnavailable

SECRET = b"s" * 32
TTL = 900


def index(engine: Engine, **epochs: int) -> None:
    """Writes what the indexer would: a checkpoint, and the consumers' epochs."""
    with transaction(engine) as session:
        session.merge(
            CheckpointRow(
                id=1,
                contract="0x" + "00" * 20,
                start_block=0,
                block_number=7,
                block_hash="00" * 32,
                block_timestamp=0,
                synced_at=0.0,
            )
        )
        for consumer, epoch in epochs.items():
            session.merge(
                ConsumerRow(
                    consumer=consumer,
                    epoch=epoch,
                    cap_max=0,
                    cap_period=0,
                    link_count=0,
                    block_number=7,
                    log_index=0,
                    tx_hash="0x" + "00" * 32,
                )
            )


def token(consumer: str, *, epoch: int = 0, at: datetime | None = None) -> str:
    issued = at or datetime.now(UTC)
    return signin.issue_token(
        consumer, issued + timedelta(seconds=TTL), SECRET, epoch=epoch, issued_at=issued
    )


def verify(engine: Engine, issued: str, now: datetime | None = None) -> ConsumerToken:
    return sessions.verify(engine=engine, token=issued, secret=SECRET, now=now)


def other_process(engine: Engine) -> Engine:
    """Another engine on the same database: what a second API process holds."""
    return make_engine(engine.url.render_as_string(hide_password=False))


def rows(engine: Engine) -> tuple[int, int]:
    with transaction(engine) as session:
        revoked = session.execute(select(func.count()).select_from(RevokedToken)).scalar_one()
        everywhere = session.execute(select(func.count()).select_from(ConsumerSignOut)).scalar_one()
    return int(revoked), int(everywhere)


@pytest.fixture
def engine(db_engine: Engine) -> Engine:
    index(db_engine)
    return db_engine


def test_a_signed_out_token_is_refused_in_every_process_and_the_others_still_work(
    engine: Engine,
) -> None:
    consumer, stranger = Account.create().address, Account.create().address
    laptop, phone, theirs = token(consumer), token(consumer), token(stranger)
    second = other_process(engine)
    try:
        assert verify(second, laptop).consumer == consumer  # the other process accepts it
        sessions.sign_out(engine=engine, token=verify(engine, laptop))
        for process in (engine, second):
            with pytest.raises(InvalidToken, match="signed out"):
                verify(process, laptop)
            assert verify(process, phone).consumer == consumer
            assert verify(process, theirs).consumer == stranger
    finally:
        second.dispose()


def test_signing_out_twice_at_once_is_one_sign_out(engine: Engine) -> None:
    claims = verify(engine, token(Account.create().address))
    start = threading.Barrier(4)
    failures: list[Exception] = []

    def sign_out() -> None:
        start.wait()
        try:
            sessions.sign_out(engine=engine, token=claims)
        except Exception as exc:  # collected: the assertion below shows them all
            failures.append(exc)

    threads = [threading.Thread(target=sign_out) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert rows(engine) == (1, 0)


def test_signing_out_everywhere_ends_every_token_issued_before_and_none_after(
    engine: Engine,
) -> None:
    consumer, stranger = Account.create().address, Account.create().address
    now = datetime.now(UTC)
    earlier = [token(consumer, at=now - timedelta(minutes=m)) for m in (0, 1, 14)]
    theirs = token(stranger, at=now)
    second = other_process(engine)
    try:
        sessions.sign_out_everywhere(engine=engine, consumer=consumer, ttl=TTL, now=now)
        for process in (engine, second):
            for issued in earlier:
                with pytest.raises(InvalidToken, match="signed out everywhere"):
                    verify(process, issued)
            assert verify(process, theirs).consumer == stranger
            later = token(consumer, at=now + timedelta(milliseconds=1))
            assert verify(process, later).consumer == consumer
        # Again, later: it moves forward, and the later token is ended too.
        again = now + timedelta(seconds=5)
        sessions.sign_out_everywhere(engine=second, consumer=consumer, ttl=TTL, now=again)
        with pytest.raises(InvalidToken, match="signed out everywhere"):
            verify(engine, token(consumer, at=now + timedelta(seconds=1)))
        assert rows(engine) == (0, 1)
    finally:
        second.dispose()


def test_a_token_of_an_older_epoch_is_refused_with_no_write(engine: Engine) -> None:
    consumer = Account.create().address
    before = token(consumer, epoch=0)
    assert verify(engine, before).consumer == consumer
    index(engine, **{consumer: 1})  # the indexer saw the consumer's revoke-all
    with pytest.raises(InvalidToken, match="epoch 0, the consumer's epoch is now 1"):
        verify(engine, before)
    assert verify(engine, token(consumer, epoch=1)).epoch == 1
    # An epoch the index has not reached (a rolled-back block) is refused as well.
    with pytest.raises(InvalidToken, match="epoch 2"):
        verify(engine, token(consumer, epoch=2))
    assert rows(engine) == (0, 0)


def test_sign_in_binds_the_token_to_the_indexed_epoch(engine: Engine) -> None:
    account = Account.create()
    index(engine, **{account.address: 4})
    now = datetime.now(UTC)
    message = SignInMessage(
        domain="127.0.0.1:8000",
        address=account.address,
        uri="http://127.0.0.1:8000",
        chain_id=31337,
        nonce=signin.new_nonce(engine),
        issued_at=now,
    ).text()
    signature = bytes(account.sign_message(encode_defunct(text=message)).signature)
    issued, consumer, _ = sessions.sign_in(
        engine=engine,
        text=message,
        signature=signature,
        domain="127.0.0.1:8000",
        uri="http://127.0.0.1:8000",
        chain_id=31337,
        secret=SECRET,
        ttl=TTL,
        now=now,
    )
    assert consumer == account.address
    assert verify(engine, issued).epoch == 4


def test_expired_sign_outs_are_deleted(engine: Engine) -> None:
    now = datetime.now(UTC)
    old = Account.create().address
    stale = verify(engine, token(old, at=now - timedelta(seconds=TTL - 1)))
    sessions.sign_out(engine=engine, token=stale, now=now)
    sessions.sign_out_everywhere(engine=engine, consumer=old, ttl=TTL, now=now)
    live = verify(engine, token(Account.create().address))
    sessions.sign_out(engine=engine, token=live, now=now)
    assert rows(engine) == (2, 1)
    # Once the stale token has expired its row goes; the live one's stays.
    assert sessions.purge(engine=engine, now=now + timedelta(seconds=2)) == 1
    assert rows(engine) == (1, 1)
    # Every sign-out purges on its way: past every token's life, only the new row is left.
    late = now + timedelta(seconds=TTL + 2)
    fresh = verify(engine, token(Account.create().address, at=late), now=late)
    sessions.sign_out(engine=engine, token=fresh, now=late)
    assert rows(engine) == (1, 0)


def test_an_index_that_holds_nothing_refuses_tokens_and_sign_ins(db_engine: Engine) -> None:
    consumer = Account.create().address
    with pytest.raises(TokenCheckUnavailable, match="index holds nothing"):
        verify(db_engine, token(consumer))
    with pytest.raises(TokenCheckUnavailable, match="index holds nothing"):
        sessions.current_epoch(engine=db_engine, consumer=consumer)


@pytest.mark.parametrize("table", ["revoked_token", "consumer_sign_out", "ix_consumer"])
def test_a_table_that_cannot_be_read_refuses_the_token(tmp_path: Path, table: str) -> None:
    # SQLite says so with the error of a locked or damaged file (OperationalError).
    engine = migrated_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    index(engine)
    issued = token(Account.create().address)
    verify(engine, issued)
    with engine.begin() as conn:
        conn.execute(text(f"DROP TABLE {table}"))
    with pytest.raises(DatabaseUnavailable):
        verify(engine, issued)


def test_an_unreachable_database_refuses_the_token() -> None:
    nowhere = make_engine("postgresql+psycopg://nobody@127.0.0.1:9/none?connect_timeout=1")
    with pytest.raises(DatabaseUnavailable):
        verify(nowhere, token(Account.create().address))
