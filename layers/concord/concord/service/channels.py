"""Push channels that never lapse: create, renew, replace and stop every connection's channels.

Each connection that is ``active`` (or ``degraded``, so that it can recover) has one channel per *slot*:

* Graph: ``contact`` (``users/{u}/contactFolders/{folder}/contacts``, the folder being the connection's
  ``contact_folder_id`` or the "Salesforce Sync" folder), ``event`` (``users/{u}/events``), ``inbox`` and
  ``sentitems`` (``users/{u}/mailFolders('{folder}')/messages``): subscriptions pointing at
  ``/graph/notifications`` with ``/graph/lifecycle`` as their lifecycle URL;
* Google: ``calendar`` (``events.watch`` on ``primary``, to ``/google/calendar``) and, when a Pub/Sub topic
  is configured, ``gmail`` (``users.watch`` on INBOX and SENT). People contacts have no push; the
  catch-up covers them.

A scheduled :meth:`ChannelsService.run` reconciles every channel against the Subscriptions table:

* a missing channel is created; one past its expiry is created anew (then a ``catch_up`` notice is
  queued, since notifications were lost meanwhile);
* a channel past :attr:`ChannelPolicy.renew_after` of its lifetime (default one half; the hourly schedule
  renews it before 51 % of a 7-day lifetime, and even missed runs leave a day and a half before 75 %) is
  renewed: Graph PATCHes its expiry (a removed one answers 404 and is created anew), Gmail is watched
  again, a Calendar channel is replaced by a new one, then the old one is stopped with ``channels.stop``
  (a failed stop leaves the old item marked ``superseded`` and is retried next run);
* channels of connections that are gone, suspended or waiting for re-consent are stopped and removed.

:meth:`ChannelsService.handle_notice` carries out the ``reauthorize`` (Graph ``reauthorizationRequired``:
the ``reauthorize`` action, else a new subscription) and ``recreate_subscription`` (``subscriptionRemoved``:
a new subscription and a catch-up) notices ingress queues.

Secrets: a Graph ``clientState`` and a Calendar channel ``token`` are fresh random values
(:func:`secrets.token_urlsafe`), handed to the provider once and stored only as their SHA-256 digest,
which is what ingress compares (``concord.adapters.subscriptions``).

Failures: a channel that cannot be created or renewed marks its connection ``degraded`` with the reason,
records ``channel_error`` and ``channel_expiry`` in its health, is logged and counted in the outcome (the
function emits ``ChannelFailures``, which alarms). The next run that brings every channel of a
connection up restores ``active`` (only when it was the channels that degraded it).

Known gap: a subscription's first notifications can reach ingress before its item is stored (its id is
only known from the create's answer); ingress refuses them, and the catch-up repairs what they named.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from concord.adapters.http import ConnectorError, NotFoundError
from concord.adapters.subscriptions import ChannelRecord, channel_key, secret_digest
from concord.notices import ChangeNotice
from concord.observability import logger

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from concord.notices import ObjectType
    from concord.ports import Connection, ConnectionStatus, ConnectionStore

__all__ = [
    "ChannelFailure",
    "ChannelPolicy",
    "ChannelStore",
    "ChannelsOutcome",
    "ChannelsService",
    "GoogleChannels",
    "GraphChannels",
    "NoticeSink",
]

#: Connections whose channels are kept alive; every other status has its channels stopped.
LIVE_STATUSES: tuple[ConnectionStatus, ...] = ("active", "degraded")
_MAX_REASON = 300


# ---------------------------------------------------------------------------------------- ports


class GraphChannels(Protocol):
    """What the service needs of the Graph client (``concord.adapters.graph.GraphClient``)."""

    def ensure_contact_folder(self, user: str) -> str: ...

    def create_subscription(
        self,
        resource: str,
        notification_url: str,
        client_state: str,
        *,
        lifecycle_url: str | None = None,
        expiration: datetime | None = None,
    ) -> dict[str, Any]: ...

    def renew_subscription(self, subscription_id: str, expiration: datetime | None = None) -> dict[str, Any]: ...

    def delete_subscription(self, subscription_id: str) -> None: ...

    def reauthorize_subscription(self, subscription_id: str) -> None: ...


class _CalendarChannel(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def resource_id(self) -> str: ...
    @property
    def expiration_ms(self) -> int | None: ...


class _Watch(Protocol):
    @property
    def expiration_ms(self) -> int: ...


class GoogleChannels(Protocol):
    """What the service needs of the Google client (``concord.adapters.google.GoogleClient``)."""

    def watch_events(
        self,
        user: str,
        *,
        channel_id: str,
        address: str,
        token: str | None = None,
        expiration_ms: int | None = None,
        calendar_id: str = "primary",
    ) -> _CalendarChannel: ...

    def stop_channel(self, user: str, channel_id: str, resource_id: str) -> None: ...

    def watch_mailbox(self, user: str, topic: str, *, label_ids: Iterable[str] = ...) -> _Watch: ...

    def stop_mailbox_watch(self, user: str) -> None: ...


class ChannelStore(Protocol):
    """The Subscriptions table as the service writes it (``SubscriptionStore``)."""

    def records(self) -> list[ChannelRecord]: ...

    def for_connection(self, connection_id: str) -> list[ChannelRecord]: ...

    def record(self, pk: str) -> ChannelRecord | None: ...

    def put(self, record: ChannelRecord) -> None: ...

    def delete(self, pk: str) -> None: ...


class NoticeSink(Protocol):
    """Where catch-up notices go (the changes queue)."""

    def send(self, notices: Sequence[ChangeNotice], /) -> None: ...


# ---------------------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class ChannelPolicy:
    """Where channels point and how long they live.

    ``graph_lifetime`` is Graph's maximum for Outlook resources (10,080 minutes) less a margin for clock
    skew; ``calendar_lifetime`` is Google's default channel lifetime (a week). Gmail chooses its own
    (about 7 days) and Google advises watching again daily at most, never later than weekly.
    """

    webhook_base_url: str
    google_push_topic: str | None = None
    graph_lifetime: timedelta = timedelta(minutes=10080 - 10)
    calendar_lifetime: timedelta = timedelta(days=7)
    renew_after: float = 0.5
    graph_mail_folders: tuple[str, ...] = ("inbox", "sentitems")
    gmail_labels: tuple[str, ...] = ("INBOX", "SENT")

    def url(self, path: str) -> str:
        return self.webhook_base_url.rstrip("/") + path


@dataclass(frozen=True, slots=True)
class ChannelFailure:
    connection_id: str
    slot: str
    reason: str


@dataclass
class ChannelsOutcome:
    """What one run (or one notice) did. ``failures`` carry reasons fit for a log (no secrets)."""

    connections: int = 0
    created: int = 0
    renewed: int = 0
    replaced: int = 0
    reauthorized: int = 0
    stopped: int = 0
    catch_ups: int = 0
    failures: list[ChannelFailure] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {
            "connections": self.connections,
            "created": self.created,
            "renewed": self.renewed,
            "replaced": self.replaced,
            "reauthorized": self.reauthorized,
            "stopped": self.stopped,
            "catch_ups": self.catch_ups,
            "failures": len(self.failures),
        }


@dataclass(frozen=True, slots=True)
class _Slot:
    name: str
    provider: str  # graph | google_calendar | gmail
    object_type: ObjectType
    mail_folder: str | None = None


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _reason(exc: Exception) -> str:
    text = str(exc) if isinstance(exc, ConnectorError) else type(exc).__name__
    return text[:_MAX_REASON]


# ---------------------------------------------------------------------------------------- service


class ChannelsService:
    """See the module docstring."""

    def __init__(
        self,
        *,
        connections: ConnectionStore,
        store: ChannelStore,
        graph: GraphChannels,
        google: GoogleChannels,
        policy: ChannelPolicy,
        notices: NoticeSink | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.connections = connections
        self.store = store
        self.graph = graph
        self.google = google
        self.policy = policy
        self.notices = notices
        self.clock = clock

    # ------------------------------------------------------------------ entry points

    def run(self) -> ChannelsOutcome:
        """Reconcile every channel with the connections (the scheduled run)."""
        outcome = ChannelsOutcome()
        live = [c for status in LIVE_STATUSES for c in self.connections.list(status)]
        outcome.connections = len(live)
        by_connection: dict[str, list[ChannelRecord]] = {}
        for record in self.store.records():
            by_connection.setdefault(record.connection_id, []).append(record)
        for connection in live:
            self._reconcile(connection, by_connection.pop(connection.connection_id, []), outcome)
        for records in by_connection.values():  # connections gone or no longer syncing
            for record in records:
                self._retire(record, outcome)
        return outcome

    def handle_notice(self, notice: ChangeNotice) -> ChannelsOutcome:
        """Carry out a ``reauthorize`` or ``recreate_subscription`` notice (from a Graph lifecycle event).

        A notice naming a channel that is no longer on record was already dealt with (the channel was
        replaced since): nothing to do. Raises ``ValueError`` for other kinds.
        """
        if notice.kind not in ("reauthorize", "recreate_subscription") or notice.subscription_id is None:
            raise ValueError(f"not a channel notice: {notice.kind}")
        outcome = ChannelsOutcome()
        record = self.store.record(channel_key(notice.subscription_id))
        if record is None or record.superseded:
            return outcome
        connection = self.connections.get(record.connection_id)
        if connection is None or connection.status not in LIVE_STATUSES:
            self._retire(record, outcome)
            return outcome
        outcome.connections = 1
        slot = self._slot_of(connection, record.slot)
        if slot is None:
            self._retire(record, outcome)
            return outcome
        try:
            if notice.kind == "reauthorize":
                self._reauthorize(connection, slot, record, outcome)
            else:
                self._replace(connection, slot, record, outcome, lapsed=True)
        except ConnectorError as exc:
            live = [r for r in self.store.for_connection(connection.connection_id) if not r.superseded]
            self._failed(connection, slot.name, exc, outcome, _earliest(live))
        return outcome

    # ------------------------------------------------------------------ per connection

    def _slots(self, connection: Connection) -> list[_Slot]:
        if connection.provider == "graph":
            slots = [_Slot("contact", "graph", "contact"), _Slot("event", "graph", "event")]
            slots += [_Slot(folder, "graph", "email", folder) for folder in self.policy.graph_mail_folders]
            return slots
        slots = [_Slot("calendar", "google_calendar", "event")]
        if self.policy.google_push_topic:
            slots.append(_Slot("gmail", "gmail", "email"))
        return slots

    def _slot_of(self, connection: Connection, name: str) -> _Slot | None:
        return next((slot for slot in self._slots(connection) if slot.name == name), None)

    def _reconcile(self, connection: Connection, records: list[ChannelRecord], outcome: ChannelsOutcome) -> None:
        current: dict[str, ChannelRecord] = {}
        for record in records:
            if record.superseded or record.slot in current:
                self._retire(record, outcome)  # a replaced Calendar channel whose stop failed, or a duplicate
            else:
                current[record.slot] = record
        kept: list[ChannelRecord] = []
        failed: list[tuple[str, Exception]] = []
        for slot in self._slots(connection):
            existing = current.pop(slot.name, None)
            try:
                kept.append(self._keep_alive(connection, slot, existing, outcome))
            except ConnectorError as error:
                failed.append((slot.name, error))
                if existing is not None and existing.channel_expires > _epoch(self.clock()):
                    kept.append(existing)  # still alive until it expires
        for unwanted in current.values():  # a slot no longer wanted (the Gmail topic was unset)
            self._retire(unwanted, outcome)
        expiry = _earliest(kept)
        for slot_name, exc in failed:
            self._failed(connection, slot_name, exc, outcome, expiry)
        if not failed:
            self._healthy(connection, expiry)

    def _keep_alive(
        self, connection: Connection, slot: _Slot, record: ChannelRecord | None, outcome: ChannelsOutcome
    ) -> ChannelRecord:
        """The slot's channel after creating, replacing or renewing it as its age requires."""
        now = _epoch(self.clock())
        if record is None:
            created = self._create(connection, slot)
            self.store.put(created)
            outcome.created += 1
            return created
        if now >= record.channel_expires:
            return self._replace(connection, slot, record, outcome, lapsed=True)
        if now >= record.started_at + self.policy.renew_after * (record.channel_expires - record.started_at):
            return self._renew(connection, slot, record, outcome)
        return record

    # ------------------------------------------------------------------ the provider calls

    def _create(self, connection: Connection, slot: _Slot) -> ChannelRecord:
        now = self.clock()
        user = connection.mailbox_user
        if slot.provider == "graph":
            resource = self._graph_resource(connection, slot)
            secret = secrets.token_urlsafe(48)  # 64 characters; Graph allows 128
            answer = self.graph.create_subscription(
                resource,
                self.policy.url("/graph/notifications"),
                secret,
                lifecycle_url=self.policy.url("/graph/lifecycle"),
                expiration=now + self.policy.graph_lifetime,
            )
            expires = _graph_expiry(answer, now + self.policy.graph_lifetime)
            return self._record(connection, slot, str(answer["id"]), resource, now, expires, secret_digest(secret))
        if slot.provider == "google_calendar":
            token = secrets.token_urlsafe(48)
            expires_at = now + self.policy.calendar_lifetime
            channel = self.google.watch_events(
                user,
                channel_id=str(uuid.uuid4()),
                address=self.policy.url("/google/calendar"),
                token=token,
                expiration_ms=_epoch(expires_at) * 1000,
            )
            if channel.expiration_ms:
                expires_at = datetime.fromtimestamp(channel.expiration_ms / 1000, UTC)
            return self._record(
                connection,
                slot,
                channel.id,
                "calendars/primary/events",
                now,
                expires_at,
                secret_digest(token),
                resource_id=channel.resource_id,
            )
        topic = self.policy.google_push_topic
        if topic is None:
            raise ValueError("Gmail watch needs a Pub/Sub topic")
        watch = self.google.watch_mailbox(user, topic, label_ids=self.policy.gmail_labels)
        expires = datetime.fromtimestamp(watch.expiration_ms / 1000, UTC)
        return self._record(connection, slot, user.strip().lower(), f"users/{user}/mailbox", now, expires, None)

    def _record(
        self,
        connection: Connection,
        slot: _Slot,
        channel_id: str,
        resource: str,
        started: datetime,
        expires: datetime,
        digest: str | None,
        *,
        resource_id: str | None = None,
    ) -> ChannelRecord:
        return ChannelRecord(
            channel_id=channel_id,
            connection_id=connection.connection_id,
            provider=slot.provider,
            slot=slot.name,
            object_type=slot.object_type,
            resource=resource,
            mailbox_user=connection.mailbox_user,
            channel_expires=_epoch(expires),
            started_at=_epoch(started),
            secret_sha256=digest,
            resource_id=resource_id,
        )

    def _graph_resource(self, connection: Connection, slot: _Slot) -> str:
        user = connection.mailbox_user
        if slot.name == "contact":
            folder = connection.options.contact_folder_id or self.graph.ensure_contact_folder(user)
            return f"users/{user}/contactFolders/{folder}/contacts"
        if slot.name == "event":
            return f"users/{user}/events"
        return f"users/{user}/mailFolders('{slot.mail_folder}')/messages"

    def _renew(
        self, connection: Connection, slot: _Slot, record: ChannelRecord, outcome: ChannelsOutcome
    ) -> ChannelRecord:
        now = self.clock()
        if slot.provider == "graph":
            try:
                answer = self.graph.renew_subscription(record.channel_id, now + self.policy.graph_lifetime)
            except NotFoundError:  # expired or removed at Graph: only a new subscription helps
                return self._replace(connection, slot, record, outcome, lapsed=True)
            expires = _graph_expiry(answer, now + self.policy.graph_lifetime)
            renewed = replace(record, channel_expires=_epoch(expires), started_at=_epoch(now))
        elif slot.provider == "gmail":
            renewed = self._create(connection, slot)  # watching again replaces the watch: same item
        else:
            return self._replace(connection, slot, record, outcome, lapsed=False)
        self.store.put(renewed)
        outcome.renewed += 1
        return renewed

    def _replace(
        self, connection: Connection, slot: _Slot, old: ChannelRecord, outcome: ChannelsOutcome, *, lapsed: bool
    ) -> ChannelRecord:
        """A new channel for the slot, then the old one stopped; after a lapse, a catch-up.

        A replaced channel its provider no longer knew had lapsed unseen (a Calendar channel can end
        early): what it would have announced since is caught up as well."""
        new = self._create(connection, slot)
        self.store.put(new)
        if new.pk != old.pk and not self._retire(old, outcome):
            lapsed = True
        outcome.replaced += 1
        if lapsed:
            self._catch_up(connection, slot, new, outcome)
        return new

    def _reauthorize(
        self, connection: Connection, slot: _Slot, record: ChannelRecord, outcome: ChannelsOutcome
    ) -> None:
        try:
            self.graph.reauthorize_subscription(record.channel_id)
        except ConnectorError as exc:
            # Re-authorisation refused or the subscription is gone: a new one is the way back.
            logger.info(
                "reauthorize failed; creating a new subscription",
                extra={"connection_id": connection.connection_id, "slot": slot.name, "error": _reason(exc)},
            )
            self._replace(connection, slot, record, outcome, lapsed=True)
            return
        outcome.reauthorized += 1

    def _retire(self, record: ChannelRecord, outcome: ChannelsOutcome) -> bool:
        """Stop a channel at its provider and forget it; a failed stop keeps it ``superseded`` for the next run.

        ``False`` when the provider no longer knew the channel (it had expired or been removed)."""
        known = True
        try:
            self._stop(record)
        except NotFoundError:
            known = False  # forgetting it is all that is left
        except ConnectorError as exc:
            logger.warning(
                "could not stop a replaced push channel; will retry",
                extra={"connection_id": record.connection_id, "slot": record.slot, "error": _reason(exc)},
            )
            if not record.superseded:
                self.store.put(replace(record, superseded=True))
            return True
        self.store.delete(record.pk)
        outcome.stopped += 1
        return known

    def _stop(self, record: ChannelRecord) -> None:
        if record.provider == "graph":
            self.graph.delete_subscription(record.channel_id)
        elif record.provider == "google_calendar" and record.resource_id:
            self.google.stop_channel(record.mailbox_user, record.channel_id, record.resource_id)
        elif record.provider == "gmail":
            self.google.stop_mailbox_watch(record.mailbox_user)

    def _catch_up(self, connection: Connection, slot: _Slot, new: ChannelRecord, outcome: ChannelsOutcome) -> None:
        if self.notices is None:
            return
        notice = ChangeNotice(
            source="graph" if slot.provider == "graph" else "google",
            connection_id=connection.connection_id,
            object_type=slot.object_type,
            kind="catch_up",
            provider_event_id=f"channel:{new.channel_id}:{new.started_at}",
            received_at=self.clock(),
        )
        self.notices.send([notice])
        outcome.catch_ups += 1

    # ------------------------------------------------------------------ health

    def _failed(
        self, connection: Connection, slot: str, exc: Exception, outcome: ChannelsOutcome, expiry: str | None
    ) -> None:
        reason = f"push channel {slot} could not be created or renewed: {_reason(exc)}"[:_MAX_REASON]
        outcome.failures.append(ChannelFailure(connection.connection_id, slot, reason))
        logger.error(
            "push channel failed", extra={"connection_id": connection.connection_id, "slot": slot, "reason": reason}
        )
        self.connections.set_status(connection.connection_id, "degraded", reason)
        self.connections.update_health(connection.connection_id, channel_error=reason, channel_expiry=expiry)

    def _healthy(self, connection: Connection, expiry: str | None) -> None:
        if connection.status == "degraded" and connection.health.get("channel_error"):
            self.connections.set_status(connection.connection_id, "active")  # the channels degraded it
        self.connections.update_health(connection.connection_id, channel_error=None, channel_expiry=expiry)


def _earliest(records: Iterable[ChannelRecord]) -> str | None:
    """The soonest channel expiry, ISO 8601 UTC, for the connection's health."""
    expiries = [r.channel_expires for r in records]
    if not expiries:
        return None
    return datetime.fromtimestamp(min(expiries), UTC).isoformat().replace("+00:00", "Z")


def _graph_expiry(answer: dict[str, Any], asked: datetime) -> datetime:
    """The expiry Graph granted (7 fractional digits, possibly a non-UTC offset), else what was asked."""
    raw = answer.get("expirationDateTime")
    if not isinstance(raw, str):
        return asked
    try:
        granted = datetime.fromisoformat(raw)
    except ValueError:
        return asked
    return granted if granted.tzinfo else granted.replace(tzinfo=UTC)
