"""Wiring: from settings to a ready ledger (database, chain, contract, relayer, checker,
opposition lists, contact linking)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from ledger.chain.client import Chain
from ledger.chain.deployment import Recovery, deployed_at, ensure_deployed
from ledger.chain.relayer import Relayer
from ledger.index.indexer import Indexer, IndexFollower
from ledger.index.state import IndexedState
from ledger.lists.cache import OppositionCache
from ledger.schema import migrated_engine
from ledger.services.checks import Checker
from ledger.services.linking import Linker
from ledger.settings import ChainKind, Settings


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
    lists: OppositionCache
    linker: Linker
    indexer: Indexer
    state: IndexedState  # what the checker reads: the event index, refused when it lags

    @classmethod
    def open(
        cls, settings: Settings, *, rpc_url: str | None = None, sync_index: bool = True
    ) -> Ledger:
        """Connects, deploys the contract on first use and replays what a lost chain forgot.

        Args:
            settings: the configuration.
            rpc_url: the node to use (a started local node); default ``settings.rpc_url``.
            sync_index: bring the event index up to the chain head before returning (until
                then checks refuse as stale).
        """
        engine = migrated_engine(settings.sqlalchemy_url)
        chain = _connect_chain(settings, rpc_url)
        recovery = ensure_deployed(chain, engine, configured_address=settings.contract_address)
        indexer = Indexer(
            chain,
            engine,
            start_block=deployed_at(engine),
            confirmations=settings.index_confirmations,
            reorg_depth=settings.index_reorg_depth,
            max_chunk_blocks=settings.index_max_chunk_blocks,
        )
        if sync_index:
            indexer.sync()
        state = IndexedState(
            chain=chain,
            engine=engine,
            confirmations=settings.index_confirmations,
            max_lag_blocks=settings.index_max_lag_blocks,
            max_lag_seconds=settings.index_max_lag_seconds,
        )

        def index_covers(block: int) -> None:
            # Read-your-writes: a relay returns once checks can see its block.
            indexer.wait_for(
                block,
                timeout=settings.index_max_lag_seconds,
                poll_interval=settings.index_poll_interval,
            )

        lists = OppositionCache.from_settings(settings, engine)
        return cls(
            settings,
            engine,
            chain,
            relayer=Relayer(
                chain, engine, on_mined=index_covers, max_ttl=settings.signature_max_ttl
            ),
            checker=Checker(
                state=state,
                engine=engine,
                salt=settings.contact_salt_bytes,
                default_region=settings.default_region,
                lists=lists,
            ),
            recovery=recovery,
            lists=lists,
            linker=Linker.from_settings(settings, engine),
            indexer=indexer,
            state=state,
        )

    def follow_index(self) -> IndexFollower:
        """A started background thread keeping the event index up with the chain (``stop`` it)."""
        follower = IndexFollower(self.indexer, poll_interval=self.settings.index_poll_interval)
        follower.start()
        return follower


def _connect_chain(settings: Settings, rpc_url: str | None) -> Chain:
    key = settings.operator_private_key
    if settings.chain is ChainKind.MEMORY:
        return Chain.connect_memory(operator_key=key)
    url = rpc_url or settings.rpc_url
    if url is None:
        raise ValueError("no JSON-RPC URL: set QL_RPC_URL or use `quota-ledger up`")
    return Chain.connect(
        url, operator_key=key, timeout=settings.rpc_timeout, attempts=settings.rpc_attempts
    )
