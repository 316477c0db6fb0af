"""The channels service over HTTPS against the Graph and Google sandboxes, with its state in DynamoDB Local.

The sandboxes keep time with the wall clock; for the simulated month their clock is pointed at the test's
(``_shared_clock``), so Graph's "at most 10,080 minutes ahead" check, subscription liveness and Calendar
channel expiry all follow the simulated time. Graph validates every subscription's URLs against a real
webhook receiver; lifecycle notifications it sends there are parsed and authenticated by the ingress
code against the Subscriptions table, then handed to the service as the worker will.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
import pytest

import local.sandboxes.google as google_sandbox_module
import local.sandboxes.graph as graph_sandbox_module
from concord.adapters.google import GoogleClient, GoogleEndpoints, ServiceAccount
from concord.adapters.graph import GraphClient, GraphCredentials
from concord.adapters.stores import DynamoConnectionStore, DynamoDB
from concord.adapters.subscriptions import SubscriptionStore, channel_key, gmail_key
from concord.core import ConnectionOptions
from concord.ingress.graph import authenticate, parse_batch
from concord.ports import Connection
from concord.service.channels import ChannelPolicy, ChannelsService
from local.sandboxes import seed
from local.sandboxes.google import GoogleSandbox
from local.sandboxes.graph import SEED_CLIENT_ID, SEED_CLIENT_SECRET, SEED_TENANT, GraphSandbox
from local.sandboxes.server import ca_bundle_path
from tests.support.receiver import Received, Receiver

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from concord.notices import ChangeNotice
    from local.aws.stack import LocalStack

pytestmark = pytest.mark.integration

TOPIC = "projects/concord-tests/topics/gmail"
#: The Graph sandbox takes subscriptions on the inbox only (its resource patterns have no sent items yet).
MAIL_FOLDERS = ("inbox",)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class _SandboxTime:
    """The ``time`` module as the Google sandbox sees it: ``time()`` from the test's clock."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def time(self) -> float:
        return self._clock().timestamp()

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def _answer(received: Received) -> tuple[int, dict[str, str], bytes]:
    token = received.query.get("validationToken")
    if token:  # Graph's handshake: echo the token as text
        return 200, {"Content-Type": "text/plain"}, token[0].encode()
    return 202, {}, b""


class Queue:
    def __init__(self) -> None:
        self.sent: list[ChangeNotice] = []

    def send(self, notices: Sequence[ChangeNotice], /) -> None:
        self.sent.extend(notices)


@pytest.fixture(scope="module")
def _graph_server() -> Iterator[GraphSandbox]:
    sandbox = GraphSandbox(validation_timeout_s=5.0, notification_window_s=0.05)
    sandbox.start()
    yield sandbox
    sandbox.stop()


@pytest.fixture(scope="module")
def _google_server() -> Iterator[GoogleSandbox]:
    sandbox = GoogleSandbox()
    sandbox.start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(_answer) as running:
        yield running


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    shared = Clock()
    monkeypatch.setattr(graph_sandbox_module, "_now", shared)
    monkeypatch.setattr(google_sandbox_module, "time", _SandboxTime(shared))
    return shared


class World:
    def __init__(self, aws: LocalStack, graph: GraphSandbox, google: GoogleSandbox, receiver: Receiver, clock: Clock):
        self.clock, self.graph_sandbox, self.google_sandbox, self.receiver = clock, graph, google, receiver
        dynamodb = boto3.client("dynamodb")
        self.store = SubscriptionStore(aws.env["SUBSCRIPTIONS_TABLE"], dynamodb)
        self.connections = DynamoConnectionStore(aws.env["CONNECTIONS_TABLE"], dynamodb=DynamoDB())
        self.graph = GraphClient(
            GraphCredentials(SEED_TENANT, SEED_CLIENT_ID, SEED_CLIENT_SECRET),
            graph_url=graph.graph_url,
            login_url=graph.url,
            verify=ca_bundle_path(),
            sleep=lambda _: None,
        )
        self.google = GoogleClient(
            ServiceAccount.from_info(google.service_account_info()),
            endpoints=GoogleEndpoints.for_base(google.url),
            verify=ca_bundle_path(),
            sleep=lambda _: None,
        )
        self.queue = Queue()
        host, port = receiver._server.server_address[:2]
        self.service = ChannelsService(
            connections=self.connections,
            store=self.store,
            graph=self.graph,
            google=self.google,
            policy=ChannelPolicy(
                webhook_base_url=f"http://{host}:{port}", google_push_topic=TOPIC, graph_mail_folders=MAIL_FOLDERS
            ),
            notices=self.queue,
            clock=clock,
        )
        self.connections.put(Connection("c-graph", "graph", seed.M365_USER, "005G", ConnectionOptions()))
        self.connections.put(
            Connection("c-google", "google", seed.GOOGLE_USER, "005H", ConnectionOptions(provider="google"))
        )

    def close(self) -> None:
        self.graph.close()
        self.google.close()

    def live_graph(self) -> set[str]:
        return {s.id for s in self.graph_sandbox.subscriptions.values() if s.live()}

    def lifecycle(self, subscription_id: str, event: str) -> list[ChangeNotice]:
        """Have Graph send a lifecycle event; what ingress makes of it at the lifecycle URL."""
        before = len(self.receiver.received)
        self.graph_sandbox.lifecycle(subscription_id, event)
        assert self.graph_sandbox.wait_notifications(10)
        posts = [r for r in self.receiver.received[before:] if r.path == "/graph/lifecycle"]
        assert len(posts) == 1
        items, malformed = parse_batch(posts[0].body)
        return list(authenticate(items, malformed, self.store, received_at=self.clock()).notices)


@pytest.fixture
def world(
    aws: LocalStack,
    _graph_server: GraphSandbox,
    _google_server: GoogleSandbox,
    receiver: Receiver,
    clock: Clock,
) -> Iterator[World]:
    _graph_server.reset()
    _graph_server.seed()
    _google_server.reset()
    _google_server.seed()
    made = World(aws, _graph_server, _google_server, receiver, clock)
    yield made
    made.close()
    _graph_server.reset()
    _google_server.reset()


def test_channels_are_renewed_before_they_lapse_over_a_simulated_month(world: World) -> None:
    first = world.service.run()
    assert first.created == 5 and not first.failures  # contacts, events, inbox; calendar; gmail
    calendar_ids: set[str] = set()
    for _ in range(30 * 4):  # every six hours for a month
        world.clock.advance(hours=6)
        # the sandboxes' own expiry: whatever was not renewed in time is gone now
        for sub in list(world.graph_sandbox.subscriptions.values()):
            if not sub.live():
                world.graph_sandbox.subscriptions.pop(sub.id)
        outcome = world.service.run()
        assert not outcome.failures and outcome.catch_ups == 0, outcome
        records = world.store.records()
        assert {r.channel_id for r in records if r.provider == "graph"} == world.live_graph()
        assert len(world.live_graph()) == 3
        (calendar,) = [r for r in records if r.slot == "calendar"]
        calendar_ids.add(calendar.channel_id)
        assert world.google_sandbox.state()["channels"] == 1  # the replaced channel was stopped
        assert world.store.record(gmail_key(seed.GOOGLE_USER)) is not None
    assert len(calendar_ids) >= 8  # a new Calendar channel about every 3.5 days
    connection = world.connections.get("c-graph")
    assert connection is not None and connection.status == "active"
    assert connection.health["channel_error"] is None


def test_an_expired_channel_is_recreated_and_caught_up(world: World) -> None:
    world.service.run()
    world.google_sandbox.expire_channels()  # Calendar channels and the Gmail watch end now
    (event,) = [r for r in world.store.records() if r.slot == "event"]
    world.graph_sandbox.expire_subscription(event.channel_id)
    world.clock.advance(days=4)
    outcome = world.service.run()
    assert outcome.replaced == 2 and not outcome.failures  # Graph events (PATCH 404) and the Calendar channel
    # The Graph subscription is known lost: caught up. (The sandbox still stops an expired Calendar
    # channel with 204 where Google answers 404, so the Calendar gap is left to the hourly catch-up here.)
    assert ("c-graph", "event", "catch_up") in {(n.connection_id, n.object_type, n.kind) for n in world.queue.sent}
    assert world.store.record(event.pk) is None
    assert len(world.live_graph()) == 3
    (calendar,) = [r for r in world.store.records() if r.slot == "calendar"]
    assert world.google_sandbox.state()["channels"] == 1
    watch = world.store.record(gmail_key(seed.GOOGLE_USER))
    assert watch is not None and watch.channel_expires > world.clock().timestamp()
    assert calendar.channel_expires > world.clock().timestamp()


def test_lifecycle_missed_becomes_a_catch_up_notice(world: World) -> None:
    world.service.run()
    (inbox,) = [r for r in world.store.records() if r.slot == "inbox"]
    (notice,) = world.lifecycle(inbox.channel_id, "missed")  # authenticated by the stored digest
    assert (notice.kind, notice.connection_id, notice.object_type) == ("catch_up", "c-graph", "email")


def test_lifecycle_subscription_removed_is_recreated(world: World) -> None:
    world.service.run()
    (contact,) = [r for r in world.store.records() if r.slot == "contact"]
    (notice,) = world.lifecycle(contact.channel_id, "subscriptionRemoved")
    assert notice.kind == "recreate_subscription"
    outcome = world.service.handle_notice(notice)
    assert outcome.replaced == 1 and outcome.catch_ups == 1 and not outcome.failures
    assert world.store.record(contact.pk) is None
    (fresh,) = [r for r in world.store.records() if r.slot == "contact"]
    assert fresh.channel_id in world.live_graph() and fresh.resource == contact.resource
    # the new subscription's notifications authenticate: a contact added in Outlook reaches ingress
    before = len(world.receiver.received)
    folder = contact.resource.split("/")[3]
    world.graph_sandbox.put_contact(seed.M365_USER, {"givenName": "Nia", "surname": "Okafor"}, folder)
    assert world.graph_sandbox.wait_notifications(10)
    (post,) = [r for r in world.receiver.received[before:] if r.path == "/graph/notifications"]
    items, malformed = parse_batch(post.body)
    (change,) = authenticate(items, malformed, world.store, received_at=world.clock()).notices
    assert change.connection_id == "c-graph" and change.object_type == "contact"


def test_lifecycle_reauthorization_required_is_reauthorized(world: World) -> None:
    world.service.run()
    (events,) = [r for r in world.store.records() if r.slot == "event"]
    (notice,) = world.lifecycle(events.channel_id, "reauthorizationRequired")
    assert notice.kind == "reauthorize"
    outcome = world.service.handle_notice(notice)
    assert outcome.reauthorized == 1 and not outcome.failures
    assert not world.graph_sandbox.subscriptions[events.channel_id].needs_reauthorization


def test_a_renewal_failure_degrades_the_connection(world: World) -> None:
    world.service.run()
    world.clock.advance(days=4)
    world.graph_sandbox.faults.fail(1000, status=503)
    outcome = world.service.run()
    assert {f.connection_id for f in outcome.failures} == {"c-graph"}
    connection = world.connections.get("c-graph")
    assert connection is not None and connection.status == "degraded"
    assert "503" in connection.health["channel_error"]
    assert connection.health["channel_expiry"]  # the old subscriptions still run until then
    world.graph_sandbox.faults.clear()
    world.clock.advance(hours=1)
    assert not world.service.run().failures
    healed = world.connections.get("c-graph")
    assert healed is not None and healed.status == "active"


def test_items_hold_what_ingress_needs_and_no_secret(world: World) -> None:
    world.service.run()
    for sub in world.graph_sandbox.subscriptions.values():
        channel = world.store.get(channel_key(sub.id))
        assert channel is not None and channel.connection_id == "c-graph"
        assert channel.secret_matches(sub.client_state)
        raw = boto3.client("dynamodb").get_item(
            TableName=world.store.table_name, Key={"pk": {"S": channel.pk}, "sk": {"S": "META"}}
        )["Item"]
        assert sub.client_state not in repr(raw)
    (calendar,) = [r for r in world.store.records() if r.slot == "calendar"]
    found = world.store.get(channel_key(calendar.channel_id))
    assert found is not None and found.resource_id and found.secret_sha256
