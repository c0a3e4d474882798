"""Anchoring the usage log on chain: its tree size and Merkle root, every N entries or T seconds.

One ``QuotaLedger.anchorRoot`` transaction covers every entry appended since the last anchor,
however many; with nothing new no transaction is sent. The contract only accepts a growing
tree, so an anchor on chain pins the log's first ``tree_size`` entries for good: a log edited,
cut or rebuilt afterwards no longer has that root, and an auditor sees it.

``anchor_once`` anchors now (``quota-ledger anchor``). ``Anchorer.tick`` anchors when due and
is run in the background by the process that holds the ``anchorer`` leader lock
(``ledger.runtime.Ledger.anchor_in_background``), so several API processes anchor once. A
failed anchor (node down, revert) is logged and tried again at the next tick; checks never
wait on it.

Example:
    >>> anchorer = Anchorer(chain, engine, log_id=1, every_entries=1000, every_seconds=60)
    >>> anchorer.tick()  # None until 1000 entries or 60 seconds have gone unanchored
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from ledger.audit.anchors import LogBehindAnchor, LogDiverged
from ledger.audit.tree import MerkleTree, extend
from ledger.chain.client import Chain
from ledger.chain.redact import redact
from ledger.db.engine import connect
from ledger.domain.errors import AnchorNotGrowing

log = logging.getLogger(__name__)

# Seconds between two looks at the log's size while nothing is due: one indexed read each.
POLL_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Anchored:
    """An anchor this process wrote: the tree head and the transaction that recorded it."""

    log_id: int
    tree_size: int
    root: bytes
    block_number: int
    tx_hash: str  # 0x-prefixed hex


def anchor_once(chain: Chain, engine: Engine, *, log_id: int) -> Anchored | None:
    """Anchors the log's current tree head on chain, unless the chain already has it.

    The tree's stored subtrees are extended first (one writer: the leader, or this command),
    then the size and root are read in one read snapshot, so entries appended meanwhile wait
    for the next anchor rather than tearing this one.

    Args:
        chain: the operator's chain client (it holds the contract's anchor role).
        engine: the database of the usage log.
        log_id: the usage log's id on chain (``settings.log_id``).

    Returns:
        The anchor written, or None when the chain already anchors the log's whole size (or
        more: another process anchored meanwhile).

    Raises:
        LogBehindAnchor: the chain anchors more entries than the log has (never anchored over).
        LogDiverged: the log's entries under the chain's anchor no longer have its root.
        LedgerError: the contract refused the anchor.
        ChainUnavailable: the node cannot be reached.
    """
    try:
        with connect(engine) as conn:
            extend(conn)
    except IntegrityError:
        # Another writer (the command while `serve` anchors, on PostgreSQL) stored the same
        # subtree hashes first; a node not stored is computed from the leaves anyway.
        log.debug("the Merkle tree was extended by another process meanwhile")
    anchored_root, anchored, _ = chain.anchor(log_id)
    with connect(engine, read_only=True) as conn:
        tree = MerkleTree(conn)
        size = tree.size()
        if size < anchored:
            raise LogBehindAnchor(log_id, size, anchored)
        # A log rewritten under its last anchor must not be anchored over: the next anchor
        # would vouch for the rewrite (an auditor would still see the break between the two).
        if anchored and tree.root(anchored) != anchored_root:
            raise LogDiverged(log_id, anchored)
        root = tree.root(size)
    if size == anchored:
        return None
    try:
        receipt = chain.transact(chain.contract.functions.anchorRoot(log_id, size, root))
    except AnchorNotGrowing:
        return None  # another process anchored as much or more since the chain was read
    return Anchored(
        log_id=log_id,
        tree_size=size,
        root=root,
        block_number=int(receipt["blockNumber"]),
        tx_hash="0x" + bytes(receipt["transactionHash"]).hex(),
    )


class Anchorer:
    """Anchors the log when ``every_entries`` entries or ``every_seconds`` seconds went
    unanchored, whichever comes first (0 disables a trigger; both 0: never in the background).

    The time counts from this anchorer's last anchor, or from its start: entries wait at most
    ``every_seconds`` (plus a tick) for an anchor while one process leads, twice that when the
    lead has just moved.

    Args:
        chain: the operator's chain client.
        engine: the database of the usage log.
        log_id: the usage log's id on chain.
        every_entries: anchor once this many entries are unanchored (0: no count trigger).
        every_seconds: anchor new entries once this long passed since the last anchor (0: none).
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        chain: Chain,
        engine: Engine,
        *,
        log_id: int,
        every_entries: int,
        every_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.chain = chain
        self.engine = engine
        self.log_id = log_id
        self.every_entries = every_entries
        self.every_seconds = every_seconds
        self._clock = clock
        self._since = clock()
        self._anchored: int | None = None  # the chain's tree size, as last read or written
        self._failing: str | None = None  # the failure last logged, until a tick succeeds
        self._refused: str | None = None  # why the log was last refused an anchor, once logged

    @property
    def enabled(self) -> bool:
        """Whether any trigger is on (else only ``anchor_once`` anchors)."""
        return self.every_entries > 0 or self.every_seconds > 0

    @property
    def poll_seconds(self) -> float:
        """How often ``tick`` should run: often enough for the time trigger to be on time."""
        if self.every_seconds > 0:
            return min(POLL_SECONDS, self.every_seconds / 2)
        return POLL_SECONDS

    def tick(self, stop: threading.Event | None = None) -> Anchored | None:
        """Anchors if due. Never raises: a failure is logged and the next tick tries again.

        Args:
            stop: unused; the signature ``ledger.db.leader.Elected`` calls work with.

        Returns:
            The anchor written by this tick, if any.
        """
        try:
            done = self._tick()
        except (LogBehindAnchor, LogDiverged) as exc:
            self._anchored = None  # read the chain again next time: it may be the chain that moved
            if self._refused != exc.message:  # once per state, not every tick
                log.error("not anchoring: %s", exc.message)
                self._refused = exc.message
            return None
        except Exception as exc:  # the node, the database, a revert: all retried next tick
            self._anchored = None
            what = redact(f"{type(exc).__name__}: {exc}")[:300]
            if self._failing is None:
                log.warning("anchoring usage log %d failed, retrying: %s", self.log_id, what)
            else:
                log.debug("anchoring usage log %d still fails: %s", self.log_id, what)
            self._failing = what
            return None
        if self._failing is not None:
            log.info("anchoring usage log %d works again", self.log_id)
            self._failing = None
        self._refused = None
        return done

    def _tick(self) -> Anchored | None:
        if not self.enabled:
            return None
        with connect(self.engine, read_only=True) as conn:
            size = MerkleTree(conn).size()
        if self._anchored is None:
            self._anchored = self.chain.anchor(self.log_id)[1]
        pending = size - self._anchored
        if pending < 0:
            raise LogBehindAnchor(self.log_id, size, self._anchored)
        by_count = self.every_entries > 0 and pending >= self.every_entries
        by_time = self.every_seconds > 0 and self._clock() - self._since >= self.every_seconds
        if pending == 0 or not (by_count or by_time):
            return None
        done = anchor_once(self.chain, self.engine, log_id=self.log_id)
        self._since = self._clock()
        if done is None:  # another process anchored it all meanwhile
            self._anchored = None
            return None
        self._anchored = done.tree_size
        log.info(
            "anchored usage log %d at %d entries in block %d (tx %s)",
            self.log_id,
            done.tree_size,
            done.block_number,
            done.tx_hash,
        )
        return done
