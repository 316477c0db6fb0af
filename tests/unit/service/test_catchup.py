"""The catch-up service with in-memory stores and feeds: cursors, the org watermark, expiry, resyncs,
the schedule, the budget deferral, the audit and health. The feed adapters are tested over HTTP against
the sandboxes (tests/integration); this pins down the service's own decisions."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from concord.adapters.http import PermanentError, TransientError
from concord.adapters.memory import MemoryConnectionStore, MemoryCursorStore, MemoryLinkStore
from concord.core import ConnectionOptions, LinkState
from concord.notices import ChangeNotice
from concord.ports import Connection, StoredLink
from concord.service.catchup import CatchUpPolicy, CatchUpSchedule, CatchUpService

from .fakes import FakeCrm, FakeCrmFeed, FakeFeed, FakeMailbox, Queue

if TYPE_CHECKING:
    from collections.abc import Sequence

    from concord.notices import ObjectType

OWNER = "005000000000001AAA"
START = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class World:
    def __init__(self, *, policy: CatchUpPolicy | None = None) -> None:
        self.clock = Clock()
        self.connections = MemoryConnectionStore()
        self.cursors = MemoryCursorStore()
        self.links = MemoryLinkStore()
        self.queue = Queue()
        self.crm = FakeCrm()
        self.crm_feed = FakeCrmFeed()
        self.mailbox = FakeMailbox("graph")
        self.feed = FakeFeed()
        self.service = CatchUpService(
            connections=self.connections,
            cursors=self.cursors,
            links=self.links,
            queue=self.queue,
            crm=self.crm,
            crm_feed=self.crm_feed,
            mailboxes={"graph": self.mailbox},
            feeds={"graph": self.feed},
            policy=policy,
            clock=self.clock,
        )
        self.schedule = CatchUpSchedule(self.connections, policy, self.clock)

    def connect(self, connection_id: str = "conn_ada", owner: str = OWNER, **health: Any) -> Connection:
        user = f"{connection_id}@contoso.example"
        connection = Connection(
            connection_id,
            "graph",
            user,
            owner,
            ConnectionOptions(provider="graph", user_email=user),
            health={"first_sync_at": START.isoformat(), **health},
        )
        self.connections.put(connection)
        return connection

    def catch_up(self, object_type: ObjectType = "contact", **fields: Any) -> ChangeNotice:
        return ChangeNotice(
            source="graph",
            connection_id="conn_ada",
            object_type=object_type,
            kind="catch_up",
            provider_event_id=f"test:{next(_events)}",
            **fields,
        )

    def salesforce_catch_up(self, object_type: ObjectType = "contact", **fields: Any) -> ChangeNotice:
        return ChangeNotice(
            source="salesforce",
            object_type=object_type,
            kind="catch_up",
            provider_event_id=f"test:{next(_events)}",
            **fields,
        )

    def health(self, connection_id: str = "conn_ada") -> dict[str, Any]:
        connection = self.connections.get(connection_id)
        assert connection is not None
        return dict(connection.health)


_events = itertools.count()


def _ids(notices: Sequence[ChangeNotice]) -> list[tuple[str | None, bool]]:
    return sorted((n.record_id, bool(n.deleted)) for n in notices)


# ---------------------------------------------------------------------------------------- cursors


def test_changes_since_the_cursor_are_queued_then_the_cursor_moves_on() -> None:
    world = World()
    world.connect()
    world.feed.change("contact", "AAMk1")
    world.service.handle([world.catch_up()])  # no cursor yet: a full load
    assert _ids(world.queue.take()) == [("AAMk1", False)]
    world.feed.change("contact", "AAMk2")
    world.feed.change("contact", "AAMk1", deleted=True)
    world.feed.change("event", "EV1")  # another object's change is not this catch-up's
    outcome = world.service.handle([world.catch_up()])
    queued = world.queue.take()
    assert _ids(queued) == [("AAMk1", True), ("AAMk2", False)]
    assert all(n.kind == "change" and n.connection_id == "conn_ada" and n.source == "graph" for n in queued)
    assert outcome.queued == 2 and outcome.resyncs == []
    world.service.handle([world.catch_up()])
    assert world.queue.take() == []  # an unchanged round queues nothing
    assert world.health()["last_catch_up_at"] == "2026-12-04T09:00:00Z"


def test_a_cursor_is_saved_only_after_its_changes_are_queued() -> None:
    world = World()
    world.connect()
    world.feed.change("contact", "AAMk1")
    world.service.handle([world.catch_up()])
    world.queue.take()
    world.feed.change("contact", "AAMk2")

    class Dying(Queue):
        def send(self, notices: Sequence[ChangeNotice], /) -> None:
            raise RuntimeError("the Lambda died while sending")

    world.service.queue = Dying()
    with pytest.raises(RuntimeError):
        world.service.handle([world.catch_up()])
    assert world.cursors.get("conn_ada", "contact") == "1@0"  # not moved past what never reached the queue
    world.service.queue = world.queue
    world.service.handle([world.catch_up()])
    assert _ids(world.queue.take()) == [("AAMk2", False)]  # nothing lost


def test_repeats_of_one_catch_up_in_a_batch_run_once() -> None:
    world = World()
    world.connect()
    world.feed.change("contact", "AAMk1")
    world.service.handle([world.catch_up(), world.catch_up(), world.catch_up()])
    assert world.feed.api_calls == 1
    assert len(world.queue.take()) == 1


# ---------------------------------------------------------------------------------------- expiry


def test_an_expired_cursor_leads_to_one_full_load_with_its_reason_and_the_connection_stays_active() -> None:
    world = World()
    world.connect()
    for item in ("AAMk1", "AAMk2"):
        world.feed.change("contact", item)
    world.service.handle([world.catch_up()])
    world.queue.take()
    world.feed.change("contact", "AAMk3")
    world.feed.expire()
    outcome = world.service.handle([world.catch_up()])
    assert _ids(world.queue.take()) == [("AAMk1", False), ("AAMk2", False), ("AAMk3", False)]
    entries = [e for e in outcome.entries if "cursor expired" in e.reason]
    assert outcome.resyncs == ["conn_ada/contact: cursor expired (delta token expired (410))"]
    assert outcome.alarms == []
    assert [e.status for e in entries] == ["synced"]
    assert "full re-sync (cursor expired (delta token expired (410)))" in entries[0].reason
    connection = world.connections.get("conn_ada")
    assert connection is not None and connection.status == "active"
    # The new cursor works: the next round is incremental again.
    world.feed.change("contact", "AAMk4")
    world.service.handle([world.catch_up()])
    assert _ids(world.queue.take()) == [("AAMk4", False)]


def test_a_second_expiry_soon_after_a_resync_alarms_instead_of_looping() -> None:
    world = World()
    world.connect()
    world.feed.change("contact", "AAMk1")
    world.service.handle([world.catch_up()])
    world.feed.expire()
    world.service.handle([world.catch_up()])  # the re-sync
    world.queue.take()
    world.clock.advance(hours=1)
    world.feed.change("contact", "AAMk2")
    world.feed.expire()
    outcome = world.service.handle([world.catch_up()])
    assert world.queue.take() == []
    assert outcome.resyncs == [] and len(outcome.alarms) == 1
    assert "again within 24 h of a re-sync" in outcome.alarms[0]
    assert "cursor expired" in world.health()["cursor_alarm"]
    connection = world.connections.get("conn_ada")
    assert connection is not None and connection.status == "active"
    # After the cool-down a re-sync is allowed again.
    world.clock.advance(days=1)
    outcome = world.service.handle([world.catch_up()])
    assert len(outcome.resyncs) == 1 and outcome.alarms == []


def test_a_cursor_that_expires_during_the_full_load_alarms() -> None:
    world = World()
    world.connect()
    world.feed.expire_full_loads = True
    outcome = world.service.handle([world.catch_up()])
    assert len(outcome.alarms) == 1 and outcome.queued == 0
    assert world.cursors.get("conn_ada", "contact") is None


# ---------------------------------------------------------------------------------------- Salesforce


def test_one_watermark_query_per_object_serves_every_connection() -> None:
    world = World()
    for n in range(10):
        world.connect(f"conn_{n}", owner=f"005{n:015d}")
    world.service.handle([world.salesforce_catch_up("contact")])
    assert len(world.crm_feed.queries) == 1
    sobject, _, owners = world.crm_feed.queries[0]
    assert sobject == "Contact" and len(owners) == 10


def test_the_watermark_is_taken_before_the_query_and_overlapping_windows_queue_nothing_twice() -> None:
    world = World(policy=CatchUpPolicy(overlap=timedelta(minutes=5)))
    world.connect()
    world.crm_feed.records["003A"] = ("Contact", OWNER, START - timedelta(minutes=1), False)
    world.crm_feed.records["003B"] = ("Contact", "005someoneelse", START - timedelta(minutes=1), False)
    world.service.handle([world.salesforce_catch_up()])
    assert _ids(world.queue.take()) == [("003A", False)]
    world.clock.advance(minutes=2)
    # Committed just before the first query's start, with an earlier stamp: the overlap finds it.
    world.crm_feed.records["003C"] = ("Contact", OWNER, START - timedelta(seconds=1), False)
    world.crm_feed.records["003D"] = ("Contact", OWNER, START + timedelta(minutes=1), True)
    world.service.handle([world.salesforce_catch_up()])
    assert _ids(world.queue.take()) == [("003C", False), ("003D", True)]  # 003A was queued already
    assert world.crm_feed.queries[1][1] == START - timedelta(minutes=5)
    queued_again = world.service.handle([world.salesforce_catch_up()])
    assert queued_again.queued == 0


def test_no_connection_no_salesforce_query() -> None:
    world = World()
    world.service.handle([world.salesforce_catch_up()])
    assert world.crm_feed.queries == []


# ---------------------------------------------------------------------------------------- budget


def test_scheduled_catch_ups_wait_while_the_api_budget_is_low_but_pushes_do_not() -> None:
    world = World(policy=CatchUpPolicy(budget_floor=0.2))
    world.connect()
    world.feed.change("contact", "AAMk1")
    world.crm.budget = 0.1
    outcome = world.service.handle([world.catch_up(scheduled=True), world.salesforce_catch_up(scheduled=True)])
    assert outcome.deferred == 2 and world.queue.take() == [] and world.crm_feed.queries == []
    assert world.cursors.get("conn_ada", "contact") is None  # kept for when the budget is back
    outcome = world.service.handle([world.catch_up()])  # a push's catch-up (a Gmail push, a Calendar ping)
    assert outcome.deferred == 0 and len(world.queue.take()) == 1


# ---------------------------------------------------------------------------------------- the schedule


def test_the_schedule_asks_for_salesforce_every_run_and_each_connection_hourly() -> None:
    world = World()
    assert world.schedule.due() == []  # nothing to catch up for nobody
    world.connect(last_catch_up_at="2026-12-04T08:30:00Z", last_audit_at="2026-12-04T08:00:00Z")
    due = world.schedule.due()
    assert sorted(n.object_type for n in due if n.source == "salesforce") == ["contact", "event", "lead"]
    assert [n for n in due if n.source == "graph"] == []  # caught up half an hour ago
    assert all(n.scheduled for n in due)
    world.clock.advance(minutes=31)
    due = world.schedule.due()
    assert sorted(n.object_type for n in due if n.source == "graph") == ["contact", "email", "event"]


def test_a_new_connection_gets_one_first_sync_and_every_connection_a_daily_audit() -> None:
    world = World()
    world.connections.put(
        Connection("conn_new", "graph", "new@contoso.example", OWNER, ConnectionOptions(provider="graph"))
    )
    first = [n for n in world.schedule.due() if n.connection_id]
    assert {n.resync for n in first} == {"first_sync"} and len(first) == 3
    assert [n for n in world.schedule.due() if n.connection_id] == []  # asked for already
    world.service.handle(first)
    assert world.health("conn_new")["first_sync_at"]
    world.clock.advance(hours=2)
    audit = [n for n in world.schedule.due() if n.connection_id]
    assert {n.resync for n in audit} == {"audit"}


# ---------------------------------------------------------------------------------------- full loads


def test_a_reset_clears_links_and_cursors_and_loads_both_sides_again() -> None:
    world = World()
    world.connect()
    world.feed.change("contact", "AAMk1")
    world.crm_feed.records["003A"] = ("Contact", OWNER, START, False)
    world.crm_feed.records["00QA"] = ("Lead", OWNER, START, False)
    world.crm_feed.records["003X"] = ("Contact", "005other", START, False)
    link = LinkState("contact", "Contact", "003A", "AAMk1")
    world.links.put_many([StoredLink("conn_ada", link)])
    world.service.handle([world.catch_up()])
    world.queue.take()
    notices = world.schedule.reset("conn_ada", links=world.links, cursors=world.cursors)
    assert world.links.list("conn_ada") == [] and world.cursors.get("conn_ada", "contact") is None
    assert {n.resync for n in notices} == {"reset"}
    world.queue.take()
    world.service.handle([n for n in notices if n.object_type == "contact"])
    queued = world.queue.take()
    assert sorted((n.source, n.object_type, n.record_id) for n in queued) == [
        ("graph", "contact", "AAMk1"),
        ("salesforce", "contact", "003A"),
        ("salesforce", "lead", "00QA"),
    ]
    assert world.cursors.get("conn_ada", "contact") is not None


def test_the_audit_queues_only_what_disagrees_and_reports_it() -> None:
    world = World()
    connection = world.connect()
    world.feed.change("contact", "AAMk1")  # linked, both sides present
    world.feed.change("contact", "AAMk2")  # not linked: drift
    world.crm_feed.records["003A"] = ("Contact", OWNER, START, False)
    world.crm_feed.records["003B"] = ("Contact", OWNER, START, False)  # linked, its mailbox item gone
    world.crm_feed.records["003C"] = ("Contact", OWNER, START, False)  # owned, not linked: drift
    world.links.put_many(
        [
            StoredLink("conn_ada", LinkState("contact", "Contact", "003A", "AAMk1")),
            StoredLink("conn_ada", LinkState("contact", "Contact", "003B", "AAMkGone")),
            # Linked to a record no longer owned by the user but still there (left the filters): no drift.
            StoredLink("conn_ada", LinkState("contact", "Contact", "003Moved", "AAMkMoved")),
        ]
    )
    world.crm.records["003Moved"] = {"Id": "003Moved"}
    world.crm.sobjects["003Moved"] = "Contact"
    world.mailbox.items[(connection.mailbox_user, "contact")] = {"AAMkMoved": {"id": "AAMkMoved"}}
    outcome = world.service.handle([world.catch_up(resync="audit")])
    assert sorted((n.source, n.record_id, bool(n.deleted)) for n in world.queue.take()) == [
        ("graph", "AAMk2", False),
        ("graph", "AAMkGone", True),
        ("salesforce", "003C", False),
    ]
    assert outcome.drift == {"conn_ada": 3}
    assert world.health()["last_audit"]["drift"] == 3
    assert world.cursors.get("conn_ada", "contact") is None  # an audit moves no cursor


# ---------------------------------------------------------------------------------------- failures and health


def test_a_throttled_feed_retries_its_notice_after_retry_after() -> None:
    world = World()
    world.connect()
    world.feed.fail_with = TransientError("graph", "429 throttled", retry_after=30.0)
    notice = world.catch_up()
    outcome = world.service.handle([notice])
    assert outcome.retry == {notice.id: 30.0}
    assert [e.status for e in outcome.entries] == ["failed"]


def test_repeated_failures_degrade_the_connection_and_a_success_restores_it() -> None:
    world = World()
    world.connect()
    world.feed.fail_with = PermanentError("graph", "403 Forbidden: ErrorAccessDenied")
    for _ in range(3):
        outcome = world.service.handle([world.catch_up()])
        assert outcome.retry == {}
    connection = world.connections.get("conn_ada")
    assert connection is not None and connection.status == "degraded"
    assert "ErrorAccessDenied" in world.health()["catch_up_error"]
    world.feed.fail_with = None
    world.service.handle([world.catch_up()])
    connection = world.connections.get("conn_ada")
    assert connection is not None and connection.status == "active"
    assert world.health()["catch_up_error"] is None


def test_a_suspended_connection_keeps_its_cursor() -> None:
    world = World()
    world.connect()
    world.connections.set_status("conn_ada", "suspended")
    world.feed.change("contact", "AAMk1")
    outcome = world.service.handle([world.catch_up()])
    assert world.queue.take() == [] and world.feed.api_calls == 0
    assert "suspended" in outcome.entries[0].reason


def test_dying_between_queueing_and_saving_the_cursor_queues_the_same_changes_again_and_loses_none() -> None:
    world = World()
    world.connect()
    world.feed.change("contact", "AAMk1")
    world.service.handle([world.catch_up()])
    world.queue.take()
    world.feed.change("contact", "AAMk2")

    class DyingBeforeSaves:
        """The same cursors, read by a Lambda that dies before each save."""

        def get(self, scope: str, name: str) -> str | None:
            return world.cursors.get(scope, name)

        def put(self, scope: str, name: str, value: str, *, expected: str | None = None) -> None:
            raise RuntimeError("the Lambda died before the cursor was saved")

        def delete(self, scope: str, name: str) -> None:
            world.cursors.delete(scope, name)

    world.service.cursors = DyingBeforeSaves()
    with pytest.raises(RuntimeError):
        world.service.handle([world.catch_up()])
    assert _ids(world.queue.take()) == [("AAMk2", False)]
    world.service.cursors = world.cursors
    world.service.handle([world.catch_up()])
    assert _ids(world.queue.take()) == [("AAMk2", False)]  # again: a hint the worker syncs once
    world.service.handle([world.catch_up()])
    assert world.queue.take() == []
