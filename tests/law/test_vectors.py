"""The legal test vectors (``vectors.yaml``): each row is one contact, its history and the answer
the law gives (/work/shared/LAW.md); and a property: a revocation is never overridden."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.domain.bases import DECLARABLE, BasisKind, Declared
from ledger.domain.channels import Channel
from ledger.domain.decision import OppositionStatus, Snapshot, decide
from ledger.domain.grants import ALL_DAYS, ALL_HOURS, OPEN_ENDED, CompanyStatus, GrantRecord
from ledger.domain.law import registry
from ledger.domain.state import CompanyRecord, ConsumerRecord

DAY = 86400
CONSUMER = "0x" + "22" * 20
COMPANIES = {
    "active": CompanyRecord("0x" + "11" * 20, CompanyStatus.ACTIVE),
    "suspended": CompanyRecord("0x" + "11" * 20, CompanyStatus.SUSPENDED),
    "unknown": CompanyRecord("0x" + "00" * 20, CompanyStatus.NONE),
}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ROW_KEYS = {
    "id", "why", "region", "time_zone", "channel", "local_time", "utc", "linked", "grant",
    "revoked", "consumer_epoch", "grant_contacts", "company_contacts", "last_refusal_days_ago",
    "list", "company_dnc", "declared", "company", "allowed", "code", "rule", "known_bug",
}  # fmt: skip

ROWS: list[dict[str, Any]] = yaml.safe_load(
    (Path(__file__).with_name("vectors.yaml")).read_text(encoding="utf-8")
)


def instant(text: str) -> int:
    """Unix seconds of an ISO 8601 time that names its offset (a wall clock alone is ambiguous)."""
    moment = datetime.fromisoformat(text)
    assert moment.tzinfo is not None, f"{text} has no UTC offset"
    return int(moment.timestamp())


def _mask(spans: list[list[int]] | None) -> int:
    """Hour mask of [start, end) spans of local hours."""
    if spans is None:
        return ALL_HOURS
    return sum(1 << h for start, end in spans for h in range(start, end))


def _days_mask(days: list[str] | None) -> int:
    return ALL_DAYS if days is None else sum(1 << WEEKDAYS.index(d) for d in days)


def _grant(row: dict[str, Any], now: int, epoch: int) -> GrantRecord | None:
    """The grant as the ledger reads it: a zero record when never set, like the contract's."""
    if not row.get("linked", False):
        assert row.get("grant") is None and row.get("revoked") is None, "an unlinked number"
        return None
    spec: dict[str, Any] | None = row.get("grant")
    revoked = row.get("revoked")
    if spec is None:
        if revoked == "grant":
            spec = {}
        else:  # never granted (a revoke-all is then read from the consumer's epoch)
            return GrantRecord(0, 0, 0, 0, 0, 0, 0, 0, False)
    period = int(spec.get("period_days", 30) * DAY)
    valid_from = spec.get("valid_from_days")
    valid_until = spec.get("valid_until_days")
    version = int(spec.get("version", 1))
    if revoked == "grant":  # revokeGrant zeroes the quota; the version stays
        return GrantRecord(0, period, 0, OPEN_ENDED, ALL_HOURS, ALL_DAYS, version, epoch, False)
    max_contacts = int(spec.get("max_contacts", 10))
    # A grant set before a revoke-all keeps an older epoch; the contract's isGrantActive.
    grant_epoch = int(spec.get("epoch", epoch - 1 if revoked == "all" else epoch))
    active = spec.get("active", max_contacts != 0 and grant_epoch == epoch)
    return GrantRecord(
        max_contacts=max_contacts,
        period=period,
        valid_from=0 if valid_from is None else now + int(valid_from * DAY),
        valid_until=OPEN_ENDED if valid_until is None else now + int(valid_until * DAY),
        hours_mask=_mask(spec.get("hours")),
        days_mask=_days_mask(spec.get("days")),
        version=version,
        epoch=grant_epoch,
        active=bool(active),
    )


def _opposition(row: dict[str, Any], now: int) -> OppositionStatus:
    national = row.get("list")
    company = bool(row.get("company_dnc", False))
    fetched_at = max_age = None
    if national is not None:
        if "fetched_at" in national:
            fetched_at = instant(national["fetched_at"])
        else:
            fetched_at = now - int(national.get("age_days", 1)) * DAY
        if "max_age_days" in national:
            max_age = int(national["max_age_days"]) * DAY
    return OppositionStatus(
        version=None if national is None else "NATIONAL-1",
        listed=bool(national and national.get("listed", False)),
        fetched_at=fetched_at,
        max_age=max_age,
        company_version="COMPANY-1" if company else None,
        company_listed=company,
    )


def _declared(spec: dict[str, Any] | None, now: int) -> Declared | None:
    if spec is None:
        return None

    def ago(key: str) -> int | None:
        days = spec.get(key)
        return None if days is None else now - int(days * DAY)

    ends = spec.get("contract_ends_in_days")
    minutes = spec.get("appointment_minutes_ago")
    return Declared(
        BasisKind(spec["kind"]),
        contract_reference=spec.get("contract_reference"),
        subject=spec.get("subject"),
        contract_ends_at=None if ends is None else now + int(ends * DAY),
        last_purchase_at=ago("last_purchase_days_ago"),
        inquiry_at=ago("inquiry_days_ago"),
        existing_customer=bool(spec.get("existing_customer", False)),
        similar_products=bool(spec.get("similar_products", False)),
        opt_out_offered=bool(spec.get("opt_out_offered", False)),
        appointment_at=None if minutes is None else now - int(minutes * 60),
    )


def snapshot(row: dict[str, Any]) -> Snapshot:
    """The snapshot a check would read for the row's contact and history."""
    unknown = set(row) - ROW_KEYS
    assert not unknown, f"unknown fields {unknown}"
    now = instant(row["local_time"] if "local_time" in row else row["utc"])
    epoch = int(row.get("consumer_epoch", 0))
    if row.get("revoked") == "all":
        epoch = max(epoch, 1)
    linked = bool(row.get("linked", False))
    grant = _grant(row, now, epoch)
    refusal = row.get("last_refusal_days_ago")
    return Snapshot(
        now=now,
        company_id=1,
        company=COMPANIES[row.get("company", "active")],
        channel=Channel.parse(row["channel"]),
        region=row["region"],
        time_zone=row["time_zone"],
        consumer=CONSUMER if linked else None,
        grant=grant,
        consumer_record=ConsumerRecord(epoch, 0, 0, 1) if linked else None,
        block_number=1,
        window=sorted(now - int(d * DAY) for d in row.get("grant_contacts", [])),
        opposition=_opposition(row, now),
        declared=_declared(row.get("declared"), now),
        company_contacts=sorted(now - int(d * DAY) for d in row.get("company_contacts", [])),
        last_refusal_at=None if refusal is None else now - int(refusal * DAY),
    )


def _param(row: dict[str, Any]) -> Any:
    marks = ()
    if row.get("known_bug"):
        marks = (pytest.mark.xfail(strict=True, reason=row["known_bug"]),)
    return pytest.param(row, id=row["id"], marks=marks)


@pytest.mark.parametrize("row", [_param(row) for row in ROWS])
def test_vector(row: dict[str, Any]) -> None:
    decision = decide(snapshot(row))
    got = (decision.allowed, decision.codes, decision.rules)
    assert decision.allowed is row["allowed"], (row["why"], got)
    assert row["code"] in decision.codes, (row["why"], got)
    if row.get("rule") is not None:
        assert row["rule"] in decision.rules, (row["why"], got)


def test_the_table_is_large_and_ids_are_unique() -> None:
    ids = [row["id"] for row in ROWS]
    assert len(ids) >= 100
    assert len(set(ids)) == len(ids)
    assert all(row.get("why") for row in ROWS)


def test_every_rule_of_law_has_a_vector() -> None:
    covered = {row.get("rule") for row in ROWS}
    assert {rule.id for rule in registry.EVERY_RULE} <= covered


# ----- property: a revocation is never overridden -----

ZONES = {
    "FR": ("Europe/Paris", None),
    "RE": ("Indian/Reunion", None),
    "US": ("America/New_York", "America/Los_Angeles", "Pacific/Honolulu", None),
    "GB": ("Europe/London", None),
    "DE": ("Europe/Berlin", None),
}
START = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp())
END = int(datetime(2028, 1, 1, tzinfo=UTC).timestamp())
times_before = st.integers(min_value=0, max_value=400 * DAY)


@st.composite
def revoked_snapshots(draw: st.DrawFn) -> Snapshot:
    """Any history in which this company's grant on this channel is revoked, or the consumer
    revoked everything and set no grant for this company and channel since."""
    region = draw(st.sampled_from(sorted(ZONES)))
    now = draw(st.integers(min_value=START, max_value=END))
    epoch = draw(st.integers(min_value=0, max_value=5))
    period = draw(st.integers(min_value=1, max_value=400 * DAY))
    valid_from = draw(st.integers(min_value=0, max_value=END))
    valid_until = draw(st.integers(min_value=valid_from + 1, max_value=OPEN_ENDED))
    hours = draw(st.integers(min_value=1, max_value=ALL_HOURS))
    days = draw(st.integers(min_value=1, max_value=ALL_DAYS))
    version = draw(st.integers(min_value=1, max_value=50))
    how = draw(st.sampled_from(["grant", "all-never-granted", "all-granted-before"]))
    if how == "grant":  # revokeGrant: quota zeroed, inactive, in the consumer's current epoch
        grant = GrantRecord(0, period, valid_from, valid_until, hours, days, version, epoch, False)
    elif how == "all-never-granted":
        epoch = max(epoch, 1)
        grant = GrantRecord(0, 0, 0, 0, 0, 0, 0, 0, False)
    else:  # a grant set before the revoke-all: an older epoch, so no longer active
        epoch = max(epoch, 1)
        older = draw(st.integers(min_value=0, max_value=epoch - 1))
        quota = draw(st.integers(min_value=1, max_value=1000))
        grant = GrantRecord(
            quota, period, valid_from, valid_until, hours, days, version, older, False
        )
    cap_max = draw(st.integers(min_value=0, max_value=10))
    # Facts that mostly hold and lists that mostly allow, so that the revocation is often
    # the only thing standing between the company and the contact.
    usually = st.sampled_from([True, True, True, False])
    national = draw(usually)
    declared = draw(
        st.none()
        | st.builds(
            Declared,
            st.sampled_from(sorted(DECLARABLE)),
            contract_reference=st.none() | st.just("C-1"),
            subject=st.none() | st.just("energy supply"),
            contract_ends_at=st.none() | st.integers(min_value=now - DAY, max_value=OPEN_ENDED),
            last_purchase_at=st.none() | st.integers(min_value=now - 600 * DAY, max_value=now),
            inquiry_at=st.none() | st.integers(min_value=now - 120 * DAY, max_value=now),
            existing_customer=usually,
            similar_products=usually,
            opt_out_offered=usually,
            appointment_at=st.none() | st.integers(min_value=now - 3600, max_value=now),
        )
    )
    return Snapshot(
        now=now,
        company_id=1,
        company=COMPANIES[draw(st.sampled_from(["active"] * 4 + ["suspended", "unknown"]))],
        channel=draw(st.sampled_from(list(Channel))),
        region=region,
        time_zone=draw(st.sampled_from(ZONES[region])),
        consumer=CONSUMER,
        grant=grant,
        consumer_record=ConsumerRecord(
            epoch, cap_max, draw(st.integers(min_value=1, max_value=400 * DAY)), 1
        ),
        block_number=1,
        window=sorted(now - t for t in draw(st.lists(times_before, max_size=6))),
        cap_window=sorted(now - t for t in draw(st.lists(times_before, max_size=6))),
        opposition=OppositionStatus(
            version="NATIONAL-1" if national else None,
            listed=not draw(usually),
            fetched_at=now - draw(st.integers(min_value=0, max_value=40 * DAY)),
            max_age=draw(st.none() | st.integers(min_value=0, max_value=60 * DAY)),
            company_version=draw(st.none() | st.just("COMPANY-1")),
            company_listed=not draw(usually),
        ),
        declared=declared,
        company_contacts=sorted(now - t for t in draw(st.lists(times_before, max_size=6))),
        last_refusal_at=draw(st.none() | st.integers(min_value=START - 400 * DAY, max_value=now)),
    )


@settings(max_examples=500, deadline=None)
@given(snap=revoked_snapshots())
def test_a_revocation_is_never_overridden(snap: Snapshot) -> None:
    """GDPR art. 7(3), 21(3); 47 CFR 64.1200(d)(3): no basis, list or timing revives it."""
    decision = decide(snap)
    assert not decision.allowed, decision
