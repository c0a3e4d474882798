"""Wiring: from settings to a ready ledger (database, chain, contract, relayer, checker,
opposition lists, contact linking)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from ledger.audit.anchorer import Anchorer
from ledger.audit.integrity import LogIntegrity, LogVerifier
from ledger.chain.anvil import AnvilNode, NodeState, NodeSupervisor
from ledger.chain.client import Chain
from ledger.chain.deployment import Recovery, deployed_at, ensure_deployed
from ledger.chain.relayer import Relayer
from ledger.db.engine import make_engine
from ledger.db.leader import Elected, LeaderLock
from ledger.domain.errors import ChainUnavailable
from ledger.domain.grants import GrantRecord
from ledger.domain.state import BlockRef, CompanyRecord, ConsumerRecord, LedgerState, LinkRecord
from ledger.index.indexer import Indexer
from ledger.index.state import IndexedState
from ledger.lists.cache import OppositionCache
from ledger.schema import upgrade
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
    # Of the processes sharing the database, the one holding this lock runs the indexer loop.
    leadership: LeaderLock
    # The local node this process runs and restarts (`up`); None when the node is elsewhere.
    node: NodeSupervisor | None = field(default=None, init=False)
    # This process's check of the usage log: every append compares the head it reads with
    # what was verified, ``verify_log`` re-hashes new entries; checks refuse once it breaks.
    integrity: LogIntegrity = field(init=False)

    def __post_init__(self) -> None:
        self.integrity = LogIntegrity(self.engine, rescan_rows=self.settings.log_rescan_rows)
        self.integrity.watch()
        self.checker.integrity = self.integrity

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
        engine = make_engine(
            settings.sqlalchemy_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
        )
        upgrade(engine)
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
            leadership=LeaderLock(engine, "indexer"),
        )

    def follow_index(self) -> Elected:
        """A started background thread keeping the event index up with the chain (``stop`` it).

        Of the processes sharing the database only the leader indexes (``leadership``); the
        others answer from the index it writes and take over when it dies.
        """
        follower = Elected(
            self.leadership,
            self._index_round,
            interval=self.settings.index_poll_interval,
            retry=self.settings.leader_retry_seconds,
        )
        follower.start()
        return follower

    def verify_log(self) -> LogVerifier:
        """A started background thread re-hashing the usage log's new entries (``stop`` it).

        Every process runs one: each refuses checks as soon as it finds the log broken.
        """
        verifier = LogVerifier(self.integrity, interval=self.settings.log_verify_interval)
        verifier.start()
        return verifier

    def anchor_in_background(self) -> Elected | None:
        """A started background thread anchoring the usage log on chain when due (``stop`` it).

        Of the processes sharing the database only the holder of the ``anchorer`` lock
        anchors, so several API processes send one transaction per anchor. None when both
        triggers are off (``anchor_every_entries`` and ``anchor_every_seconds`` are 0).
        """
        settings = self.settings
        anchorer = Anchorer(
            self.chain,
            self.engine,
            log_id=settings.log_id,
            every_entries=settings.anchor_every_entries,
            every_seconds=settings.anchor_every_seconds,
        )
        if not anchorer.enabled:
            return None

        def anchor_round(stop: threading.Event) -> None:
            if self.integrity.corruption is not None:
                return  # a broken log is not vouched for on chain (the verifier logged why)
            if self.node is None:
                anchorer.tick(stop)
                return
            with self.node.running() as up:
                if up:  # else the node is being restarted: anchor once it is recovered
                    anchorer.tick(stop)

        elected = Elected(
            LeaderLock(self.engine, "anchorer"),
            anchor_round,
            interval=anchorer.poll_seconds,
            retry=settings.leader_retry_seconds,
        )
        elected.start()
        return elected

    def supervise(self, node: AnvilNode) -> NodeSupervisor:
        """Starts watching the local node this process started: when it dies it is restarted
        on the same port and state file and the journal replayed, and meanwhile checks refuse.

        Returns:
            The started supervisor; ``stop`` it to stop the node.
        """
        supervisor = NodeSupervisor(node, recover=self._recover)
        self.node = supervisor
        self.checker.state = _WhileNodeRuns(self.state, supervisor)
        supervisor.start()
        return supervisor

    def _index_round(self, stop: threading.Event) -> None:
        if self.node is None:
            self.indexer.sync(stop=stop)
            return
        with self.node.running() as up:
            if up:  # else the node is being restarted and its lost blocks replayed
                self.indexer.sync(stop=stop)

    def _recover(self) -> str:
        """After the node restarted: what ``open`` does, replay the lost operator transactions
        (or redeploy when the contract itself is gone) and index up to the new head."""
        self.recovery = ensure_deployed(
            self.chain, self.engine, configured_address=self.settings.contract_address
        )
        self.indexer.start_block = deployed_at(self.engine)
        self.indexer.sync()
        recovery = self.recovery
        if not recovery.lost_blocks:
            return "nothing lost"
        redeployed = "contract redeployed, " if recovery.redeployed else ""
        return (
            f"{redeployed}{len(recovery.replayed)} operator transactions replayed, "
            f"{len(recovery.dropped)} refused on replay"
        )


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


@dataclass(frozen=True)
class _WhileNodeRuns:
    """The event index as the checker reads it, refused while the local node is restarting.

    Until its lost blocks are replayed the index may be rolled back past a revocation that the
    replay will restore: a check then refuses (``ledger_unavailable``), never allows.
    """

    index: IndexedState
    node: NodeSupervisor

    @property
    def watching(self) -> bool:
        return self.index.watching

    def head(self) -> BlockRef:
        self._running()
        return self.index.head()

    @contextmanager
    def snapshot(self) -> Iterator[LedgerState]:
        # Checked here too: a snapshot's own ``head`` (``IndexedState.snapshot``) is the index's.
        self._running()
        with self.index.snapshot() as reads:
            yield reads

    def _running(self) -> None:
        status = self.node.status()
        if status.state is not NodeState.RUNNING:
            raise ChainUnavailable(f"the local node is {status.state.value}: {status.detail}")
        # The index reads the head from memory; the process table tells at once (no request
        # to the node) that the node died since, before the supervisor's next poll does.
        code = self.node.node.exit_code()
        if code is not None:
            raise ChainUnavailable(f"the local node exited with {code}")

    def company(self, company_id: int, block: int) -> CompanyRecord:
        return self.index.company(company_id, block)

    def link(self, commitment: bytes, block: int) -> LinkRecord:
        return self.index.link(commitment, block)

    def grant(self, consumer: str, company_id: int, channel: int, block: int) -> GrantRecord:
        return self.index.grant(consumer, company_id, channel, block)

    def consumer(self, consumer: str, block: int) -> ConsumerRecord:
        return self.index.consumer(consumer, block)
