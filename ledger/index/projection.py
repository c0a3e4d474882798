"""Projecting events onto the index tables: the raw log, the history and the current state.

A chunk of events is folded in memory, starting from the current rows of every key it touches,
exactly as the contract changed its storage; then each touched key's current row is replaced,
every intermediate state appended to the history, and the raw logs stored. Rolling back past a
fork point is the reverse: the history after it is deleted and each touched key's current row
recomputed from the history that remains.

Example:
    >>> applied = project(conn, events, headers, known_logs(conn, logs))
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, delete, insert, select, tuple_
from sqlalchemy.engine import Connection

from ledger.chain.client import BlockHeader, RawLog
from ledger.domain.grants import CompanyStatus
from ledger.index.events import Event
from ledger.index.tables import (
    ANCHOR,
    COMPANY,
    CONSUMER,
    ENTITIES,
    GRANT,
    LINK,
    MAX_DB_ID,
    Entity,
    LogRow,
    table_of,
)

_IN_BATCH = 400  # keys per IN (...) list: well under SQLite's bound-parameter limit
_LOGS = table_of(LogRow)

Key = tuple[Any, ...]
Position = dict[str, Any]  # block_number, log_index, tx_hash of the change


def project(
    conn: Connection,
    events: Sequence[tuple[RawLog, Event]],
    headers: dict[int, BlockHeader],
    known: set[tuple[str, int]],
) -> int:
    """Writes a chunk's events: raw logs, history rows and the resulting current state.

    Args:
        conn: the connection of the chunk's transaction.
        events: the chunk's decoded logs, in chain order.
        headers: block headers, for the timestamp of logs that came without one.
        known: (tx hash, log index) of logs already indexed, skipped (see ``known_logs``).

    Returns:
        How many events were applied.
    """
    fresh = [(lg, ev) for lg, ev in events if (lg.tx_hash.hex(), lg.log_index) not in known]
    if not fresh:
        return 0
    fold = _Fold(conn)
    wanted: dict[str, list[Key]] = {e.name: [] for e in ENTITIES}
    for _, event in fresh:
        for entity, key in _keys(event):
            wanted[entity.name].append(key)
    for entity in ENTITIES:
        fold.load(entity, wanted[entity.name])
    logs: list[dict[str, Any]] = []
    for raw, event in fresh:
        position = {
            "block_number": raw.block_number,
            "log_index": raw.log_index,
            "tx_hash": raw.tx_hash.hex(),
        }
        timestamp = raw.block_timestamp
        if timestamp is None and raw.block_number in headers:
            timestamp = headers[raw.block_number].timestamp
        _fold(fold, event, position, timestamp)
        logs.append(_log_row(raw, event))
    for entity in ENTITIES:
        history = fold.history[entity.name]
        if not history:
            continue
        touched = list(dict.fromkeys(tuple(r[k] for k in entity.key) for r in history))
        _delete_by_keys(conn, entity.current_table, entity.key, touched)
        conn.execute(insert(entity.current_table), [fold.state[entity.name][k] for k in touched])
        conn.execute(insert(entity.history_table), history)
    conn.execute(insert(_LOGS), logs)
    return len(fresh)


def known_logs(conn: Connection, logs: Sequence[RawLog]) -> set[tuple[str, int]]:
    """(tx hash, log index) of the chunk's logs that are already indexed."""
    if not logs:
        return set()
    low, high = logs[0].block_number, logs[-1].block_number
    rows = conn.execute(
        select(_LOGS.c.tx_hash, _LOGS.c.log_index).where(
            _LOGS.c.block_number >= low, _LOGS.c.block_number <= high
        )
    )
    return {(str(tx), int(index)) for tx, index in rows}


def roll_back_projection(conn: Connection, fork: int) -> None:
    """Deletes the logs and history after block ``fork`` and recomputes the state they changed."""
    for entity in ENTITIES:
        history = entity.history_table
        key_columns = [history.c[k] for k in entity.key]
        touched = [
            tuple(row)
            for row in conn.execute(
                select(*key_columns).where(history.c.block_number > fork).distinct()
            )
        ]
        conn.execute(delete(history).where(history.c.block_number > fork))
        _delete_by_keys(conn, entity.current_table, entity.key, touched)
        for key in touched:
            latest = (
                conn.execute(
                    select(history)
                    .where(*(c == v for c, v in zip(key_columns, key, strict=True)))
                    .order_by(history.c.block_number.desc(), history.c.log_index.desc())
                    .limit(1)
                )
                .mappings()
                .first()
            )
            if latest is not None:
                conn.execute(insert(entity.current_table), [dict(latest)])
    conn.execute(delete(_LOGS).where(_LOGS.c.block_number > fork))


def clear_projection(conn: Connection) -> None:
    """Deletes every log, history row and current row."""
    for entity in ENTITIES:
        conn.execute(delete(entity.history_table))
        conn.execute(delete(entity.current_table))
    conn.execute(delete(_LOGS))


# ----- folding events in memory -----


@dataclass
class _Fold:
    """The state of every key a chunk touches, folded event by event."""

    conn: Connection
    state: dict[str, dict[Key, dict[str, Any]]] = field(default_factory=dict)
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def load(self, entity: Entity, keys: Iterable[Key]) -> None:
        wanted = list(dict.fromkeys(keys))
        known = self.state.setdefault(entity.name, {})
        self.history.setdefault(entity.name, [])
        for rows in _select_by_keys(self.conn, entity.current_table, entity.key, wanted):
            for row in rows:
                known[tuple(row[k] for k in entity.key)] = dict(row)

    def get(self, entity: Entity, key: Key) -> dict[str, Any]:
        found = self.state[entity.name].get(key)
        return dict(entity.empty) if found is None else {f: found[f] for f in entity.fields}

    def put(self, entity: Entity, key: Key, fields: dict[str, Any], position: Position) -> None:
        row = {**dict(zip(entity.key, key, strict=True)), **fields, **position}
        self.state[entity.name][key] = row
        self.history[entity.name].append(row)

    def update(self, entity: Entity, key: Key, changes: dict[str, Any], position: Position) -> None:
        """Puts the key's state with ``changes``: the fields an event leaves alone stay."""
        self.put(entity, key, {**self.get(entity, key), **changes}, position)


def _fits(args: dict[str, Any]) -> bool:
    # An id beyond BIGINT cannot be stored, and no API call can name it: such events stay
    # in the raw log only.
    company_id: int = args.get("companyId", 0)
    log_id: int = args.get("logId", 0)
    return company_id < MAX_DB_ID and log_id < MAX_DB_ID


def _keys(event: Event) -> list[tuple[Entity, Key]]:
    """The state an event changes (for loading before folding)."""
    a = event.args
    if not _fits(a):
        return []
    match event.name:
        case "CompanyRegistered" | "CompanySuspended" | "CompanyReinstated":
            return [(COMPANY, (a["companyId"],))]
        case "GrantSet" | "GrantRevoked":
            return [(GRANT, (a["consumer"], a["companyId"], a["channel"]))]
        case "AllGrantsRevoked" | "GlobalCapSet":
            return [(CONSUMER, (a["consumer"],))]
        case "ContactLinked":
            found = [(LINK, (a["commitment"].hex(),)), (CONSUMER, (a["consumer"],))]
            return [*found, (CONSUMER, (a["previousConsumer"],))]
        case "ContactUnlinked":
            return [(LINK, (a["commitment"].hex(),)), (CONSUMER, (a["consumer"],))]
        case "RootAnchored":
            return [(ANCHOR, (a["logId"],))]
    return []  # role administration and other OpenZeppelin events: raw log only


def _fold(fold: _Fold, event: Event, position: Position, timestamp: int | None) -> None:
    """Applies one event exactly as the contract changed its storage."""
    handler = _HANDLERS.get(event.name)
    if handler is not None and _fits(event.args):
        handler(fold, event.args, position, timestamp)


# One handler per event that changes state: (fold, event args, position, block timestamp).
_Handler = Callable[[_Fold, dict[str, Any], Position, int | None], None]


def _company_registered(fold: _Fold, a: dict[str, Any], at: Position, _: int | None) -> None:
    state = {"admin": a["admin"], "name": a["name"], "status": int(CompanyStatus.ACTIVE)}
    fold.put(COMPANY, (a["companyId"],), state, at)


def _company_status(status: CompanyStatus) -> _Handler:
    def handle(fold: _Fold, a: dict[str, Any], at: Position, _: int | None) -> None:
        fold.update(COMPANY, (a["companyId"],), {"status": int(status)}, at)

    return handle


def _grant_set(fold: _Fold, a: dict[str, Any], at: Position, _: int | None) -> None:
    state = {
        "max_contacts": a["maxContacts"],
        "period": a["period"],
        "valid_from": a["validFrom"],
        "valid_until": a["validUntil"],
        "hours_mask": a["hoursMask"],
        "days_mask": a["daysMask"],
        "notice_hash": a["noticeHash"].hex(),
        "version": a["version"],
        "epoch": a["epoch"],
    }
    fold.put(GRANT, (a["consumer"], a["companyId"], a["channel"]), state, at)


def _grant_revoked(fold: _Fold, a: dict[str, Any], at: Position, _: int | None) -> None:
    # The contract zeroes maxContacts and moves the version; the other fields stay.
    key = (a["consumer"], a["companyId"], a["channel"])
    fold.update(GRANT, key, {"max_contacts": 0, "version": a["version"]}, at)


def _all_grants_revoked(fold: _Fold, a: dict[str, Any], at: Position, _: int | None) -> None:
    fold.update(CONSUMER, (a["consumer"],), {"epoch": a["epoch"]}, at)


def _global_cap_set(fold: _Fold, a: dict[str, Any], at: Position, _: int | None) -> None:
    cap = {"cap_max": a["maxContacts"], "cap_period": a["period"]}
    fold.update(CONSUMER, (a["consumer"],), cap, at)


def _contact_linked(fold: _Fold, a: dict[str, Any], at: Position, timestamp: int | None) -> None:
    consumer, previous = a["consumer"], a["previousConsumer"]
    linked = {
        "consumer": consumer,
        "previous_consumer": None if int(previous, 16) == 0 else previous,
        "linked_at": timestamp or 0,
    }
    fold.put(LINK, (a["commitment"].hex(),), linked, at)
    if previous != consumer:
        # A reassigned contact: the previous holder's grants no longer reach it.
        if int(previous, 16) != 0:
            _add_links(fold, previous, -1, at)
        _add_links(fold, consumer, +1, at)


def _contact_unlinked(fold: _Fold, a: dict[str, Any], at: Position, _: int | None) -> None:
    state = {"consumer": None, "previous_consumer": a["consumer"], "linked_at": 0}
    fold.put(LINK, (a["commitment"].hex(),), state, at)
    _add_links(fold, a["consumer"], -1, at)


def _root_anchored(fold: _Fold, a: dict[str, Any], at: Position, timestamp: int | None) -> None:
    state = {"root": a["root"].hex(), "tree_size": a["treeSize"], "anchored_at": timestamp or 0}
    fold.put(ANCHOR, (a["logId"],), state, at)


def _add_links(fold: _Fold, consumer: str, delta: int, at: Position) -> None:
    key = (consumer,)
    current = fold.get(CONSUMER, key)
    fold.put(CONSUMER, key, {**current, "link_count": current["link_count"] + delta}, at)


_HANDLERS: dict[str, _Handler] = {
    "CompanyRegistered": _company_registered,
    "CompanySuspended": _company_status(CompanyStatus.SUSPENDED),
    "CompanyReinstated": _company_status(CompanyStatus.ACTIVE),
    "GrantSet": _grant_set,
    "GrantRevoked": _grant_revoked,
    "AllGrantsRevoked": _all_grants_revoked,
    "GlobalCapSet": _global_cap_set,
    "ContactLinked": _contact_linked,
    "ContactUnlinked": _contact_unlinked,
    "RootAnchored": _root_anchored,
}


# ----- rows -----


def _log_row(raw: RawLog, event: Event) -> dict[str, Any]:
    return {
        "tx_hash": raw.tx_hash.hex(),
        "log_index": raw.log_index,
        "block_number": raw.block_number,
        "block_hash": raw.block_hash.hex(),
        "event": event.name,
        "args": json.dumps(event.args, default=_json_bytes, separators=(",", ":")),
    }


def _json_bytes(value: object) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _where_keys(table: Table, key: tuple[str, ...], batch: Sequence[Key]) -> Any:
    columns = [table.c[k] for k in key]
    if len(columns) == 1:
        return columns[0].in_([k[0] for k in batch])
    return tuple_(*columns).in_(batch)


def _select_by_keys(
    conn: Connection, table: Table, key: tuple[str, ...], keys: Sequence[Key]
) -> Iterable[Sequence[Any]]:
    for start in range(0, len(keys), _IN_BATCH):
        batch = keys[start : start + _IN_BATCH]
        yield conn.execute(select(table).where(_where_keys(table, key, batch))).mappings().all()


def _delete_by_keys(
    conn: Connection, table: Table, key: tuple[str, ...], keys: Sequence[Key]
) -> None:
    for start in range(0, len(keys), _IN_BATCH):
        batch = keys[start : start + _IN_BATCH]
        conn.execute(delete(table).where(_where_keys(table, key, batch)))
