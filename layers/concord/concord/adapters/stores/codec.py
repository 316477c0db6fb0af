"""What the DynamoDB stores and their in-memory fakes share: key layouts, serialisation, the delete
window's buckets, entry ids and the packing of link writes into transactions.

Pure code (no pynamodb, no I/O), so the fakes in ``concord.adapters.memory`` use exactly the same
rules as the real stores and count the same requests.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import fields
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Literal

from concord.core import ConnectionOptions, DeleteLimits

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from concord.core import LinkState
    from concord.ports import LinkKey, StoredLink

type LinkSide = Literal["salesforce", "mailbox"]

#: DynamoDB's limits: BatchGetItem keys, BatchWriteItem requests, TransactWriteItems actions.
BATCH_GET_MAX = 100
BATCH_WRITE_MAX = 25
TRANSACTION_MAX = 100

#: Salesforce redelivers change events for 24 h (and a mailbox notice can be retried as long): a
#: tombstone of a pair deleted on both sides must outlive that, twice over.
MIN_TOMBSTONE_TTL_S = 48 * 3600
DEFAULT_TOMBSTONE_TTL_S = 7 * 24 * 3600
DEFAULT_LOG_TTL_S = 30 * 24 * 3600

#: The delete window counts per minute: a bucket counts while any part of it is inside the window,
#: so the window is rounded outward to whole minutes (a guard errs on counting more, never less).
DELETE_BUCKET_S = 60
DELETE_BUCKET_PREFIX = "m"


class CursorConflict(Exception):
    """A conditional cursor write lost: the stored cursor is no longer the one the caller read."""

    def __init__(self, scope: str, name: str):
        self.scope, self.name = scope, name
        super().__init__(f"cursor {name} of {scope} changed since it was read")


# ------------------------------------------------------------------------------------ keys


def connection_pk(connection_id: str) -> str:
    return f"CONN#{connection_id}"


def link_sk(kind: str, side: str, record_id: str) -> str:
    return f"LINK#{kind}#{'SF' if side == 'salesforce' else 'MB'}#{record_id}"


def link_prefix(kind: str | None) -> str:
    return f"LINK#{kind}#" if kind else "LINK#"


def count_sk(kind: str) -> str:
    return f"COUNT#{kind}"


def deletes_sk(kind: str) -> str:
    return f"DELETES#{kind}"


def mailbox_user_key(provider: str, mailbox_user: str) -> str:
    """Addresses and Graph ids are case-insensitive: the key is lower-cased so a Gmail push's address finds
    the connection whatever case the connection was stored with."""
    return f"{provider}#{mailbox_user.lower()}"


def cursor_pk(scope: str) -> str:
    return "ORG" if scope == "org" else connection_pk(scope)


def cursor_sk(name: str) -> str:
    return f"CURSOR#{name}"


def link_keys(stored: StoredLink) -> list[tuple[LinkSide, str]]:
    """The (side, id) pairs a link is stored under: one item per id it has."""
    link = stored.link
    keys: list[tuple[LinkSide, str]] = []
    if link.salesforce_id is not None:
        keys.append(("salesforce", link.salesforce_id))
    if link.mailbox_id is not None:
        keys.append(("mailbox", link.mailbox_id))
    return keys


def primary_key(stored: StoredLink) -> LinkKey:
    """How a link is named in a :class:`LinkConflict`: its Salesforce key, else its mailbox key."""
    from concord.ports import LinkKey

    side, record_id = link_keys(stored)[0]
    return LinkKey(stored.connection_id, stored.link.kind, side, record_id)


def check_links(links: Sequence[StoredLink]) -> None:
    """Reject what DynamoDB would reject late (one item twice in a transaction) or what cannot be stored."""
    seen: set[tuple[str, str, str, str]] = set()
    for stored in links:
        keys = link_keys(stored)
        if not keys:
            raise ValueError("a link needs a Salesforce id or a mailbox id")
        for side, record_id in keys:
            key = (stored.connection_id, stored.link.kind, side, record_id)
            if key in seen:
                raise ValueError(f"two links in one write share the {side} id of a {stored.link.kind}")
            seen.add(key)


def is_live(link: LinkState | None) -> bool:
    return link is not None and not link.is_tombstone


def tombstone_expiry(link: LinkState, now: float, ttl_s: int) -> int | None:
    """Only a pair deleted on both sides expires: while one record survives, its tombstone keeps the
    survivor from being linked (or re-created) again."""
    if link.is_tombstone and link.deleted_side == "both":
        return int(now) + ttl_s
    return None


def pack(writes: Sequence[tuple[int, tuple[str, str]]]) -> list[list[int]]:
    """Group link writes into transactions of at most 100 actions.

    ``writes`` holds, per link, its item actions and its counter (connection, kind); a transaction
    updates each counter once (DynamoDB refuses two actions on one item), so a counter costs one action
    per transaction however many links it counts. Returns the links' indexes per transaction."""
    chunks: list[list[int]] = []
    current: list[int] = []
    counters: set[tuple[str, str]] = set()
    actions = 0
    for index, (items, counter) in enumerate(writes):
        extra = items + (0 if counter in counters else 1)
        if current and actions + extra > TRANSACTION_MAX:
            chunks.append(current)
            current, counters, actions = [], set(), 0
            extra = items + 1
        current.append(index)
        counters.add(counter)
        actions += extra
    if current:
        chunks.append(current)
    return chunks


def batches(count: int, size: int) -> int:
    """Requests needed for ``count`` items at ``size`` per request."""
    return math.ceil(count / size)


# ------------------------------------------------------------------------------------ options


def options_to_dict(options: ConnectionOptions) -> dict[str, Any]:
    """JSON form of a connection's options (inverse of :func:`options_from_dict`)."""
    data: dict[str, Any] = {}
    for spec in fields(options):
        value = getattr(options, spec.name)
        if spec.name == "directions":
            value = dict(value)
        elif spec.name == "delete_limits":
            value = {
                kind: {"count": lim.count, "share": lim.share, "minimum": lim.minimum} for kind, lim in value.items()
            }
        data[spec.name] = value
    return data


def options_from_dict(data: Mapping[str, Any]) -> ConnectionOptions:
    """Rebuild options; a field stored by an older version and since removed is ignored, a new one
    takes its default."""
    known = {spec.name for spec in fields(ConnectionOptions)}
    values = {name: value for name, value in data.items() if name in known}
    if "directions" in values:
        values["directions"] = dict(values["directions"])
    if "delete_limits" in values:
        values["delete_limits"] = {
            kind: DeleteLimits(int(lim["count"]), float(lim["share"]), int(lim.get("minimum", 5)))
            for kind, lim in values["delete_limits"].items()
        }
    return ConnectionOptions(**values)


def health_value(value: Any) -> Any:
    """Health values are stored as JSON-like values; times become ISO-8601 text."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): health_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [health_value(v) for v in value]
    return value


# ------------------------------------------------------------------------------------ delete window


def delete_bucket(now: datetime) -> str:
    return f"{DELETE_BUCKET_PREFIX}{int(now.timestamp()) // DELETE_BUCKET_S}"


def window_split(buckets: Mapping[str, int], now: datetime, window_s: int) -> tuple[int, list[str]]:
    """The deletes inside the window, and the buckets wholly before it (to prune)."""
    start = now.timestamp() - window_s
    total, stale = 0, []
    for name, count in buckets.items():
        minute = int(name[len(DELETE_BUCKET_PREFIX) :])
        if (minute + 1) * DELETE_BUCKET_S > start:
            total += int(count)
        else:
            stale.append(name)
    return total, sorted(stale)


def is_bucket(name: str) -> bool:
    return name.startswith(DELETE_BUCKET_PREFIX) and name[len(DELETE_BUCKET_PREFIX) :].isdigit()


# ------------------------------------------------------------------------------------ sync log

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_entry_id(at: datetime) -> str:
    """A ULID: 48 bits of milliseconds then 80 random bits, Crockford base32 (26 characters), so ids
    sort by time and two workers never collide."""
    millis = int(at.timestamp() * 1000) if at.tzinfo else int(at.replace(tzinfo=UTC).timestamp() * 1000)
    value = (millis & ((1 << 48) - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def log_sk(at: datetime, entry_id: str) -> str:
    """Entries sort by time: the UTC time, to the microsecond, then the entry id."""
    moment = at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
    return f"{moment.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}#{entry_id}"


def log_expiry(at: datetime, ttl_s: int) -> int:
    moment = at if at.tzinfo else at.replace(tzinfo=UTC)
    return int(moment.timestamp()) + ttl_s


def epoch() -> float:
    return time.time()


def newest_first(entries: Iterable[tuple[str, Any]], limit: int) -> list[Any]:
    return [value for _, value in sorted(entries, key=lambda pair: pair[0], reverse=True)[:limit]]
