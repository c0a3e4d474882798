"""Wiring: from settings to a ready ledger (database, chain, contract, relayer, checker)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from ledger.chain import Chain
from ledger.checks import Checker
from ledger.deployment import Recovery, ensure_deployed
from ledger.relayer import Relayer
from ledger.settings import ChainKind, Settings
from ledger.storage import make_engine


@dataclass
class Ledger:
    """Everything a route or a CLI command needs, built once per process.

    Example:
        >>> ledger = Ledger.open(Settings(chain="memory", database_url="sqlite://"))
        >>> ledger.checker.check(company_id=1, contact="+33612345678", channel=Channel.SMS)
    """

    settings: Settings
    engine: Engine
    chain: Chain
    relayer: Relayer
    checker: Checker
    recovery: Recovery

    @classmethod
    def open(cls, settings: Settings, *, rpc_url: str | None = None) -> Ledger:
        """Connects, deploys the contract on first use and replays what a lost chain forgot.

        Args:
            settings: the configuration.
            rpc_url: the node to use (a started local node); default ``settings.rpc_url``.
        """
        engine = make_engine(settings.sqlalchemy_url)
        key = settings.operator_private_key
        if settings.chain is ChainKind.MEMORY:
            chain = Chain.connect_memory(operator_key=key)
        else:
            url = rpc_url or settings.rpc_url
            if url is None:
                raise ValueError("no JSON-RPC URL: set QL_RPC_URL or use `quota-ledger up`")
            chain = Chain.connect_http(url, operator_key=key, timeout=settings.rpc_timeout)
        recovery = ensure_deployed(chain, engine, configured_address=settings.contract_address)
        relayer = Relayer(chain, engine)
        checker = Checker(
            state=chain,
            engine=engine,
            salt=settings.contact_salt_bytes,
            default_region=settings.default_region,
        )
        return cls(settings, engine, chain, relayer, checker, recovery)
