"""API keys: the per-process cache of what was read, and how soon a revocation is seen."""

from __future__ import annotations

import time

import pytest
from sqlalchemy.engine import Engine

from ledger.db.engine import make_engine
from ledger.services import apikeys
from ledger.services.apikeys import InvalidApiKey, Role


def another_process(engine: Engine) -> Engine:
    """An engine of its own on the same database, as another API process or the CLI has."""
    return make_engine(engine.url.render_as_string(hide_password=False))


def test_a_known_key_is_answered_from_memory_within_max_age(db_engine: Engine) -> None:
    token, record = apikeys.create_key(db_engine, role=Role.COMPANY, company_id=7)
    assert apikeys.cached(db_engine, token, max_age=60) is None  # never read here yet
    principal = apikeys.authenticate(db_engine, token, max_age=60)
    assert (principal.key_id, principal.role, principal.company_id) == (
        record.id,
        Role.COMPANY,
        7,
    )
    assert apikeys.cached(db_engine, token, max_age=60) == principal
    assert apikeys.cached(db_engine, token, max_age=0) is None  # too old for no cache at all


def test_a_wrong_secret_is_refused_from_memory_too(db_engine: Engine) -> None:
    token, _ = apikeys.create_key(db_engine, role=Role.OPERATOR)
    apikeys.authenticate(db_engine, token, max_age=60)
    with pytest.raises(InvalidApiKey):
        apikeys.cached(db_engine, token[:-1] + ("A" if token[-1] != "A" else "B"), max_age=60)
    with pytest.raises(InvalidApiKey):
        apikeys.authenticate(db_engine, "qlk_nosuchkey_secret", max_age=60)
    with pytest.raises(InvalidApiKey):
        apikeys.cached(db_engine, "not-a-key", max_age=60)


def test_a_key_revoked_by_this_process_is_refused_at_once(db_engine: Engine) -> None:
    token, record = apikeys.create_key(db_engine, role=Role.COMPANY, company_id=1)
    apikeys.authenticate(db_engine, token, max_age=60)
    apikeys.revoke_key(db_engine, record.id)
    with pytest.raises(InvalidApiKey):
        apikeys.authenticate(db_engine, token, max_age=60)


def test_a_key_revoked_by_another_process_is_refused_once_max_age_passed(
    db_engine: Engine,
) -> None:
    token, record = apikeys.create_key(db_engine, role=Role.COMPANY, company_id=1)
    max_age = 0.5
    apikeys.authenticate(db_engine, token, max_age=max_age)
    other = another_process(db_engine)
    try:
        apikeys.revoke_key(other, record.id)
    finally:
        other.dispose()
    # Within max_age this process may still accept it, never after.
    time.sleep(max_age)
    with pytest.raises(InvalidApiKey):
        apikeys.authenticate(db_engine, token, max_age=max_age)
    with pytest.raises(InvalidApiKey):  # and a revoked key stays refused from memory
        apikeys.authenticate(db_engine, token, max_age=60)


def test_without_max_age_every_request_reads_the_key(db_engine: Engine) -> None:
    token, record = apikeys.create_key(db_engine, role=Role.COMPANY, company_id=1)
    apikeys.authenticate(db_engine, token)
    other = another_process(db_engine)
    try:
        apikeys.revoke_key(other, record.id)
    finally:
        other.dispose()
    with pytest.raises(InvalidApiKey):
        apikeys.authenticate(db_engine, token)
