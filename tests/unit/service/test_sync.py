"""The sync service, one batch at a time, on in-memory stores and systems (no I/O).

GIVEN records on either side and notices about them, WHEN a batch is handled, THEN both sides, the links,
the sync log and the dead-letter queue say what DESIGN.md promises. The same service runs over HTTP
against the sandboxes and DynamoDB Local in tests/integration/worker.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from concord.adapters.http import TransientError
from concord.adapters.memory import MemoryConnectionStore, MemoryCursorStore, MemoryLinkStore, MemorySyncLog
from concord.core import ConnectionOptions, DeleteLimits, LinkState
from concord.notices import ChangeNotice, encode_message
from concord.ports import Connection, LinkKey, StoredLink, WriteResult
from concord.service.catchup import CatchUpService
from concord.service.sync import CLAIM_LEASE_S, QueueMessage, SyncService
from tests.unit.service.fakes import FakeCrm, FakeCrmFeed, FakeDeadLetters, FakeFeed, FakeMailbox, Queue

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
USER = "ada@example.com"
OWNER = "005000000000001AAA"


class World:
    """One org, one Graph mailbox, one connection, and a service over them."""

    def __init__(self, **options: Any) -> None:
        self.crm = FakeCrm()
        self.mailbox = FakeMailbox()
        self.links = MemoryLinkStore()
        self.connections = MemoryConnectionStore()
        self.log = MemorySyncLog()
        self.dlq = FakeDeadLetters()
        self.now = NOW
        self.connection = Connection(
            connection_id="conn_ada",
            provider="graph",
            mailbox_user=USER,
            salesforce_user_id=OWNER,
            options=ConnectionOptions(provider="graph", user_email=USER, contact_folder_id=None, **options),
        )
        self.connections.put(self.connection)
        self.service = self.make_service()
        self._messages = 0

    def make_service(self) -> SyncService:
        return SyncService(
            crm=self.crm,
            mailboxes={"graph": self.mailbox},
            links=self.links,
            connections=self.connections,
            log=self.log,
            dead_letters=self.dlq,
            clock=lambda: self.now,
        )

    def notice(self, source: str, record_id: str, object_type: str = "contact", **extra: Any) -> ChangeNotice:
        return ChangeNotice(
            source=source,  # type: ignore[arg-type]
            connection_id=None if source == "salesforce" else self.connection.connection_id,
            object_type=object_type,  # type: ignore[arg-type]
            record_id=record_id,
            provider_event_id=f"evt-{record_id}-{self._messages}",
            **extra,
        )

    def message(self, *notices: ChangeNotice) -> QueueMessage:
        self._messages += 1
        return QueueMessage(f"msg-{self._messages}", encode_message(list(notices)))

    def run(self, *messages: QueueMessage, time_left: float = 900.0):  # noqa: ANN201
        return self.service.handle(list(messages), time_left=lambda: time_left)

    def health(self) -> dict[str, Any]:
        connection = self.connections.get(self.connection.connection_id)
        assert connection is not None
        return dict(connection.health)

    def link_of(self, side: str, record_id: str, kind: str = "contact"):  # noqa: ANN201
        found = self.links.get_many([LinkKey(self.connection.connection_id, kind, side, record_id)])  # type: ignore[arg-type]
        return next(iter(found.values()), None)


def graph_contact(first: str, last: str, email: str, **extra: Any) -> dict[str, Any]:
    return {
        "givenName": first,
        "surname": last,
        "emailAddresses": [{"address": email, "name": f"{first} {last}"}],
        "lastModifiedDateTime": "2026-12-04T09:00:00Z",
        **extra,
    }


def test_a_new_mailbox_contact_is_created_in_salesforce_once_and_linked() -> None:
    world = World()
    item = world.mailbox.add(USER, "contact", **graph_contact("Grace", "Hopper", "grace@navy.mil"))
    notice = world.notice("graph", item)

    outcome = world.run(world.message(notice), world.message(world.notice("graph", item)))

    creates = [op for op in world.crm.writes if op.action == "create"]
    assert len(creates) == 1 and creates[0].object_type == "Contact"
    stored = world.link_of("mailbox", item)
    assert stored is not None and stored.link.salesforce_id in world.crm.records
    assert world.link_of("salesforce", stored.link.salesforce_id) == stored
    assert outcome.retry == {} and outcome.dead_lettered == {}
    assert [entry.status for entry in world.log.by_connection("conn_ada")] == ["synced"]


def test_a_replayed_notice_and_the_echo_of_our_own_write_write_nothing() -> None:
    world = World()
    item = world.mailbox.add(USER, "contact", **graph_contact("Grace", "Hopper", "grace@navy.mil"))
    world.run(world.message(world.notice("graph", item)))
    created = world.link_of("mailbox", item).link.salesforce_id
    writes = len(world.crm.writes) + len(world.mailbox.writes)

    outcome = world.run(world.message(world.notice("graph", item)), world.message(world.notice("salesforce", created)))

    assert len(world.crm.writes) + len(world.mailbox.writes) == writes
    # Both notices name one linked pair: one item, planned once, nothing to do.
    assert [entry.status for entry in outcome.entries] == ["skipped"]


def test_a_mailbox_contact_matching_a_salesforce_contact_by_email_links_instead_of_creating() -> None:
    world = World()
    existing = world.crm.add("Contact", FirstName="Grace", LastName="Hopper", Email="grace@navy.mil", OwnerId=OWNER)
    item = world.mailbox.add(USER, "contact", **graph_contact("Grace", "Hopper", "GRACE@navy.mil"))

    world.run(world.message(world.notice("graph", item)))

    assert not [op for op in world.crm.writes if op.action == "create"]
    assert world.link_of("mailbox", item).link.salesforce_id == existing


def test_a_salesforce_change_reaches_the_owners_mailbox() -> None:
    world = World()
    item = world.mailbox.add(USER, "contact", **graph_contact("Grace", "Hopper", "grace@navy.mil"))
    world.run(world.message(world.notice("graph", item)))
    contact = world.link_of("mailbox", item).link.salesforce_id
    world.crm.records[contact].update(
        {"Title": "Rear Admiral", "OwnerId": OWNER, "SystemModstamp": "2026-12-04T11:00:00.000+0000"}
    )

    world.run(world.message(world.notice("salesforce", contact)))

    assert world.mailbox.get(USER, "contact", item)["jobTitle"] == "Rear Admiral"


def test_a_salesforce_record_whose_owner_has_no_connection_is_logged_as_skipped() -> None:
    world = World()
    contact = world.crm.add("Contact", LastName="Lovelace", OwnerId="005000000000009AAA")

    outcome = world.run(world.message(world.notice("salesforce", contact)))

    assert outcome.count("skipped") == 1 and world.mailbox.writes == []
    assert "no connection" in world.log.by_connection("-")[0].reason


def test_suspended_connections_skip_and_connections_needing_reauthorisation_park_in_the_dlq() -> None:
    world = World()
    item = world.mailbox.add(USER, "contact", **graph_contact("Grace", "Hopper", "grace@navy.mil"))
    world.connections.set_status("conn_ada", "suspended")
    world.run(world.message(world.notice("graph", item)))
    assert world.crm.writes == [] and world.log.by_connection("conn_ada")[0].status == "skipped"

    world.connections.set_status("conn_ada", "needs_reauth")
    outcome = world.run(world.message(world.notice("graph", item)))
    assert world.crm.writes == [] and outcome.retry == {}
    assert "re-authorisation" in world.dlq.sent[0][1]
    assert json.loads(world.dlq.sent[0][2])["record_id"] == item


def test_a_malformed_message_goes_to_the_dlq_at_once_and_its_batch_mates_sync() -> None:
    world = World()
    item = world.mailbox.add(USER, "contact", **graph_contact("Grace", "Hopper", "grace@navy.mil"))
    bad = QueueMessage("msg-bad", '{"not": "a notice"}')

    outcome = world.run(bad, world.message(world.notice("graph", item)))

    assert list(outcome.dead_lettered) == ["msg-bad"] and outcome.retry == {}
    assert world.link_of("mailbox", item) is not None


def test_a_permanent_failure_dead_letters_only_its_message_and_releases_its_claim() -> None:
    world = World()
    good = world.mailbox.add(USER, "contact", **graph_contact("Grace", "Hopper", "grace@navy.mil"))
    bad = world.mailbox.add(USER, "contact", **graph_contact("Alan", "Turing", "alan@bletchley.uk"))
    world.crm.fail_next = [WriteResult(False, error="FIELD_CUSTOM_VALIDATION_EXCEPTION: no")]
    bad_message = world.message(world.notice("graph", bad))

    outcome = world.run(bad_message, world.message(world.notice("graph", good)))

    assert list(outcome.dead_lettered) == [bad_message.message_id]
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION" in outcome.dead_lettered[bad_message.message_id]
    assert world.link_of("mailbox", bad) is None  # the claim is gone: a redrive can create it
    assert world.link_of("mailbox", good) is not None
    assert {e.status for e in world.log.by_connection("conn_ada")} == {"failed", "synced"}


def test_a_transient_failure_retries_the_message_with_the_services_delay_and_creates_once_later() -> None:
    world = World()
    item = world.mailbox.add(USER, "contact", **graph_contact("Grace", "Hopper", "grace@navy.mil"))
    world.crm.fail_next = [WriteResult(False, error="UNABLE_TO_LOCK_ROW", transient=True, retry_after=7.0)]
    message = world.message(world.notice("graph", item))

    outcome = world.run(message)
    assert outcome.retry == {message.message_id: 7.0} and world.link_of("mailbox", item) is None

    world.run(message)
    assert len([op for op in world.crm.writes if op.action == "create"]) == 1
    assert world.link_of("mailbox", item) is not None


def test_a_claim_of_another_worker_holds_the_record_back_until_its_lease_ends() -> None:
    world = World()
    item = world.mailbox.add(USER, "contact", **graph_contact("Grace", "Hopper", "grace@navy.mil"))
    # Another worker claimed the create, then died before creating anything.
    claim = StoredLink("conn_ada", LinkState("contact", "Contact", None, item), 0, claimed_at=int(NOW.timestamp()))
    world.links.put_many([claim])

    outcome = world.run(world.message(world.notice("graph", item)))
    assert outcome.retry and world.crm.writes == []

    world.now = NOW + timedelta(seconds=CLAIM_LEASE_S + 1)
    world.run(world.message(world.notice("graph", item)))
    assert len(world.crm.writes) == 1 and world.link_of("mailbox", item).link.salesforce_id is not None


def test_running_out_of_time_hands_every_message_back() -> None:
    world = World()
    item = world.mailbox.add(USER, "contact", **graph_contact("Grace", "Hopper", "grace@navy.mil"))
    message = world.message(world.notice("graph", item))

    outcome = world.run(message, time_left=1.0)

    assert list(outcome.retry) == [message.message_id] and world.crm.writes == []


def test_deletes_are_held_past_the_limit_counted_over_the_window_not_per_batch() -> None:
    world = World(propagate_deletes=True, delete_limits={"contact": DeleteLimits(count=2, share=1.0, minimum=1)})
    items = [world.mailbox.add(USER, "contact", **graph_contact("P", f"N{i}", f"p{i}@x.org")) for i in range(4)]
    world.run(*[world.message(world.notice("graph", item)) for item in items])
    for item in items:
        world.mailbox.items[(USER, "contact")].pop(item)

    world.run(world.message(world.notice("graph", items[0])))
    world.run(world.message(world.notice("graph", items[1])))
    third = world.run(world.message(world.notice("graph", items[2])))

    deleted = [op for op in world.crm.writes if op.action == "delete"]
    assert len(deleted) == 2
    assert [entry.status for entry in third.entries] == ["held"]
    assert "mass-delete guard: 3 contact deletes" in third.entries[0].reason
    assert world.link_of("mailbox", items[2]).link.status == "linked"  # kept, to delete once approved


def test_a_worker_without_the_catch_up_dead_letters_catch_up_notices_with_a_reason() -> None:
    world = World()
    notice = ChangeNotice(
        source="graph", connection_id="conn_ada", object_type="contact", kind="catch_up", provider_event_id="x"
    )

    world.run(world.message(notice))

    assert "no service for catch_up notices" in world.dlq.sent[0][1]


def test_catch_up_notices_run_beside_changes_and_only_a_failed_catch_up_comes_back() -> None:
    world = World()
    feed, queue = FakeFeed(), Queue()
    world.service.catch_up = CatchUpService(
        connections=world.connections,
        cursors=MemoryCursorStore(),
        links=world.links,
        queue=queue,
        crm=world.crm,
        crm_feed=FakeCrmFeed(),
        mailboxes={"graph": world.mailbox},
        feeds={"graph": feed},
        clock=lambda: world.now,
    )
    feed.change("contact", "AAMk-missed")
    item = world.mailbox.add(USER, "contact", **graph_contact("Ada", "Lovelace", "ada@analytical.org"))
    catch_up = ChangeNotice(
        source="graph", connection_id="conn_ada", object_type="contact", kind="catch_up", provider_event_id="ping"
    )

    outcome = world.run(world.message(world.notice("graph", item)), world.message(catch_up))

    assert [(n.kind, n.record_id) for n in queue.sent] == [("change", "AAMk-missed")]
    assert outcome.retry == {} and outcome.catch_up is not None and outcome.catch_up.queued == 1
    assert [op.action for op in world.crm.writes] == ["create"]  # the change synced in the same batch
    assert any("caught up" in e.reason or "full re-sync" in e.reason for e in world.log.by_connection("conn_ada"))

    feed.fail_with = TransientError("graph", "503 Service Unavailable", retry_after=7.0)
    retried = world.run(world.message(world.notice("graph", item)), world.message(catch_up))
    assert retried.retry == {"msg-4": 7.0}  # the catch-up's message only, after its Retry-After


def graph_meeting(subject: str, *attendees: str, **extra: Any) -> dict[str, Any]:
    return {
        "subject": subject,
        "start": {"dateTime": "2026-12-10T15:00:00.0000000", "timeZone": "UTC"},
        "end": {"dateTime": "2026-12-10T16:00:00.0000000", "timeZone": "UTC"},
        "isAllDay": False,
        "type": "singleInstance",
        "iCalUId": f"uid-{subject}",
        "isOrganizer": True,
        "organizer": {"emailAddress": {"address": USER}},
        "attendees": [{"emailAddress": {"address": a}, "type": "required"} for a in attendees],
        "lastModifiedDateTime": "2026-12-04T09:00:00Z",
        **extra,
    }


def test_a_meeting_is_one_salesforce_event_related_to_known_people_and_external_guests_cause_no_later_change() -> None:
    world = World()
    world.crm.add("Contact", LastName="Hopper", Email="grace@navy.mil", OwnerId=OWNER)
    item = world.mailbox.add(USER, "event", **graph_meeting("Review", "grace@navy.mil", "guest@elsewhere.org"))

    world.run(world.message(world.notice("graph", item, object_type="event")))

    [create] = [op for op in world.crm.writes if op.action == "create"]
    assert create.object_type == "Event" and create.body["Concord_ICalUID__c"] == "uid-Review"
    event_id = world.link_of("mailbox", item, "event").link.salesforce_id
    assert world.crm.relations[event_id] == {"grace@navy.mil"}

    # The next sync of either side sees nobody removed and writes nothing: the guest is simply not held.
    world.crm.records[event_id]["EventRelations"] = {
        "records": [{"RelationId": "003x", "Relation": {"Email": "grace@navy.mil"}}]
    }
    writes = len(world.crm.writes) + len(world.mailbox.writes)
    outcome = world.run(
        world.message(world.notice("graph", item, object_type="event")),
        world.message(world.notice("salesforce", event_id, object_type="event")),
    )
    assert len(world.crm.writes) + len(world.mailbox.writes) == writes
    assert [entry.status for entry in outcome.entries] == ["skipped"]


def graph_message(message_id: str, sender: str, *to: str) -> dict[str, Any]:
    return {
        "internetMessageId": message_id,
        "subject": "Proposal",
        "from": {"emailAddress": {"address": sender}},
        "toRecipients": [{"emailAddress": {"address": a}} for a in to],
        "receivedDateTime": "2026-12-04T09:00:00Z",
        "bodyPreview": "Here is the proposal.",
    }


def test_an_email_in_two_mailboxes_is_one_task_related_to_the_known_contact() -> None:
    world = World()
    world.crm.add("Contact", LastName="Hopper", Email="grace@navy.mil", OwnerId=OWNER)
    colleague = "bob@example.com"
    other = Connection("conn_bob", "graph", colleague, OWNER, ConnectionOptions(provider="graph", user_email=colleague))
    world.connections.put(other)
    mine = world.mailbox.add(USER, "email", **graph_message("<m1@example.com>", USER, "grace@navy.mil", colleague))
    theirs = world.mailbox.add(
        colleague, "email", **graph_message("<m1@example.com>", USER, "grace@navy.mil", colleague)
    )
    bob_notice = world.notice("graph", theirs, object_type="email").model_copy(update={"connection_id": "conn_bob"})

    world.run(world.message(world.notice("graph", mine, object_type="email")))
    world.run(world.message(bob_notice))

    tasks = [op for op in world.crm.writes if op.action == "create"]
    assert len(tasks) == 1 and tasks[0].object_type == "Task"
    assert tasks[0].body["Concord_Message_ID__c"] == "<m1@example.com>"
    task_id = world.link_of("mailbox", mine, "email").link.salesforce_id
    links = world.links.get_many([LinkKey("conn_bob", "email", "mailbox", theirs)])
    assert [stored.link.salesforce_id for stored in links.values()] == [task_id]
    assert world.crm.relations[task_id] == {"grace@navy.mil"}


@pytest.mark.parametrize(
    ("sender", "to", "why"),
    [
        (USER, ("bob@example.com",), "colleague"),
        (USER, ("stranger@nowhere.org",), "no participant is a Contact or Lead"),
    ],
)
def test_internal_mail_and_mail_with_nobody_known_create_nothing(sender: str, to: tuple[str, ...], why: str) -> None:
    world = World()
    item = world.mailbox.add(USER, "email", **graph_message("<m2@example.com>", sender, *to))

    outcome = world.run(world.message(world.notice("graph", item, object_type="email")))

    assert world.crm.writes == [] and world.link_of("mailbox", item, "email") is None
    assert outcome.entries[0].status == "skipped" and why in outcome.entries[0].reason


def test_received_mail_is_left_out_when_the_connection_logs_only_sent_mail() -> None:
    world = World(log_received_email=False)
    world.crm.add("Contact", LastName="Hopper", Email="grace@navy.mil", OwnerId=OWNER)
    item = world.mailbox.add(USER, "email", **graph_message("<m3@example.com>", "grace@navy.mil", USER))

    outcome = world.run(world.message(world.notice("graph", item, object_type="email")))

    assert world.crm.writes == [] and "received mail is not logged" in outcome.entries[0].reason


def test_a_converted_lead_is_followed_to_its_contact_and_never_updated_again() -> None:
    world = World()
    lead = world.crm.add("Lead", LastName="Hopper", Company="Navy", Email="grace@navy.mil", OwnerId=OWNER)
    item = world.mailbox.add(USER, "contact", **graph_contact("Grace", "Hopper", "grace@navy.mil"))
    world.run(world.message(world.notice("graph", item)))
    assert world.link_of("mailbox", item).link.salesforce_id == lead

    contact = world.crm.add("Contact", FirstName="Grace", LastName="Hopper", Email="grace@navy.mil", OwnerId=OWNER)
    world.crm.records[lead].update({"IsConverted": True, "ConvertedContactId": contact})
    world.mailbox.get(USER, "contact", item).update({"jobTitle": "Admiral", "changeKey": "ck-new"})

    writes_before = len(world.crm.writes)
    world.run(world.message(world.notice("graph", item)))

    [update] = [op for op in world.crm.writes[writes_before:] if op.action == "update"]
    assert (update.object_type, update.record_id, update.body["Title"]) == ("Contact", contact, "Admiral")
    assert not [op for op in world.crm.writes[writes_before:] if op.record_id == lead]
    stored = world.link_of("mailbox", item)
    assert (stored.link.salesforce_object, stored.link.salesforce_id) == ("Contact", contact)
    assert world.link_of("salesforce", lead) is None


def test_a_conversions_contact_notified_before_its_lead_takes_over_the_link_and_duplicates_nothing() -> None:
    world = World()
    lead = world.crm.add(
        "Lead", FirstName="Grace", LastName="Hopper", Company="Navy", Email="grace@navy.mil", OwnerId=OWNER
    )
    item = world.mailbox.add(USER, "contact", **graph_contact("Grace", "Hopper", "grace@navy.mil"))
    world.run(world.message(world.notice("graph", item)))
    contact = world.crm.add("Contact", FirstName="Grace", LastName="Hopper", Email="grace@navy.mil", OwnerId=OWNER)
    world.crm.records[lead].update({"IsConverted": True, "ConvertedContactId": contact})

    world.run(world.message(world.notice("salesforce", contact)))
    world.run(world.message(world.notice("salesforce", lead)))

    assert not [op for op in world.mailbox.writes if op.action == "create"]
    assert world.link_of("mailbox", item).link.salesforce_id == contact
    assert world.link_of("salesforce", lead) is None


def test_a_new_pair_notified_from_both_sides_in_one_batch_is_planned_and_written_once() -> None:
    world = World()
    contact = world.crm.add("Contact", FirstName="Grace", LastName="Hopper", Email="grace@navy.mil", OwnerId=OWNER)
    item = world.mailbox.add(USER, "contact", **graph_contact("Grace", "Hopper", "grace@navy.mil", jobTitle="CTO"))

    outcome = world.run(world.message(world.notice("salesforce", contact)), world.message(world.notice("graph", item)))

    assert [op.body for op in world.crm.writes] == [{"Title": "CTO"}]
    assert outcome.retry == {} and len(outcome.entries) == 1
    assert world.link_of("mailbox", item).link.salesforce_id == contact


def test_one_person_new_in_two_mailboxes_becomes_one_salesforce_contact() -> None:
    world = World()
    colleague = "bob@example.com"
    world.connections.put(
        Connection("conn_bob", "graph", colleague, OWNER, ConnectionOptions(provider="graph", user_email=colleague))
    )
    mine = world.mailbox.add(USER, "contact", **graph_contact("Frances", "Allen", "fran@ibm.example"))
    theirs = world.mailbox.add(colleague, "contact", **graph_contact("Frances", "Allen", "fran@ibm.example"))
    bob_notice = world.notice("graph", theirs).model_copy(update={"connection_id": "conn_bob"})
    bob_message = world.message(bob_notice)

    first = world.run(world.message(world.notice("graph", mine)), bob_message)
    assert list(first.retry) == [bob_message.message_id]  # waits for the first create, then matches it
    world.run(bob_message)

    creates = [op for op in world.crm.writes if op.action == "create"]
    assert len(creates) == 1
    contact = world.link_of("mailbox", mine).link.salesforce_id
    assert [
        s.link.salesforce_id for s in world.links.get_many([LinkKey("conn_bob", "contact", "mailbox", theirs)]).values()
    ] == [contact]
    assert not [op for op in world.mailbox.writes if op.action == "create"]


def test_each_connection_carries_its_health_after_a_batch() -> None:
    world = World()
    item = world.mailbox.add(USER, "contact", **graph_contact("Ada", "Lovelace", "ada@analytical.org"))
    world.crm.fail_next = [WriteResult(False, error="UNABLE_TO_LOCK_ROW: unable to obtain access", transient=True)]

    world.run(world.message(world.notice("graph", item)))

    health = world.health()
    assert health["pending"] == 1 and "UNABLE_TO_LOCK_ROW" in health["last_error"]
    assert "last_success_at" not in health

    world.run(world.message(world.notice("graph", item)))

    health = world.health()
    assert health["pending"] == 0 and health["last_success_at"] == "2026-12-04T10:00:00Z"
