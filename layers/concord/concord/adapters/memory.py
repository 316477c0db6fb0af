"""In-memory fakes of the state stores, with the semantics of the DynamoDB ones.

Conditions, conflicts, the delete window, ordering and TTLs follow the same rules (shared with the
real stores through :mod:`concord.adapters.stores.codec`), values are stored serialised as DynamoDB
holds them (so a fake never hands back the caller's own objects), and ``requests`` counts the DynamoDB
API calls the real store would send for the same calls when nothing contends. ``tests/contract``
runs one suite against both, so the two cannot drift.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from concord.adapters.stores import codec
from concord.adapters.stores.codec import CursorConflict
from concord.core import LinkState
from concord.ports import Connection, LinkConflict, LinkKey, LogEntry, StoredLink

if TYPE_CHECKING:
    import builtins
    from collections.abc import Callable, Iterable, Sequence

    from concord.core import ObjectKind
    from concord.ports import ConnectionStatus, LogStatus

__all__ = ["MemoryConnectionStore", "MemoryCursorStore", "MemoryLinkStore", "MemorySyncLog"]

type _ItemKey = tuple[str, str, str, str]  # connection, kind, side, record id


class MemoryLinkStore:
    """:class:`concord.ports.LinkStore` in memory; the two-items-per-link layout of the real store."""

    def __init__(
        self, *, tombstone_ttl_s: int = codec.DEFAULT_TOMBSTONE_TTL_S, clock: Callable[[], float] = time.time
    ) -> None:
        if tombstone_ttl_s < codec.MIN_TOMBSTONE_TTL_S:
            raise ValueError("tombstones must outlive Salesforce's 24 h redelivery: keep them at least 48 h")
        self.tombstone_ttl_s = tombstone_ttl_s
        self.clock = clock
        self.requests = 0
        self._items: dict[_ItemKey, str] = {}
        self._live: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def get_many(self, keys: Iterable[LinkKey]) -> dict[LinkKey, StoredLink]:
        wanted = set(keys)
        with self._lock:
            self.requests += codec.batches(len(wanted), codec.BATCH_GET_MAX)
            found = {key: self._items.get((key.connection_id, key.kind, key.side, key.record_id)) for key in wanted}
        return {key: _load_link(raw) for key, raw in found.items() if raw is not None}

    def count(self, connection_id: str, kind: ObjectKind) -> int:
        with self._lock:
            self.requests += 1
            return self._live.get((connection_id, kind), 0)

    def list(self, connection_id: str, kind: ObjectKind | None = None) -> builtins.list[StoredLink]:
        with self._lock:
            self.requests += 1
            chosen = sorted(
                (key, raw)
                for key, raw in self._items.items()
                if key[0] == connection_id and (kind is None or key[1] == kind)
            )
        links = [_load_link(raw) for _, raw in chosen]
        return [
            link
            for (key, _), link in zip(chosen, links, strict=True)
            if key[2] == "salesforce" or link.link.salesforce_id is None
        ]

    def put_many(self, links: Sequence[StoredLink]) -> builtins.list[StoredLink]:
        codec.check_links(links)
        now = self.clock()
        news = [
            replace(
                given,
                lock_version=given.lock_version + 1,
                expires_at=codec.tombstone_expiry(given.link, now, self.tombstone_ttl_s),
            )
            for given in links
        ]
        with self._lock:
            losers = self._commit(list(zip(links, news, strict=True)))
        if losers:
            raise LinkConflict([codec.primary_key(given) for given in losers])
        return news

    def delete(self, link: StoredLink) -> None:
        with self._lock:
            losers = self._commit([(link, None)])
        if losers:
            raise LinkConflict([codec.primary_key(link)])

    def _keys(self, stored: StoredLink | None) -> set[_ItemKey]:
        if stored is None:
            return set()
        return {(stored.connection_id, stored.link.kind, side, rid) for side, rid in codec.link_keys(stored)}

    def _commit(self, writes: builtins.list[tuple[StoredLink, StoredLink | None]]) -> builtins.list[StoredLink]:
        updates = [given for given, _ in writes if given.lock_version > 0]
        self.requests += codec.batches(len({k for given in updates for k in self._keys(given)}), codec.BATCH_GET_MAX)
        losers: list[StoredLink] = []
        planned: list[tuple[StoredLink, StoredLink | None, StoredLink | None]] = []
        for given, new in writes:
            old = None
            if given.lock_version > 0:
                for key in self._keys(given):
                    raw = self._items.get(key)
                    if raw is not None and _load_link(raw).lock_version == given.lock_version:
                        old = _load_link(raw)
                if old is None:
                    losers.append(given)
                    continue
            if self._keys(new) - self._keys(old) & self._items.keys():
                losers.append(given)  # a new id of the link is already linked to something else
                continue
            planned.append((given, new, old))
        chunks = codec.pack(
            [
                (len(self._keys(new) | self._keys(old)), (g.connection_id, g.link.kind))
                for g, new, old in planned
                if self._keys(new) | self._keys(old)
            ]
        )
        self.requests += len(chunks)
        for given, new, old in planned:
            for key in self._keys(old) - self._keys(new):
                del self._items[key]
            if new is not None:
                raw = _dump_link(new)
                for key in self._keys(new):
                    self._items[key] = raw
            counter = (given.connection_id, given.link.kind)
            delta = int(codec.is_live(new.link if new else None)) - int(codec.is_live(old.link if old else None))
            self._live[counter] = self._live.get(counter, 0) + delta
        return losers


def _dump_link(stored: StoredLink) -> str:
    return json.dumps(
        {
            "connection_id": stored.connection_id,
            "link": stored.link.to_dict(),
            "lock_version": stored.lock_version,
            "expires_at": stored.expires_at,
            "claimed_at": stored.claimed_at,
        }
    )


def _load_link(raw: str) -> StoredLink:
    data = json.loads(raw)
    return StoredLink(
        connection_id=data["connection_id"],
        link=LinkState.from_dict(data["link"]),
        lock_version=data["lock_version"],
        expires_at=data["expires_at"],
        claimed_at=data["claimed_at"],
    )


class MemoryConnectionStore:
    """:class:`concord.ports.ConnectionStore` in memory, the delete window in per-minute buckets."""

    def __init__(self) -> None:
        self.requests = 0
        self._connections: dict[str, dict[str, Any]] = {}
        self._deletes: dict[tuple[str, str], dict[str, int]] = {}
        self._lock = threading.Lock()

    def get(self, connection_id: str) -> Connection | None:
        with self._lock:
            self.requests += 1
            raw = self._connections.get(connection_id)
        return _load_connection(raw) if raw is not None else None

    def get_many(self, connection_ids: Iterable[str]) -> dict[str, Connection]:
        wanted = set(connection_ids)
        with self._lock:
            self.requests += codec.batches(len(wanted), codec.BATCH_GET_MAX)
            found = [self._connections[cid] for cid in wanted if cid in self._connections]
        return {c.connection_id: c for c in map(_load_connection, found)}

    def by_salesforce_user(self, salesforce_user_ids: Iterable[str]) -> dict[str, builtins.list[Connection]]:
        users = set(salesforce_user_ids)
        with self._lock:
            self.requests += len(users)
            raws = sorted(self._connections.values(), key=lambda raw: raw["connection_id"])
        found: dict[str, list[Connection]] = {}
        for raw in raws:
            if raw["salesforce_user_id"] in users:
                found.setdefault(raw["salesforce_user_id"], []).append(_load_connection(raw))
        return found

    def by_mailbox_user(self, provider: str, mailbox_user: str) -> Connection | None:
        key = codec.mailbox_user_key(provider, mailbox_user)
        with self._lock:
            self.requests += 1
            for raw in self._connections.values():
                if codec.mailbox_user_key(raw["provider"], raw["mailbox_user"]) == key:
                    return _load_connection(raw)
        return None

    def list(self, status: ConnectionStatus | None = None) -> builtins.list[Connection]:
        with self._lock:
            self.requests += 1
            raws = [raw for raw in self._connections.values() if status is None or raw["status"] == status]
        return sorted(map(_load_connection, raws), key=lambda c: c.connection_id)

    def put(self, connection: Connection) -> None:
        raw = {
            "connection_id": connection.connection_id,
            "provider": connection.provider,
            "mailbox_user": connection.mailbox_user,
            "salesforce_user_id": connection.salesforce_user_id,
            "options": json.dumps(codec.options_to_dict(connection.options)),
            "status": connection.status,
            "health": json.dumps({str(k): codec.health_value(v) for k, v in connection.health.items()}),
        }
        with self._lock:
            self.requests += 1
            self._connections[connection.connection_id] = raw

    def set_status(self, connection_id: str, status: ConnectionStatus, reason: str | None = None) -> None:
        with self._lock:
            self.requests += 1
            if connection_id not in self._connections:
                raise KeyError(connection_id)
            self._connections[connection_id] = {**self._connections[connection_id], "status": status, "reason": reason}

    def update_health(self, connection_id: str, **health: Any) -> None:
        if not health:
            return
        with self._lock:
            self.requests += 1
            raw = self._connections.get(connection_id)
            if raw is None:
                raise KeyError(connection_id)
            merged = {**json.loads(raw["health"]), **{k: codec.health_value(v) for k, v in health.items()}}
            self._connections[connection_id] = {**raw, "health": json.dumps(merged)}

    def record_deletes(self, connection_id: str, kind: ObjectKind, count: int, now: datetime, window_s: int) -> int:
        with self._lock:
            self.requests += 1
            buckets = self._deletes.setdefault((connection_id, kind), {})
            if count:
                bucket = codec.delete_bucket(now)
                buckets[bucket] = buckets.get(bucket, 0) + count
            total, stale = codec.window_split(buckets, now, window_s)
            if stale and count:
                self.requests += 1
                for name in stale:
                    del buckets[name]
            return total


def _load_connection(raw: dict[str, Any]) -> Connection:
    return Connection(
        connection_id=raw["connection_id"],
        provider=raw["provider"],
        mailbox_user=raw["mailbox_user"],
        salesforce_user_id=raw["salesforce_user_id"],
        options=codec.options_from_dict(json.loads(raw["options"])),
        status=raw["status"],
        health=json.loads(raw["health"]),
    )


class MemoryCursorStore:
    """:class:`concord.ports.CursorStore` in memory."""

    def __init__(self) -> None:
        self.requests = 0
        self._cursors: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def get(self, scope: str, name: str) -> str | None:
        with self._lock:
            self.requests += 1
            return self._cursors.get((scope, name))

    def put(self, scope: str, name: str, value: str, *, expected: str | None = None) -> None:
        with self._lock:
            self.requests += 1
            if expected is not None and self._cursors.get((scope, name)) != expected:
                raise CursorConflict(scope, name)
            self._cursors[(scope, name)] = value

    def delete(self, scope: str, name: str) -> None:
        with self._lock:
            self.requests += 1
            self._cursors.pop((scope, name), None)


class MemorySyncLog:
    """:class:`concord.ports.SyncLog` in memory; ``expires_at`` maps entry ids to their TTL."""

    def __init__(self, *, ttl_s: int = codec.DEFAULT_LOG_TTL_S) -> None:
        self.ttl_s = ttl_s
        self.requests = 0
        self.expires_at: dict[str, int] = {}
        self._entries: dict[tuple[str, str], str] = {}  # (connection, sort key) -> entry as JSON
        self._lock = threading.Lock()

    def append(self, entries: Sequence[LogEntry]) -> None:
        with self._lock:
            self.requests += codec.batches(len(entries), codec.BATCH_WRITE_MAX)
            for entry in entries:
                entry_id = entry.entry_id or codec.new_entry_id(entry.at)
                sk = codec.log_sk(entry.at, entry_id)
                self._entries[(entry.connection_id, sk)] = _dump_entry(replace(entry, entry_id=entry_id))
                self.expires_at[entry_id] = codec.log_expiry(entry.at, self.ttl_s)

    def by_connection(self, connection_id: str, *, limit: int = 100) -> builtins.list[LogEntry]:
        return self._newest(lambda entry: entry.connection_id == connection_id, limit)

    def by_status(self, status: LogStatus, *, limit: int = 100) -> builtins.list[LogEntry]:
        return self._newest(lambda entry: entry.status == status, limit)

    def by_record(self, record_key: str, *, limit: int = 100) -> builtins.list[LogEntry]:
        return self._newest(lambda entry: entry.record_key == record_key, limit)

    def _newest(self, keep: Callable[[LogEntry], bool], limit: int) -> builtins.list[LogEntry]:
        with self._lock:
            self.requests += 1
            entries = [(sk, _load_entry(raw)) for (_, sk), raw in self._entries.items()]
        return codec.newest_first(((sk, entry) for sk, entry in entries if keep(entry)), limit)


def _dump_entry(entry: LogEntry) -> str:
    return json.dumps(
        {
            "connection_id": entry.connection_id,
            "status": entry.status,
            "action": entry.action,
            "object_type": entry.object_type,
            "record_key": entry.record_key,
            "source": entry.source,
            "reason": entry.reason,
            "at": entry.at.isoformat(),
            "salesforce_id": entry.salesforce_id,
            "mailbox_id": entry.mailbox_id,
            "notice_id": entry.notice_id,
            "reasons": list(entry.reasons),
            "details": json.dumps(dict(entry.details), default=str),
            "entry_id": entry.entry_id,
        }
    )


def _load_entry(raw: str) -> LogEntry:
    data = json.loads(raw)
    return LogEntry(
        **{
            **data,
            "at": datetime.fromisoformat(data["at"]),
            "reasons": tuple(data["reasons"]),
            "details": json.loads(data["details"]),
        }
    )
