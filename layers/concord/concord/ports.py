"""The small interfaces the services use, one per thing they talk to.

Each store here has two implementations: a pynamodb one (``concord.adapters.stores``) and an in-memory
fake (``concord.adapters.memory``); one contract test suite (``tests/contract``) runs against both, so
the fake cannot drift from DynamoDB. Services depend on these protocols only; ``bootstrap.py`` is the
one place that picks the implementations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from datetime import datetime

    from concord.core import ConnectionOptions, LinkState, MailboxRecord, ObjectKind, Operation, SalesforceRecord
    from concord.notices import ObjectType

__all__ = [
    "Connection",
    "Crm",
    "CrmFeed",
    "CursorExpired",
    "FeedChange",
    "FeedPage",
    "MailboxFeed",
    "DeadLetters",
    "Mailbox",
    "WriteResult",
    "ConnectionStatus",
    "ConnectionStore",
    "CursorStore",
    "LinkConflict",
    "LinkKey",
    "LinkStore",
    "LogEntry",
    "LogStatus",
    "StoredLink",
    "SyncLog",
]


# ---------------------------------------------------------------- links


class LinkConflict(Exception):
    """A conditional link write lost: someone stored that link (or the other side's id) first.

    ``keys`` names the links whose write lost; the caller re-reads them and plans again once."""

    def __init__(self, keys: Sequence[LinkKey]):
        self.keys = tuple(keys)
        super().__init__(f"{len(self.keys)} link write(s) lost an optimistic lock")


@dataclass(frozen=True, slots=True)
class LinkKey:
    """Where a link is found: one side's id within one connection and object kind.

    ``side`` is ``salesforce`` or ``mailbox``; a link is reachable by either of its two ids."""

    connection_id: str
    kind: ObjectKind
    side: Literal["salesforce", "mailbox"]
    record_id: str


@dataclass(frozen=True, slots=True)
class StoredLink:
    """A link as stored: the core's :class:`LinkState` plus the store's optimistic-lock version.

    ``lock_version`` 0 means "not stored yet" (a new link); every successful write increments it.
    ``expires_at`` is set on tombstones only (epoch seconds: the table's TTL). ``claimed_at`` (epoch
    seconds) marks a *claim*: a link stored before its create ran, one of its ids still ``None``; the
    worker takes a claim over once it is older than its lease (the worker that made it died)."""

    connection_id: str
    link: LinkState
    lock_version: int = 0
    expires_at: int | None = None
    claimed_at: int | None = None


class LinkStore(Protocol):
    """Links between a Salesforce record and a mailbox item, per connection.

    Reads are strongly consistent by either id (a create is only safe after a consistent "no link"),
    in bulk; writes are conditional on ``lock_version``, in bulk."""

    def get_many(self, keys: Iterable[LinkKey]) -> dict[LinkKey, StoredLink]:
        """The stored links for these keys (keys with no link are absent from the answer).
        One BatchGetItem per 100 keys."""
        ...

    def put_many(self, links: Sequence[StoredLink]) -> list[StoredLink]:
        """Store each link if its stored ``lock_version`` still equals the given one (0: must not exist,
        and neither of its two ids may be linked to something else). Returns the links as stored
        (``lock_version`` + 1). Writes that won are kept even when others lost; then raises
        :class:`LinkConflict` naming the losers (by their Salesforce key, else their mailbox key)."""
        ...

    def delete(self, link: StoredLink) -> None:
        """Remove a link (both of its keys), conditional on its ``lock_version`` (reset)."""
        ...

    def count(self, connection_id: str, kind: ObjectKind) -> int:
        """How many live (non-tombstone) links a connection holds for a kind (the delete guard's base)."""
        ...

    def list(self, connection_id: str, kind: ObjectKind | None = None) -> list[StoredLink]:
        """Every link of a connection (reset, drift audit, on-call)."""
        ...


# ---------------------------------------------------------------- connections

type ConnectionStatus = Literal["active", "suspended", "needs_reauth", "degraded"]


@dataclass(frozen=True, slots=True)
class Connection:
    """One mailbox user's sync: which mailbox, which Salesforce user, its options and its health.

    ``mailbox_user`` is the user's id or address at the provider (what Graph's ``users/{id}`` and
    Google's delegation subject take); ``health`` holds ``last_success_at``, ``last_error``,
    ``pending``, ``channel_expiry`` and the like, for on-call to read."""

    connection_id: str
    provider: Literal["graph", "google"]
    mailbox_user: str
    salesforce_user_id: str
    options: ConnectionOptions
    status: ConnectionStatus = "active"
    health: Mapping[str, Any] = field(default_factory=dict)


class ConnectionStore(Protocol):
    """Connections, found by id, by Salesforce user (a Salesforce notice names only the record's owner)
    and by mailbox user (a Gmail push names only the address)."""

    def get(self, connection_id: str) -> Connection | None: ...

    def get_many(self, connection_ids: Iterable[str]) -> dict[str, Connection]: ...

    def by_salesforce_user(self, salesforce_user_ids: Iterable[str]) -> dict[str, list[Connection]]:
        """Connections per Salesforce user id (several mailboxes may belong to one user)."""
        ...

    def by_mailbox_user(self, provider: str, mailbox_user: str) -> Connection | None: ...

    def list(self, status: ConnectionStatus | None = None) -> list[Connection]: ...

    def put(self, connection: Connection) -> None: ...

    def set_status(self, connection_id: str, status: ConnectionStatus, reason: str | None = None) -> None: ...

    def update_health(self, connection_id: str, **health: Any) -> None:
        """Merge these keys into the connection's health (one UpdateItem)."""
        ...

    def record_deletes(self, connection_id: str, kind: ObjectKind, count: int, now: datetime, window_s: int) -> int:
        """Add ``count`` planned deletes to the connection's rolling window for ``kind`` and return the
        total within the last ``window_s`` seconds, this call's included (the mass-delete guard counts
        per connection over time, not per batch). ``count`` 0 only reads."""
        ...


# ---------------------------------------------------------------- cursors


class CursorStore(Protocol):
    """Delta cursors (delta links, sync tokens, history ids, watermarks), per connection (or per org,
    ``scope`` ``org``) and object kind. A cursor is saved only after what it covered is on the queue."""

    def get(self, scope: str, name: str) -> str | None: ...

    def put(self, scope: str, name: str, value: str, *, expected: str | None = None) -> None:
        """Save a cursor, conditional on the stored one still being ``expected`` (``None``: any)."""
        ...

    def delete(self, scope: str, name: str) -> None: ...


# ---------------------------------------------------------------- the sync log

type LogStatus = Literal["synced", "skipped", "failed", "held"]


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One decision or failure, as on-call reads it.

    ``record_key`` is ``<system>#<object_type>#<record_id>`` of the record the notice named;
    ``reasons`` are the per-field lines the core gave; ``details`` carries ids, counts and error codes
    (never field values beyond what a reason needs, never secrets)."""

    connection_id: str
    status: LogStatus
    action: str
    object_type: str
    record_key: str
    source: str
    reason: str
    at: datetime
    salesforce_id: str | None = None
    mailbox_id: str | None = None
    notice_id: str | None = None
    reasons: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    entry_id: str = ""


class SyncLog(Protocol):
    """The append-only sync log: written in bulk, read by connection, status or record."""

    def append(self, entries: Sequence[LogEntry]) -> None:
        """Store entries (one BatchWriteItem per 25); each gets a TTL."""
        ...

    def by_connection(self, connection_id: str, *, limit: int = 100) -> list[LogEntry]:
        """Newest first."""
        ...

    def by_status(self, status: LogStatus, *, limit: int = 100) -> list[LogEntry]: ...

    def by_record(self, record_key: str, *, limit: int = 100) -> list[LogEntry]: ...


# ---------------------------------------------------------------- the two systems


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one write did: the record's id and new version when it worked, else an error.

    ``error`` is a reason fit for the sync log (an error code and a message, never field values or
    secrets); ``transient`` says retrying later may work (throttling, 5xx, lock contention), with
    ``retry_after`` seconds when the service said. ``held`` lists, for a ``relate`` of people, the
    addresses Salesforce now holds (the rest resolve to no Contact, Lead or User). ``declined`` (with
    ``ok``) says the write was rightly not made and the record keeps what it held, ``note`` says why
    (a company no single Account is named after: the Contact keeps its Account)."""

    ok: bool
    record_id: str | None = None
    version: str | None = None
    error: str | None = None
    transient: bool = False
    retry_after: float | None = None
    held: tuple[str, ...] | None = None
    declined: bool = False
    note: str | None = None


class Crm(Protocol):
    """Salesforce, as the sync sees it: records read in bulk, candidates found in bulk, writes coalesced."""

    def fetch(self, sobject: str, ids: Sequence[str]) -> dict[str, SalesforceRecord]:
        """Current records by id (deleted ones with ``deleted=True``; ids that never existed absent)."""
        ...

    def candidates(self, kind: ObjectKind, keys: Sequence[Mapping[str, Any]]) -> list[SalesforceRecord]:
        """Records that may match any of these canonical match keys (email, names, iCalendar UID, ...),
        found with as few queries as the keys allow, every value escaped."""
        ...

    def converted_from(self, contact_ids: Sequence[str]) -> dict[str, str]:
        """Contact id → the id of the Lead converted into it, for those of ``contact_ids`` that were."""
        ...

    def people(self, emails: Iterable[str]) -> dict[str, str]:
        """Address → the Contact, else Lead, else User that has it (one query per sObject for all)."""
        ...

    def apply(self, operations: Sequence[Operation]) -> list[WriteResult]:
        """Execute Salesforce operations (create, update, delete, relate), coalesced per sObject and
        action, one result per operation in order. A ``relate`` whose ``record_id`` is ``None`` is not
        accepted: the caller fills in the id a create returned."""
        ...

    def calls(self) -> int:
        """API calls made so far (the worker reports them)."""
        ...

    def budget_left(self) -> float | None:
        """The share of the org's daily API limit still unused (``Sforce-Limit-Info``), once known."""
        ...


class Mailbox(Protocol):
    """One provider's mailbox side (Graph or Google), for any connection of that provider."""

    def fetch(self, connection: Connection, kind: ObjectKind, ids: Sequence[str]) -> dict[str, MailboxRecord]: ...

    def candidates(
        self, connection: Connection, kind: ObjectKind, keys: Sequence[Mapping[str, Any]]
    ) -> list[MailboxRecord]:
        """Items of this mailbox that may match the keys (contacts by email, events by iCalendar UID)."""
        ...

    def apply(
        self,
        connection: Connection,
        kind: ObjectKind,
        operations: Sequence[Operation],
        keys: Sequence[str | None] = (),
    ) -> list[WriteResult]:
        """Execute mailbox operations (create, update, delete) in bulk, one result per operation in order.

        ``keys`` (one per operation, or empty) are idempotency keys for creates, the Salesforce id of the
        record a create copies: the same key never makes a second item, in this invocation or a later one
        (a client-chosen Calendar event id, a People ``clientData`` marker, a Graph ``transactionId``)."""
        ...

    def calls(self) -> int: ...


# ---------------------------------------------------------------- change feeds (the catch-up)


@dataclass(frozen=True, slots=True)
class FeedChange:
    """One record a feed reports changed (or gone): what becomes a ``change`` notice on the queue.

    ``version`` is the source's version when the feed knows it (a Salesforce ``SystemModstamp``, a Graph
    ``@odata.etag``, a Calendar ``etag``): the notice's ``source_version``."""

    record_id: str
    deleted: bool = False
    version: str | None = None


@dataclass(frozen=True, slots=True)
class FeedPage:
    """What a feed found since a cursor (or in a full load) and the cursor to save once it is queued."""

    changes: list[FeedChange]
    cursor: str


class CursorExpired(Exception):
    """The provider no longer knows the cursor (Graph 410 ``syncStateNotFound``, Calendar 410
    ``fullSyncRequired``, People ``EXPIRED_SYNC_TOKEN``, Gmail 404 on an old history id): a full load
    is needed. ``reason`` names which, for the sync log (never the cursor itself: it can be a URL
    with a token in it)."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class MailboxFeed(Protocol):
    """One provider's change listing per connection and object: Graph delta links, Calendar and People
    sync tokens, Gmail history ids. The cursor is opaque to the caller and saved by it."""

    def changes(self, connection: Connection, object_type: ObjectType, cursor: str | None, now: datetime) -> FeedPage:
        """What changed since ``cursor``; with ``None``, everything within the connection's filters (its
        contact folder or group, its event window around ``now``, mail of its window), then the cursor
        to continue from. Raises :class:`CursorExpired` when the provider no longer knows ``cursor``."""
        ...

    def calls(self) -> int: ...


class CrmFeed(Protocol):
    """Salesforce's side of the catch-up: one watermark query per object for the whole org."""

    def changed_since(self, sobject: str, since: datetime, owners: Sequence[str]) -> list[FeedChange]:
        """Records of these owners whose ``SystemModstamp`` is at or after ``since`` (``queryAll``:
        deleted ones too, with ``deleted``), ``version`` their ``SystemModstamp``, as few queries as
        the owner list allows."""
        ...

    def owned(self, sobject: str, owner: str, now: datetime, options: ConnectionOptions) -> list[FeedChange]:
        """Every live record ``owner`` owns within the connection's filters (events: within its window
        around ``now``): the Salesforce half of a first sync, reset or audit."""
        ...


class DeadLetters(Protocol):
    """Where a message that retrying cannot help goes at once, with its reason."""

    def send(self, body: str, reason: str, *, message_id: str, attributes: Mapping[str, str] | None = None) -> None: ...
