"""The catch-up: every change a push missed is found from a cursor and queued like a push.

Pushes are hints that can be late, duplicated or lost, so each connection and object also has a cursor
(Graph delta link, Calendar or People sync token, Gmail history id) and Salesforce has one watermark per
object for the whole org. :meth:`CatchUpService.handle` runs the ``catch_up`` notices the worker
receives; what a feed reports becomes ``change`` notices on the changes queue, so a repaired change takes
the same path, with the same guarantees, as a pushed one.

Where ``catch_up`` notices come from: ingress (a Gmail push, a Calendar ping, a Graph ``missed``
lifecycle event, a Salesforce ``GAP_OVERFLOW``), the channels service (after a channel lapsed), and the
reconciler's schedule (:meth:`CatchUpSchedule.due`): Salesforce objects every run, each connection at least
every :attr:`CatchUpPolicy.interval` even while pushes arrive (a silent channel is found within the hour),
a first sync for a new connection and the daily drift audit. The reconciler only queues; the work runs in
the workers, in parallel, so a run's cost does not grow with the number of connections.

Guarantees:

* **Nothing lost, nothing doubled**: a cursor is saved only after what it covered is on the queue (the
  save is conditional on the cursor read, so two catch-ups of the same object cannot move it backwards).
  Dying between the two re-queues the same changes next time: notices are hints and the worker is
  idempotent, so that costs reads, never a duplicate record.
* **Salesforce per org**: one ``SystemModstamp`` query per object serves every connection (owners in
  chunks), so the idle cost does not grow with users. The watermark is taken *before* the query and the
  next window starts :attr:`CatchUpPolicy.overlap` earlier (``SystemModstamp`` is whole seconds and a
  transaction commits after its stamp); records already queued at the same stamp are not queued again.
* **Expired cursors**: one full load of that object within the connection's filters, recorded in the
  sync log with its reason; it never fails the connection. A cursor that expires again during that load,
  or within :attr:`CatchUpPolicy.resync_cooldown` of it, raises an alarm (outcome ``alarms``, the
  function's ``CursorExpiredAgain`` metric) and waits instead of looping.
* **First sync, reset, sync now** (``resync`` notices; :meth:`CatchUpSchedule.reset` clears a
  connection first): a full load of both sides within the filters,
  every record queued; the worker matches before it creates, so nothing is duplicated and, since a first
  sync only links and fills in, no attendee is mailed.
* **Drift audit** (``resync: audit``): both sides listed and compared with the links; only disagreements
  are queued, and their count is the connection's ``drift`` (metric ``DriftFound``, alarmed).
* **API budget**: ``scheduled`` catch-ups are deferred (acknowledged, cursor kept) while Salesforce's
  daily budget is below :attr:`CatchUpPolicy.budget_floor`; pushes (live changes) are not.
* **Health** (``Connection.health``): ``last_catch_up_at``, ``catch_up_error``, ``catch_up_failures``,
  ``last_catch_up_queued``, ``last_audit``; repeated failures mark the connection ``degraded``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from concord.adapters.http import ConnectorError, TransientError
from concord.adapters.stores.codec import CursorConflict
from concord.notices import ChangeNotice
from concord.ports import CursorExpired, FeedChange, LogEntry

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from concord.core import ObjectKind
    from concord.notices import ObjectType, Resync, Source
    from concord.ports import (
        Connection,
        ConnectionStatus,
        ConnectionStore,
        Crm,
        CrmFeed,
        CursorStore,
        LinkStore,
        LogStatus,
        Mailbox,
        MailboxFeed,
        StoredLink,
    )
    from concord.service.channels import NoticeSink

__all__ = [
    "MAILBOX_OBJECTS",
    "SALESFORCE_OBJECTS",
    "CatchUpOutcome",
    "CatchUpPolicy",
    "CatchUpSchedule",
    "CatchUpService",
]

#: The mailbox objects a connection catches up, and the Salesforce objects the org watermark covers.
MAILBOX_OBJECTS: tuple[ObjectType, ...] = ("contact", "event", "email")
SALESFORCE_OBJECTS: Mapping[ObjectType, str] = {"contact": "Contact", "lead": "Lead", "event": "Event"}
#: The Salesforce objects a connection's mailbox object syncs with (the Salesforce half of a full load).
_OWNED: Mapping[ObjectType, tuple[tuple[ObjectType, str], ...]] = {
    "contact": (("contact", "Contact"), ("lead", "Lead")),
    "event": (("event", "Event"),),
    "email": (),
}
_KIND: Mapping[ObjectType, ObjectKind] = {"contact": "contact", "event": "event", "email": "email"}
#: Connections whose catch-ups run; a suspended one or one awaiting re-consent keeps its cursors for later.
LIVE_STATUSES: tuple[ConnectionStatus, ...] = ("active", "degraded")
ORG_SCOPE = "org"
_MAX_REASON = 300


@dataclass(frozen=True, slots=True)
class CatchUpPolicy:
    """How often and how far back. Deployed values come from the template's parameters."""

    interval: timedelta = timedelta(hours=1)
    overlap: timedelta = timedelta(minutes=5)
    #: With no watermark yet, Salesforce is read back this far (pushes covered the time before).
    first_lookback: timedelta = timedelta(hours=1)
    resync_cooldown: timedelta = timedelta(days=1)
    audit_every: timedelta = timedelta(days=1)
    #: Share of the daily Salesforce API limit below which scheduled catch-ups wait.
    budget_floor: float = 0.2
    #: Consecutive failed catch-ups that mark a connection degraded.
    failures_to_degrade: int = 3


@dataclass
class CatchUpOutcome:
    """What a run did: notices queued, re-syncs and their reasons, alarms, retries and the log entries."""

    queued: int = 0
    deferred: int = 0
    resyncs: list[str] = field(default_factory=list)
    alarms: list[str] = field(default_factory=list)
    drift: dict[str, int] = field(default_factory=dict)
    #: notice id → seconds to wait (``None``: the queue's backoff) for catch-ups that failed transiently.
    retry: dict[str, float | None] = field(default_factory=dict)
    entries: list[LogEntry] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {
            "queued": self.queued,
            "deferred": self.deferred,
            "resyncs": len(self.resyncs),
            "alarms": len(self.alarms),
            "drift": sum(self.drift.values()),
            "retry": len(self.retry),
        }


@dataclass(frozen=True, slots=True)
class _Watermark:
    """A Salesforce object's cursor: when the last query started and what it queued within the overlap."""

    at: datetime
    seen: Mapping[str, str]

    def dump(self) -> str:
        return json.dumps({"at": self.at.isoformat(), "seen": dict(self.seen)}, separators=(",", ":"))

    @classmethod
    def load(cls, raw: str) -> _Watermark:
        data = json.loads(raw)
        return cls(datetime.fromisoformat(data["at"]), dict(data.get("seen", {})))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("+0000", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _hours(span: timedelta) -> str:
    return f"{span.total_seconds() / 3600:g} h"


def _reason(exc: Exception) -> str:
    text = str(exc) if isinstance(exc, ConnectorError | CursorExpired) else type(exc).__name__
    return text[:_MAX_REASON]


class CatchUpSchedule:
    """What the reconciler queues each run, and what a reset or sync-now asks for (no API credentials
    needed: the workers do the work)."""

    def __init__(
        self,
        connections: ConnectionStore,
        policy: CatchUpPolicy | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.connections = connections
        self.policy = policy or CatchUpPolicy()
        self.clock = clock

    def due(self) -> list[ChangeNotice]:
        """The scheduled catch-ups to queue now: each Salesforce object (when any connection is live),
        a first sync for each connection that never had one, a catch-up of every object of each
        connection not caught up within the interval, and the audit of those not audited within a day."""
        now = self.clock()
        live = [c for status in LIVE_STATUSES for c in self.connections.list(status)]
        stamp = _iso(now)
        notices: list[ChangeNotice] = []
        if live:
            notices += [
                ChangeNotice(
                    source="salesforce",
                    object_type=object_type,
                    kind="catch_up",
                    scheduled=True,
                    provider_event_id=f"schedule:{object_type}:{stamp}",
                    received_at=now,
                )
                for object_type in SALESFORCE_OBJECTS
            ]
        for connection in live:
            health = connection.health
            resync: Resync | None = None
            if not health.get("first_sync_at"):
                requested = _parse(health.get("first_sync_requested_at"))
                if requested is not None and now - requested < self.policy.interval:
                    continue  # asked for already; its workers are at it
                resync = "first_sync"
                self.connections.update_health(connection.connection_id, first_sync_requested_at=stamp)
            else:
                last = _parse(health.get("last_catch_up_at"))
                audited = _parse(health.get("last_audit_at"))
                if audited is None or now - audited >= self.policy.audit_every:
                    resync = "audit"
                elif last is not None and now - last < self.policy.interval:
                    continue
            notices += self.requests(connection, resync, scheduled=True)
        return notices

    def requests(self, connection: Connection, resync: Resync | None, *, scheduled: bool) -> list[ChangeNotice]:
        """The ``catch_up`` notices, one per mailbox object, that catch ``connection`` up (or load it
        whole, with ``resync``): what the reconciler and an admin's reset or sync-now queue."""
        now = self.clock()
        return [
            ChangeNotice(
                source=connection.provider,
                connection_id=connection.connection_id,
                object_type=object_type,
                kind="catch_up",
                resync=resync,
                scheduled=True if scheduled else None,
                provider_event_id=f"{resync or 'schedule'}:{connection.connection_id}:{object_type}:{_iso(now)}",
                received_at=now,
            )
            for object_type in MAILBOX_OBJECTS
        ]

    def reset(self, connection_id: str, *, links: LinkStore, cursors: CursorStore) -> list[ChangeNotice]:
        """Lightning Sync's reset: clear the connection's links and cursors; the notices returned, once
        queued, load both sides again and re-match every record (matching finds each pair again, so
        nothing is duplicated and nobody is mailed)."""
        connection = self.connections.get(connection_id)
        if connection is None:
            raise LookupError(f"no connection {connection_id!r}")
        for stored in links.list(connection_id):
            links.delete(stored)
        for object_type in MAILBOX_OBJECTS:
            cursors.delete(connection_id, object_type)
            cursors.delete(connection_id, f"{object_type}#resync")
        return self.requests(connection, "reset", scheduled=False)


class CatchUpService:
    """See the module docstring. Built by ``bootstrap`` for the worker and the reconciler."""

    def __init__(
        self,
        *,
        connections: ConnectionStore,
        cursors: CursorStore,
        links: LinkStore,
        queue: NoticeSink,
        crm: Crm,
        crm_feed: CrmFeed,
        mailboxes: Mapping[str, Mailbox],
        feeds: Mapping[str, MailboxFeed],
        policy: CatchUpPolicy | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.connections = connections
        self.cursors = cursors
        self.links = links
        self.queue = queue
        self.crm = crm
        self.crm_feed = crm_feed
        self.mailboxes = mailboxes
        self.feeds = feeds
        self.policy = policy or CatchUpPolicy()
        self.clock = clock

    # ------------------------------------------------------------------ catch_up notices

    def handle(self, notices: Sequence[ChangeNotice]) -> CatchUpOutcome:
        """Run the ``catch_up`` notices of one worker batch (repeats of one object run once). The caller
        appends ``entries`` to the sync log with the rest of its batch."""
        outcome = CatchUpOutcome()
        budget = self.crm.budget_left()
        low_budget = budget is not None and budget < self.policy.budget_floor
        done: set[tuple[Any, ...]] = set()
        connections = self.connections.get_many({n.connection_id for n in notices if n.connection_id})
        for notice in notices:
            identity = (notice.source, notice.connection_id, notice.object_type, notice.resync)
            if identity in done:
                continue
            done.add(identity)
            if low_budget and (notice.scheduled or notice.resync):
                outcome.deferred += 1
                reason = (
                    f"deferred: the Salesforce API budget is below {self.policy.budget_floor:.0%} of the daily limit"
                )
                outcome.entries.append(self._entry(notice, "skipped", reason))
                continue
            if notice.source == "salesforce":
                self._guarded(outcome, notice, None, partial(self._salesforce, notice, outcome))
                continue
            connection = connections.get(notice.connection_id or "")
            if connection is None or connection.status not in LIVE_STATUSES:
                state = "no longer exists" if connection is None else f"is {connection.status}"
                outcome.entries.append(
                    self._entry(notice, "skipped", f"the connection {state}; its cursor waits for it")
                )
                continue
            self._guarded(outcome, notice, connection, partial(self._mailbox, connection, notice, outcome))
        return outcome

    def _guarded(
        self, outcome: CatchUpOutcome, notice: ChangeNotice, connection: Connection | None, run: Callable[[], None]
    ) -> None:
        """Run one catch-up; a failure retries its notice (transient) or is logged and counted in the
        connection's health (the hourly schedule tries again), never failing the others."""
        try:
            run()
        except TransientError as exc:
            outcome.retry[notice.id] = exc.retry_after
            outcome.entries.append(self._entry(notice, "failed", f"catch-up will retry: {_reason(exc)}"))
        except ConnectorError as exc:
            reason = f"catch-up failed: {_reason(exc)}"
            outcome.entries.append(self._entry(notice, "failed", reason))
            if connection is not None:
                self._unhealthy(connection, reason)
        else:
            if connection is not None and notice.resync != "audit":
                self._healthy(connection, notice.object_type)

    # ------------------------------------------------------------------ Salesforce, per org

    def _salesforce(self, notice: ChangeNotice, outcome: CatchUpOutcome) -> None:
        sobject = SALESFORCE_OBJECTS.get(notice.object_type)
        if sobject is None:
            outcome.entries.append(self._entry(notice, "skipped", f"{notice.object_type} has no catch-up"))
            return
        name = f"salesforce:{sobject}"
        raw = self.cursors.get(ORG_SCOPE, name)
        now = self.clock()  # taken before the query: what commits during it is in the next window
        mark = _Watermark.load(raw) if raw else _Watermark(now - self.policy.first_lookback, {})
        owners = sorted({c.salesforce_user_id for s in LIVE_STATUSES for c in self.connections.list(s)})
        changes = self.crm_feed.changed_since(sobject, mark.at - self.policy.overlap, owners) if owners else []
        fresh = [c for c in changes if mark.seen.get(c.record_id) != c.version]
        self._send(outcome, [self._notice("salesforce", None, notice.object_type, c, "watermark") for c in fresh])
        horizon = now - self.policy.overlap
        seen = {c.record_id: c.version or "" for c in changes if (_parse(c.version) or now) >= horizon}
        self._save(ORG_SCOPE, name, _Watermark(now, seen).dump(), raw)
        if fresh:  # an idle round is not a decision: the cursor's move says it ran
            outcome.entries.append(
                self._entry(notice, "synced", f"Salesforce {sobject} caught up: {len(fresh)} change(s) queued")
            )

    # ------------------------------------------------------------------ mailboxes, per connection

    def _mailbox(self, connection: Connection, notice: ChangeNotice, outcome: CatchUpOutcome) -> None:
        object_type = notice.object_type
        if object_type not in MAILBOX_OBJECTS:
            outcome.entries.append(self._entry(notice, "skipped", f"{object_type} has no mailbox catch-up"))
            return
        if notice.resync == "audit":
            self._audit(connection, notice, outcome)
            return
        feed = self.feeds[connection.provider]
        name = str(object_type)
        raw = self.cursors.get(connection.connection_id, name)
        if notice.resync:
            self._full_load(connection, notice, outcome, reason=notice.resync.replace("_", " "), with_salesforce=True)
            if notice.resync == "first_sync":
                self.connections.update_health(connection.connection_id, first_sync_at=_iso(self.clock()))
            return
        if raw is None:
            self._full_load(connection, notice, outcome, reason="no cursor yet", with_salesforce=False)
            return
        try:
            page = feed.changes(connection, object_type, raw, self.clock())
        except CursorExpired as exc:
            self._expired(connection, notice, outcome, exc)
            return
        self._send(
            outcome, [self._notice(connection.provider, connection, object_type, c, "delta") for c in page.changes]
        )
        self._save(connection.connection_id, name, page.cursor, raw)
        if page.changes:  # an idle round is not a decision: health.last_catch_up_at says it ran
            outcome.entries.append(
                self._entry(notice, "synced", f"{object_type} caught up: {len(page.changes)} change(s) queued")
            )

    def _expired(
        self, connection: Connection, notice: ChangeNotice, outcome: CatchUpOutcome, exc: CursorExpired
    ) -> None:
        """One bounded full load per cooldown; another expiry within it alarms and waits."""
        marker_name = f"{notice.object_type}#resync"
        marker = self.cursors.get(connection.connection_id, marker_name)
        last = _parse(json.loads(marker).get("at")) if marker else None
        now = self.clock()
        if last is not None and now - last < self.policy.resync_cooldown:
            again = f"{exc.reason}, again within {_hours(self.policy.resync_cooldown)} of a re-sync"
            self._alarm(connection, notice, outcome, again)
            return
        self.cursors.put(
            connection.connection_id, marker_name, json.dumps({"at": _iso(now), "reason": exc.reason}), expected=None
        )
        self._full_load(connection, notice, outcome, reason=f"cursor expired ({exc.reason})", with_salesforce=False)

    def _alarm(self, connection: Connection, notice: ChangeNotice, outcome: CatchUpOutcome, reason: str) -> None:
        text = f"{notice.object_type} cursor expired during or soon after a full re-sync: {reason}"[:_MAX_REASON]
        outcome.alarms.append(f"{connection.connection_id}: {text}")
        outcome.entries.append(self._entry(notice, "failed", f"{text}; not re-syncing again until on-call looks"))
        self.connections.update_health(connection.connection_id, cursor_alarm=text)

    def _full_load(
        self,
        connection: Connection,
        notice: ChangeNotice,
        outcome: CatchUpOutcome,
        *,
        reason: str,
        with_salesforce: bool,
    ) -> None:
        """Queue every record of the object within the connection's filters (and, for a first sync, reset
        or sync-now, every Salesforce record its user owns), then start the cursor afresh."""
        object_type = notice.object_type
        name = str(object_type)
        raw = self.cursors.get(connection.connection_id, name)
        try:
            page = self.feeds[connection.provider].changes(connection, object_type, None, self.clock())
        except CursorExpired as exc:  # the provider's paging expired during the load itself
            self._alarm(connection, notice, outcome, exc.reason)
            return
        notices = [
            self._notice(connection.provider, connection, object_type, c, "full") for c in page.changes if not c.deleted
        ]
        if with_salesforce:
            for sf_type, sobject in _OWNED[object_type]:
                owned = self.crm_feed.owned(sobject, connection.salesforce_user_id, self.clock(), connection.options)
                notices += [self._notice("salesforce", None, sf_type, c, "full") for c in owned]
        self._send(outcome, notices)
        self._save(connection.connection_id, name, page.cursor, raw)
        outcome.resyncs.append(f"{connection.connection_id}/{object_type}: {reason}")
        outcome.entries.append(
            self._entry(notice, "synced", f"{object_type} full re-sync ({reason}): {len(notices)} record(s) queued")
        )

    # ------------------------------------------------------------------ the drift audit

    def _audit(self, connection: Connection, notice: ChangeNotice, outcome: CatchUpOutcome) -> None:
        """Compare the links with what each side holds; queue each disagreement for the worker to repair."""
        object_type = notice.object_type
        if object_type == "email":  # logged mail is never synced back: nothing can drift
            return
        kind = _KIND[object_type]
        links = [
            s for s in self.links.list(connection.connection_id, kind) if s.expires_at is None and not s.claimed_at
        ]
        listed = self.feeds[connection.provider].changes(connection, object_type, None, self.clock()).changes
        in_mailbox = {c.record_id for c in listed if not c.deleted}
        owned: dict[str, ObjectType] = {}
        for sf_type, sobject in _OWNED[object_type]:
            for change in self.crm_feed.owned(sobject, connection.salesforce_user_id, self.clock(), connection.options):
                owned[change.record_id] = sf_type
        linked_mb = {s.link.mailbox_id: s for s in links if s.link.mailbox_id}
        linked_sf = {s.link.salesforce_id: s for s in links if s.link.salesforce_id}
        # A linked item missing from a listing may only have left the window: it is drift when it is gone.
        unlisted_mb = [i for i in linked_mb if i not in in_mailbox]
        gone_mb = set(unlisted_mb) - set(self.mailboxes[connection.provider].fetch(connection, kind, unlisted_mb))
        unlisted_sf = [i for i in linked_sf if i not in owned]
        gone_sf = self._gone_in_salesforce(linked_sf, unlisted_sf)
        direction = connection.options.directions.get(object_type, "both")
        queued: list[ChangeNotice] = []
        for record_id in sorted(gone_mb | (in_mailbox - set(linked_mb) if direction != "to_mailbox" else set())):
            change = _change(record_id, deleted=record_id in gone_mb)
            queued.append(self._notice(connection.provider, connection, object_type, change, "audit"))
        for record_id in sorted(gone_sf):
            sf_type = owned.get(record_id) or _salesforce_type(linked_sf[record_id])
            queued.append(self._notice("salesforce", None, sf_type, _change(record_id, deleted=True), "audit"))
        if direction != "to_salesforce":
            for record_id, sf_type in sorted(owned.items()):
                if record_id not in linked_sf:
                    queued.append(self._notice("salesforce", None, sf_type, _change(record_id), "audit"))
        self._send(outcome, queued)
        outcome.drift[connection.connection_id] = outcome.drift.get(connection.connection_id, 0) + len(queued)
        now = _iso(self.clock())
        self.connections.update_health(
            connection.connection_id,
            last_audit_at=now,
            last_audit={"at": now, "object": object_type, "drift": len(queued)},
        )
        outcome.entries.append(
            self._entry(
                notice, "synced", f"{object_type} audit: {len(links)} link(s), {len(queued)} disagreement(s) queued"
            )
        )

    def _gone_in_salesforce(self, linked: Mapping[str, StoredLink], ids: Sequence[str]) -> set[str]:
        by_sobject: dict[str, list[str]] = defaultdict(list)
        for record_id in ids:
            by_sobject[linked[record_id].link.salesforce_object].append(record_id)
        gone: set[str] = set()
        for sobject, record_ids in by_sobject.items():
            found = self.crm.fetch(sobject, record_ids)
            gone |= {i for i in record_ids if i not in found or found[i].deleted}
        return gone

    # ------------------------------------------------------------------ plumbing

    def _notice(
        self, source: Source, connection: Connection | None, object_type: ObjectType, change: FeedChange, origin: str
    ) -> ChangeNotice:
        return ChangeNotice(
            source=source,
            connection_id=connection.connection_id if connection else None,
            object_type=object_type,
            record_id=change.record_id,
            source_version=change.version,
            deleted=True if change.deleted else None,
            provider_event_id=f"{origin}:{change.record_id}:{change.version or ''}"[:512],
            received_at=self.clock(),
        )

    def _send(self, outcome: CatchUpOutcome, notices: list[ChangeNotice]) -> None:
        if notices:
            self.queue.send(notices)
            outcome.queued += len(notices)

    def _save(self, scope: str, name: str, value: str, read: str | None) -> None:
        """Save a cursor unless another catch-up of the same object saved one since it was read: then
        theirs stands (what this one queued is harmless twice)."""
        try:
            self.cursors.put(scope, name, value, expected=read)
        except CursorConflict:
            return

    def _healthy(self, connection: Connection, object_type: ObjectType) -> None:
        if (
            connection.status == "degraded"
            and connection.health.get("catch_up_error")
            and not connection.health.get("channel_error")
        ):
            self.connections.set_status(connection.connection_id, "active")
        self.connections.update_health(
            connection.connection_id,
            last_catch_up_at=_iso(self.clock()),
            last_success_at=_iso(self.clock()),
            catch_up_error=None,
            catch_up_failures=0,
        )

    def _unhealthy(self, connection: Connection, reason: str) -> None:
        failures = int(connection.health.get("catch_up_failures") or 0) + 1
        self.connections.update_health(
            connection.connection_id, catch_up_error=reason, last_error=reason, catch_up_failures=failures
        )
        if failures >= self.policy.failures_to_degrade and connection.status == "active":
            self.connections.set_status(connection.connection_id, "degraded", reason)

    def _entry(self, notice: ChangeNotice, status: LogStatus, reason: str) -> LogEntry:
        return LogEntry(
            connection_id=notice.connection_id or ORG_SCOPE,
            status=status,
            action="catch_up" if not notice.resync else notice.resync,
            object_type=notice.object_type,
            record_key=f"{notice.source}#{notice.object_type}#*",
            source=notice.source,
            reason=reason,
            at=self.clock(),
            notice_id=notice.id,
        )


def _change(record_id: str, *, deleted: bool = False) -> FeedChange:
    return FeedChange(record_id, deleted=deleted)


_TYPE_OF_SOBJECT: Mapping[str, ObjectType] = {"Contact": "contact", "Lead": "lead", "Event": "event", "Task": "task"}


def _salesforce_type(stored: StoredLink) -> ObjectType:
    """The notice object type of a linked Salesforce record."""
    return _TYPE_OF_SOBJECT.get(stored.link.salesforce_object, "contact")
