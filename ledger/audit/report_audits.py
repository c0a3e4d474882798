"""A report with its audits run: the log verified against the chain's anchors, every decision
replayed from the chain's events, then the figures read; what the CLI and the API serve.

The audits read the chain, never the operator's index: the anchors from ``RootAnchored``
events (``ledger.audit.anchors.anchors_from_chain``), the ledger's history from its events
(``ledger.audit.replay``). An audit left out is reported as "not run".

Example:
    >>> report = audited_report(ledger.engine, ledger.chain, period=Period.last_days(30, now=now),
    ...                         company_id=1, log_id=settings.log_id, now=now)
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from ledger.audit.anchors import anchors_from_chain
from ledger.audit.replay import replay_log
from ledger.audit.report import (
    Period,
    Report,
    Verification,
    Violations,
    build_report,
    verification_of,
    violations_of,
)
from ledger.audit.verify import DatabaseSource, verify
from ledger.chain.client import Chain
from ledger.db.engine import transaction


def audited_report(
    engine: Engine,
    chain: Chain | None,
    *,
    period: Period,
    company_id: int | None,
    log_id: int,
    now: int,
    run_verify: bool = True,
    run_replay: bool = True,
    from_block: int = 0,
) -> Report:
    """Runs the chosen audits, then reads the report's figures.

    Args:
        engine: the operator's database (the usage log and the event index).
        chain: a client of a node the auditor trusts, pointed at the ledger contract (None
            when no audit runs).
        period: the contacts counted.
        company_id: the company reported on, or None for every company.
        log_id: the usage log's id in the contract's anchors.
        now: unix time the report is made at.
        run_verify: re-hash the whole log against the anchors read from the chain.
        run_replay: decide every recorded decision again from the chain's events.
        from_block: the first block whose events are read (0: trust no deployment record).

    Returns:
        The report, its audits' findings included.

    Raises:
        ChainUnavailable: the node cannot be reached.
        ValueError: an audit to run and no chain to run it against.
    """
    if chain is None and (run_verify or run_replay):
        raise ValueError("the audits read the chain: give a chain, or run neither")
    verification: Verification | None = None
    if run_verify and chain is not None:
        anchors = anchors_from_chain(chain, log_id, from_block=from_block)
        verification = verification_of(verify(DatabaseSource(engine), anchors))
    replayed = None
    if run_replay and chain is not None:
        replayed = replay_log(chain, engine=engine, company_id=company_id, start_block=from_block)
    with transaction(engine) as session:
        violations: Violations | None = None
        if replayed is not None:
            violations = violations_of(session.connection(), replayed, period)
        return build_report(
            session,
            period=period,
            company_id=company_id,
            log_id=log_id,
            now=now,
            violations=violations,
            verification=verification,
        )
