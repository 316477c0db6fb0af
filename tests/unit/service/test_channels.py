"""The channels service with in-memory fakes and a controllable clock: no I/O."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from concord.adapters.http import AuthError, NotFoundError, TransientError
from concord.adapters.memory import MemoryConnectionStore
from concord.adapters.subscriptions import ChannelRecord, channel_key, gmail_key
from concord.core import ConnectionOptions
from concord.notices import ChangeNotice
from concord.ports import Connection
from concord.service.channels import ChannelPolicy, ChannelsService

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from concord.notices import Kind

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
BASE = "https://api.example/prod"
TOPIC = "projects/p/topics/gmail"


class Clock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass
class FakeGraph:
    """Graph's subscription endpoints: a subscription lives until its expiry (by the test's clock)."""

    clock: Clock
    subs: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail: dict[str, Exception] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    folder_lookups: int = 0
    seq: int = 0

    def _check(self, op: str) -> None:
        self.calls.append(op)
        if op in self.fail:
            raise self.fail[op]

    def _live(self, subscription_id: str) -> dict[str, Any]:
        sub = self.subs.get(subscription_id)
        if sub is None or sub["expiration"] <= self.clock():
            raise NotFoundError("graph", "ResourceNotFound", status=404)
        return sub

    def ensure_contact_folder(self, user: str) -> str:
        self.folder_lookups += 1
        return "folder-sync"

    def create_subscription(
        self,
        resource: str,
        notification_url: str,
        client_state: str,
        *,
        lifecycle_url: str | None = None,
        expiration: datetime | None = None,
    ) -> dict[str, Any]:
        self._check("create")
        assert expiration is not None and expiration <= self.clock() + timedelta(minutes=10080)
        self.seq += 1
        sub_id = f"sub-{self.seq}"
        self.subs[sub_id] = {
            "resource": resource,
            "notification_url": notification_url,
            "lifecycle_url": lifecycle_url,
            "client_state": client_state,
            "expiration": expiration,
        }
        # Graph's 7 fractional digits and a non-UTC offset
        stamp = expiration.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0+00:00")
        return {"id": sub_id, "expirationDateTime": stamp}

    def renew_subscription(self, subscription_id: str, expiration: datetime | None = None) -> dict[str, Any]:
        self._check("renew")
        sub = self._live(subscription_id)
        assert expiration is not None
        sub["expiration"] = expiration
        return {"id": subscription_id, "expirationDateTime": expiration.isoformat()}

    def delete_subscription(self, subscription_id: str) -> None:
        self._check("delete")
        self._live(subscription_id)
        del self.subs[subscription_id]

    def reauthorize_subscription(self, subscription_id: str) -> None:
        self._check("reauthorize")
        self._live(subscription_id)

    def live(self) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.subs.items() if v["expiration"] > self.clock()}


@dataclass(frozen=True)
class _Channel:
    id: str
    resource_id: str
    expiration_ms: int | None


@dataclass(frozen=True)
class _Watch:
    history_id: int
    expiration_ms: int


@dataclass
class FakeGoogle:
    clock: Clock
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    watches: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail: dict[str, Exception] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def _check(self, op: str) -> None:
        self.calls.append(op)
        if op in self.fail:
            raise self.fail.pop(op)

    def _now_ms(self) -> int:
        return int(self.clock().timestamp() * 1000)

    def watch_events(
        self,
        user: str,
        *,
        channel_id: str,
        address: str,
        token: str | None = None,
        expiration_ms: int | None = None,
        calendar_id: str = "primary",
    ) -> _Channel:
        self._check("watch_events")
        assert channel_id not in self.channels
        expiration = expiration_ms or self._now_ms() + 7 * 86_400_000
        self.channels[channel_id] = {"user": user, "address": address, "token": token, "expiration_ms": expiration}
        return _Channel(channel_id, f"res-{user}", expiration)

    def stop_channel(self, user: str, channel_id: str, resource_id: str) -> None:
        self._check("stop_channel")
        channel = self.channels.get(channel_id)
        if channel is None or channel["expiration_ms"] <= self._now_ms() or resource_id != f"res-{user}":
            raise NotFoundError("google", "channel not found", status=404)
        del self.channels[channel_id]

    def watch_mailbox(self, user: str, topic: str, *, label_ids: Iterable[str] = ("INBOX",)) -> _Watch:
        self._check("watch_mailbox")
        expiration = self._now_ms() + 7 * 86_400_000
        self.watches[user] = {"topic": topic, "labels": list(label_ids), "expiration_ms": expiration}
        return _Watch(1, expiration)

    def stop_mailbox_watch(self, user: str) -> None:
        self._check("stop_mailbox_watch")
        self.watches.pop(user, None)

    def live_channels(self) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.channels.items() if v["expiration_ms"] > self._now_ms()}


class MemoryChannels:
    """The Subscriptions table as a dict of items in the real layout (so the item codec is exercised)."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}

    def records(self) -> list[ChannelRecord]:
        found = [ChannelRecord.from_item(item) for item in self.items.values()]
        return [r for r in found if r is not None]

    def for_connection(self, connection_id: str) -> list[ChannelRecord]:
        return [r for r in self.records() if r.connection_id == connection_id]

    def record(self, pk: str) -> ChannelRecord | None:
        item = self.items.get(pk)
        return ChannelRecord.from_item(item) if item else None

    def put(self, record: ChannelRecord) -> None:
        self.items[record.pk] = record.to_item()

    def delete(self, pk: str) -> None:
        self.items.pop(pk, None)

    def slot(self, connection_id: str, slot: str) -> ChannelRecord:
        (found,) = [r for r in self.for_connection(connection_id) if r.slot == slot and not r.superseded]
        return found


class Queue:
    def __init__(self) -> None:
        self.sent: list[ChangeNotice] = []

    def send(self, notices: Sequence[ChangeNotice], /) -> None:
        self.sent.extend(notices)


@dataclass
class World:
    clock: Clock
    graph: FakeGraph
    google: FakeGoogle
    store: MemoryChannels
    connections: MemoryConnectionStore
    queue: Queue
    service: ChannelsService

    def connection(self, connection_id: str) -> Connection:
        found = self.connections.get(connection_id)
        assert found is not None
        return found


def _world(*, topic: str | None = TOPIC, connections: Sequence[Connection] = ()) -> World:
    clock = Clock()
    graph, google, store, store_connections, queue = (
        FakeGraph(clock),
        FakeGoogle(clock),
        MemoryChannels(),
        MemoryConnectionStore(),
        Queue(),
    )
    for connection in connections:
        store_connections.put(connection)
    service = ChannelsService(
        connections=store_connections,
        store=store,
        graph=graph,
        google=google,
        policy=ChannelPolicy(webhook_base_url=BASE + "/", google_push_topic=topic),
        notices=queue,
        clock=clock,
    )
    return World(clock, graph, google, store, store_connections, queue, service)


GRAPH_CONN = Connection("c-graph", "graph", "ada@contoso.example", "005A", ConnectionOptions(provider="graph"))
GOOGLE_CONN = Connection("c-google", "google", "sam@fabrikam.example", "005B", ConnectionOptions(provider="google"))


# ---------------------------------------------------------------------------------------- creation


def test_a_graph_connection_gets_contact_folder_calendar_inbox_and_sent_items_subscriptions() -> None:
    world = _world(connections=[GRAPH_CONN])
    outcome = world.service.run()

    assert outcome.created == 4 and not outcome.failures
    user = GRAPH_CONN.mailbox_user
    by_resource = {sub["resource"]: sub for sub in world.graph.subs.values()}
    assert set(by_resource) == {
        f"users/{user}/contactFolders/folder-sync/contacts",
        f"users/{user}/events",
        f"users/{user}/mailFolders('inbox')/messages",
        f"users/{user}/mailFolders('sentitems')/messages",
    }
    for sub_id, sub in world.graph.subs.items():
        assert sub["notification_url"] == BASE + "/graph/notifications"
        assert sub["lifecycle_url"] == BASE + "/graph/lifecycle"
        item = world.store.items[channel_key(sub_id)]
        # the secret itself is nowhere in the item, only its digest
        assert item["secret_sha256"]["S"] == _digest(sub["client_state"])
        assert sub["client_state"] not in repr(item)
        assert item["connection_id"]["S"] == "c-graph"
        assert int(item["expires_at"]["N"]) > int(item["channel_expires"]["N"])  # the TTL outlives the channel
    secrets = {sub["client_state"] for sub in world.graph.subs.values()}
    assert len(secrets) == 4  # a fresh secret per subscription
    assert {world.store.slot("c-graph", s).object_type for s in ("contact", "event", "inbox", "sentitems")} == {
        "contact",
        "event",
        "email",
    }
    health = world.connection("c-graph").health
    assert health["channel_error"] is None
    assert health["channel_expiry"] == (START + timedelta(minutes=10070)).isoformat().replace("+00:00", "Z")


def test_the_connections_own_contact_folder_is_used_when_set() -> None:
    options = ConnectionOptions(provider="graph", contact_folder_id="folder-own")
    world = _world(connections=[Connection("c1", "graph", "u@x.example", "005A", options)])
    world.service.run()
    assert world.graph.folder_lookups == 0
    assert "users/u@x.example/contactFolders/folder-own/contacts" in {s["resource"] for s in world.graph.subs.values()}


def test_a_google_connection_gets_a_calendar_channel_and_a_gmail_watch() -> None:
    world = _world(connections=[GOOGLE_CONN])
    world.service.run()

    ((channel_id, channel),) = world.google.channels.items()
    assert channel["address"] == BASE + "/google/calendar"
    item = world.store.items[channel_key(channel_id)]
    assert item["secret_sha256"]["S"] == _digest(channel["token"])
    assert item["resource_id"]["S"] == "res-sam@fabrikam.example"  # ingress refuses a channel without it
    assert world.google.watches["sam@fabrikam.example"]["labels"] == ["INBOX", "SENT"]
    assert world.google.watches["sam@fabrikam.example"]["topic"] == TOPIC
    gmail = world.store.items[gmail_key("Sam@Fabrikam.example")]
    assert gmail["object_type"]["S"] == "email" and "secret_sha256" not in gmail


def test_without_a_push_topic_gmail_is_not_watched() -> None:
    world = _world(topic=None, connections=[GOOGLE_CONN])
    world.service.run()
    assert world.google.watches == {}
    assert [r.slot for r in world.store.records()] == ["calendar"]


def test_a_connection_less_run_does_nothing() -> None:
    world = _world()
    outcome = world.service.run()
    assert outcome.summary() == dict.fromkeys(outcome.summary(), 0)
    assert world.graph.calls == [] and world.google.calls == []


# ---------------------------------------------------------------------------------------- renewal


def test_nothing_is_renewed_before_half_the_lifetime_and_everything_at_half() -> None:
    world = _world(connections=[GRAPH_CONN, GOOGLE_CONN])
    world.service.run()
    lifetime = timedelta(minutes=10070)
    world.clock.now = START + lifetime * 0.49
    quiet = world.service.run()
    assert quiet.renewed == quiet.replaced == quiet.created == 0

    world.clock.now = START + timedelta(days=3.5)  # half of the Calendar and Gmail week, past half of Graph's
    renewed = world.service.run()
    assert renewed.renewed == 5  # four Graph PATCHes and one Gmail watch
    assert renewed.replaced == 1 and renewed.stopped == 1  # the Calendar channel: a new one, the old stopped
    assert len(world.graph.subs) == 4 and len(world.google.channels) == 1
    assert not world.queue.sent  # a renewal loses nothing: no catch-up


def test_channels_never_lapse_over_a_month_of_hourly_runs() -> None:
    world = _world(connections=[GRAPH_CONN, GOOGLE_CONN])
    renew_shares: list[float] = []
    previous = {r.pk: r for r in world.store.records()}
    for _ in range(31 * 24):
        world.service.run()
        now = world.clock()
        records = {r.pk: r for r in world.store.records()}
        # every slot has exactly one live channel at its provider
        assert len(world.graph.live()) == 4 == len(world.graph.subs)
        assert len(world.google.live_channels()) == 1 == len(world.google.channels)
        assert world.google.watches["sam@fabrikam.example"]["expiration_ms"] > now.timestamp() * 1000
        for pk, old in previous.items():
            new = records.get(pk)
            if new is None or new.started_at != old.started_at:  # renewed or replaced this run
                renew_shares.append((now.timestamp() - old.started_at) / (old.channel_expires - old.started_at))
        previous = records
        world.clock.advance(hours=1)
    assert len(renew_shares) >= 6 * 4  # each of the six channels renewed about every 3.5 days
    assert all(0.5 <= share <= 0.75 for share in renew_shares)
    assert not world.queue.sent
    assert world.connection("c-graph").status == "active"


def test_a_calendar_channel_whose_stop_fails_is_kept_superseded_and_stopped_next_run() -> None:
    world = _world(connections=[GOOGLE_CONN])
    world.service.run()
    (old_id,) = world.google.channels
    world.clock.now = START + timedelta(days=4)
    world.google.fail["stop_channel"] = TransientError("google", "backend error", status=503)
    world.service.run()
    superseded = world.store.record(channel_key(old_id))
    assert superseded is not None and superseded.superseded
    assert len(world.google.channels) == 2

    world.clock.advance(hours=1)
    outcome = world.service.run()
    assert outcome.stopped == 1
    assert world.store.record(channel_key(old_id)) is None
    assert list(world.google.channels) == [world.store.slot("c-google", "calendar").channel_id]


# ---------------------------------------------------------------------------------------- lapses


def test_a_subscription_gone_at_renewal_is_created_anew_and_caught_up() -> None:
    world = _world(connections=[GRAPH_CONN])
    world.service.run()
    event = world.store.slot("c-graph", "event")
    world.graph.subs[event.channel_id]["expiration"] = world.clock() - timedelta(seconds=1)  # lapsed early
    world.clock.advance(days=4)
    outcome = world.service.run()  # Graph answers the PATCH with 404

    assert outcome.renewed == 3 and outcome.replaced == 1 and outcome.catch_ups == 1
    assert world.store.record(event.pk) is None
    fresh = world.store.slot("c-graph", "event")
    assert fresh.channel_id in world.graph.live()
    (notice,) = world.queue.sent
    assert (notice.kind, notice.connection_id, notice.object_type, notice.source) == (
        "catch_up",
        "c-graph",
        "event",
        "graph",
    )


def test_a_calendar_channel_that_ended_early_is_caught_up_when_replaced() -> None:
    world = _world(topic=None, connections=[GOOGLE_CONN])
    world.service.run()
    (channel,) = world.google.channels.values()
    channel["expiration_ms"] = int(world.clock().timestamp() * 1000)  # Google ended it silently
    world.clock.advance(days=4)
    outcome = world.service.run()  # the replaced channel's stop answers 404: it had lapsed
    assert outcome.replaced == 1 and outcome.catch_ups == 1
    (notice,) = world.queue.sent
    assert (notice.source, notice.connection_id, notice.object_type) == ("google", "c-google", "event")


def test_a_channel_past_its_recorded_expiry_is_replaced_without_a_renewal_attempt() -> None:
    world = _world(connections=[GOOGLE_CONN])
    world.service.run()
    world.clock.advance(days=8)  # the function did not run for a week
    outcome = world.service.run()
    assert outcome.replaced == 2 and outcome.catch_ups == 2  # Calendar and Gmail
    assert len(world.google.live_channels()) == 1


def test_channels_of_stopped_connections_are_removed() -> None:
    world = _world(connections=[GRAPH_CONN])
    world.service.run()
    world.connections.set_status("c-graph", "suspended")
    outcome = world.service.run()
    assert outcome.stopped == 4
    assert world.graph.subs == {} and world.store.items == {}


# ---------------------------------------------------------------------------------------- notices


def _notice(kind: Kind, subscription_id: str) -> ChangeNotice:
    return ChangeNotice(
        source="graph",
        connection_id="c-graph",
        object_type="contact",
        kind=kind,
        subscription_id=subscription_id,
        provider_event_id=f"{subscription_id}:{kind}",
    )


def test_subscription_removed_makes_a_new_subscription_and_a_catch_up() -> None:
    world = _world(connections=[GRAPH_CONN])
    world.service.run()
    contact = world.store.slot("c-graph", "contact")
    del world.graph.subs[contact.channel_id]  # what subscriptionRemoved means

    outcome = world.service.handle_notice(_notice("recreate_subscription", contact.channel_id))
    assert outcome.replaced == 1 and outcome.catch_ups == 1 and not outcome.failures
    fresh = world.store.slot("c-graph", "contact")
    assert fresh.channel_id != contact.channel_id and fresh.resource == contact.resource
    assert world.store.record(contact.pk) is None
    # a redelivered notice finds no channel under the old id: nothing more happens
    again = world.service.handle_notice(_notice("recreate_subscription", contact.channel_id))
    assert again.summary() == dict.fromkeys(again.summary(), 0)


def test_reauthorization_required_reauthorizes_the_subscription() -> None:
    world = _world(connections=[GRAPH_CONN])
    world.service.run()
    inbox = world.store.slot("c-graph", "inbox")
    outcome = world.service.handle_notice(_notice("reauthorize", inbox.channel_id))
    assert outcome.reauthorized == 1 and outcome.replaced == 0
    assert world.store.slot("c-graph", "inbox") == inbox


def test_a_subscription_that_fails_reauthorization_is_recreated() -> None:
    world = _world(connections=[GRAPH_CONN])
    world.service.run()
    inbox = world.store.slot("c-graph", "inbox")
    world.graph.fail["reauthorize"] = AuthError("graph", "Authorization_RequestDenied", status=403)
    outcome = world.service.handle_notice(_notice("reauthorize", inbox.channel_id))
    assert outcome.replaced == 1 and outcome.catch_ups == 1
    assert world.store.slot("c-graph", "inbox").channel_id != inbox.channel_id
    assert inbox.channel_id not in world.graph.subs  # the old one deleted


def test_other_notice_kinds_are_refused() -> None:
    world = _world()
    notice = ChangeNotice(
        source="graph", connection_id="c", object_type="contact", kind="catch_up", provider_event_id="x"
    )
    with pytest.raises(ValueError, match="not a channel notice"):
        world.service.handle_notice(notice)


# ---------------------------------------------------------------------------------------- failures


def test_a_renewal_failure_degrades_the_connection_with_its_reason_then_recovers() -> None:
    world = _world(connections=[GRAPH_CONN])
    world.service.run()
    world.clock.advance(days=4)
    world.graph.fail["renew"] = TransientError("graph", "ServiceUnavailable", status=503, code="ServiceUnavailable")
    outcome = world.service.run()

    assert {f.slot for f in outcome.failures} == {"contact", "event", "inbox", "sentitems"}
    degraded = world.connection("c-graph")
    assert degraded.status == "degraded"
    assert world.connections._connections["c-graph"]["reason"].startswith("push channel ")
    assert "ServiceUnavailable" in degraded.health["channel_error"]
    # the old channels still live until their expiry, which on-call can read
    assert degraded.health["channel_expiry"] == (START + timedelta(minutes=10070)).isoformat().replace("+00:00", "Z")
    for sub in world.graph.subs.values():
        assert sub["client_state"] not in degraded.health["channel_error"]

    del world.graph.fail["renew"]
    world.clock.advance(hours=1)
    healed = world.service.run()
    assert healed.renewed == 4 and not healed.failures
    recovered = world.connection("c-graph")
    assert recovered.status == "active" and recovered.health["channel_error"] is None


def test_a_create_failure_degrades_only_its_connection() -> None:
    world = _world(connections=[GRAPH_CONN, GOOGLE_CONN])
    world.google.fail["watch_events"] = AuthError("google", "unauthorized_client", status=401)
    outcome = world.service.run()
    assert [(f.connection_id, f.slot) for f in outcome.failures] == [("c-google", "calendar")]
    assert world.connection("c-google").status == "degraded"
    assert world.connection("c-graph").status == "active"
    assert gmail_key(GOOGLE_CONN.mailbox_user) in world.store.items  # the other Google channel was made


def test_a_connection_degraded_for_another_reason_stays_degraded() -> None:
    world = _world(connections=[Connection("c1", "graph", "u@x.example", "005A", ConnectionOptions(), "degraded")])
    world.service.run()
    assert world.connection("c1").status == "degraded"
