"""The sync worker through its real handler: notices on moto's SQS, links and the sync log in DynamoDB
Local, Salesforce, Graph and Google as the sandboxes over HTTPS, wired by ``concord.bootstrap``.

The system is the one ``make run`` starts (``LocalSystem``), with the queue poller off: each test puts
notices on the changes queue the way the ingress functions do and drains it by invoking the worker with
real SQS records, deleting what the worker does not report failed, as Lambda's event source does.
"""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from concord.adapters.google import GoogleClient, GoogleEndpoints, ServiceAccount
from concord.adapters.queue import ChangeQueue
from concord.adapters.stores import DynamoDB, DynamoLinkStore, DynamoSyncLog
from concord.notices import ChangeNotice
from concord.ports import LinkKey
from local.aws.provision import REGION
from local.runner import sqs_record
from local.sandboxes import seed
from local.sandboxes.salesforce.sandbox import ValidationRule
from local.system import GOOGLE_CONNECTION, M365_CONNECTION, SYNC_FOLDER, LocalSystem

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def system() -> Iterator[LocalSystem]:
    with LocalSystem(schedule_interval_s=3600, poll_queues=False) as running:
        yield running


class Worker:
    """Drives the deployed-shaped worker: enqueue, then receive → invoke → delete, until the queue is empty."""

    def __init__(self, system: LocalSystem) -> None:
        self.system = system
        self.sqs = system.stack.client("sqs")
        self.queue_url = system.stack.env["CHANGES_QUEUE_URL"]
        self.dlq_url = system.stack.env["CHANGES_DLQ_URL"]
        self.function = system.runner.functions["SyncWorkerFunction"]
        self.queue = ChangeQueue(self.queue_url, self.sqs)
        self.dynamodb = DynamoDB(system.stack.dynamodb.url, region=REGION)
        self.links = DynamoLinkStore(system.stack.env["LINKS_TABLE"], dynamodb=self.dynamodb)
        self.log = DynamoSyncLog(system.stack.env["SYNC_LOG_TABLE"], dynamodb=self.dynamodb)
        self.failures: list[str] = []

    def notice(self, source: str, record_id: str, object_type: str = "contact", **extra: Any) -> ChangeNotice:
        connection = {"graph": M365_CONNECTION, "google": GOOGLE_CONNECTION}.get(source)
        return ChangeNotice(
            source=source,  # type: ignore[arg-type]
            connection_id=connection,
            object_type=object_type,  # type: ignore[arg-type]
            record_id=record_id,
            provider_event_id=f"test:{record_id}:{time.monotonic_ns()}",
            **extra,
        )

    def sync(self, *notices: ChangeNotice) -> None:
        self.queue.send(list(notices))
        self.drain()

    def drain(self, rounds: int = 10) -> None:
        arn = next(str(event["Queue"]) for event in self.function.events.values() if "Queue" in event)
        for _ in range(rounds):
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]
            ).get("Messages", [])
            if not messages:
                return
            result = self.function.invoke({"Records": [sqs_record(m, arn) for m in messages]}) or {}
            failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
            self.failures += sorted(failed)
            done = [m for m in messages if m["MessageId"] not in failed]
            if done:
                self.sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
                )

    def link(self, connection: str, kind: str, side: str, record_id: str) -> Any:
        found = self.links.get_many([LinkKey(connection, kind, side, record_id)])  # type: ignore[arg-type]
        return next(iter(found.values()), None)

    def dead_letters(self) -> list[dict[str, Any]]:
        answer = self.sqs.receive_message(
            QueueUrl=self.dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=0
        )
        return answer.get("Messages", [])


@pytest.fixture
def worker(system: LocalSystem) -> Worker:
    return Worker(system)


def _put_outlook_contact(system: LocalSystem, fields: dict[str, Any]) -> dict[str, Any]:
    """A contact the user files in the "Salesforce Sync" folder (the connection syncs that folder only)."""
    mailbox = system.graph.mailbox(seed.M365_USER)
    folder = next(f.id for f in mailbox.folders.values() if f.display_name == SYNC_FOLDER)
    return system.graph.put_contact(seed.M365_USER, fields, folder_id=folder)


def _seeded_outlook_contact(system: LocalSystem, email: str) -> dict[str, Any]:
    mailbox = system.graph.mailbox(seed.M365_USER)
    return next(
        contact
        for folder in mailbox.folders.values()
        for contact in folder.items.values()
        if contact.get("emailAddresses", [{}])[0].get("address") == email
    )


def _google_client(system: LocalSystem) -> GoogleClient:
    """A user's own client, as a person editing their Google contacts would use."""
    return GoogleClient(
        ServiceAccount.from_info(system.google.service_account_info()),
        endpoints=GoogleEndpoints.for_base(system.google.url),
        verify=system.ca_bundle or True,
    )


def _salesforce_contacts(system: LocalSystem, email: str) -> list[dict[str, Any]]:
    return [r for r in system.salesforce.live_records("Contact") if str(r.get("Email", "")).lower() == email]


def test_a_contact_added_in_outlook_becomes_one_salesforce_contact_owned_by_the_user(
    system: LocalSystem, worker: Worker
) -> None:
    made = _put_outlook_contact(
        system, {"givenName": "Hedy", "surname": "Lamarr", "emailAddresses": [{"address": "hedy@mgm.example"}]}
    )

    worker.sync(worker.notice("graph", made["id"]), worker.notice("graph", made["id"]))

    [contact] = _salesforce_contacts(system, "hedy@mgm.example")
    assert contact["LastName"] == "Lamarr" and contact["OwnerId"] == system.salesforce.user_id
    link = worker.link(M365_CONNECTION, "contact", "mailbox", made["id"])
    assert link is not None and link.link.salesforce_id == contact["Id"]
    entries = worker.log.by_record(f"graph#contact#{made['id']}")
    assert entries and entries[0].status == "synced"
    assert worker.failures == []


def test_a_seeded_outlook_contact_links_to_its_salesforce_twin_and_a_salesforce_edit_reaches_outlook(
    system: LocalSystem, worker: Worker
) -> None:
    grace = _seeded_outlook_contact(system, "grace@navy.example")

    worker.sync(worker.notice("graph", grace["id"]))

    [twin] = _salesforce_contacts(system, "grace@navy.example")
    assert worker.link(M365_CONNECTION, "contact", "mailbox", grace["id"]).link.salesforce_id == twin["Id"]

    system.salesforce.change(twin["Id"], Title="Commodore")
    worker.sync(worker.notice("salesforce", twin["Id"]))

    assert system.graph.mailbox(seed.M365_USER).find_contact(grace["id"])[1]["jobTitle"] == "Commodore"
    assert len(_salesforce_contacts(system, "grace@navy.example")) == 1


def test_a_google_contact_becomes_a_salesforce_contact(system: LocalSystem, worker: Worker) -> None:
    person = _google_client(system).create_contact(
        seed.GOOGLE_USER,
        {
            "names": [{"givenName": "Radia", "familyName": "Perlman"}],
            "emailAddresses": [{"value": "radia@dec.example"}],
        },
    )

    worker.sync(worker.notice("google", person["resourceName"]))

    [contact] = _salesforce_contacts(system, "radia@dec.example")
    assert contact["FirstName"] == "Radia"
    assert worker.link(GOOGLE_CONNECTION, "contact", "mailbox", person["resourceName"]) is not None


def test_a_permanent_failure_goes_to_the_dlq_at_once_with_its_reason(system: LocalSystem, worker: Worker) -> None:
    system.salesforce.add_validation_rule(ValidationRule("Contact", "Title", ("Forbidden",), "Titles are vetted."))
    made = _put_outlook_contact(
        system, {"surname": "Nobody", "jobTitle": "Forbidden", "emailAddresses": [{"address": "nobody@x.example"}]}
    )

    worker.sync(worker.notice("graph", made["id"]))

    assert worker.failures == []
    letters = worker.dead_letters()
    assert any("FIELD_CUSTOM_VALIDATION_EXCEPTION" in m["MessageAttributes"]["reason"]["StringValue"] for m in letters)
    assert _salesforce_contacts(system, "nobody@x.example") == []
    assert worker.link(M365_CONNECTION, "contact", "mailbox", made["id"]) is None


def test_two_workers_racing_on_one_new_contact_create_it_once(
    system: LocalSystem, worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    from concord.bootstrap import Deadline, sync_service
    from concord.service.sync import QueueMessage
    from concord.settings import WorkerSettings

    made = _put_outlook_contact(
        system, {"givenName": "Joan", "surname": "Clarke", "emailAddresses": [{"address": "joan@bletchley.example"}]}
    )
    for key, value in {**worker.function.env, **system.stack.env}.items():
        monkeypatch.setenv(key, value)  # what a Lambda process of the worker has: endpoints, names, secrets
    settings = WorkerSettings.from_env({**worker.function.env, "POWERTOOLS_SERVICE_NAME": "race"})
    services = [sync_service(settings, Deadline()) for _ in range(2)]
    body = json.dumps([json.loads(worker.notice("graph", made["id"]).to_message())])
    # Every Salesforce call slow enough that both workers have looked for a match before either creates.
    system.salesforce.faults.latency(0.3)
    start = threading.Barrier(2)
    outcomes: list[Any] = []

    def run(service: Any) -> None:
        start.wait()
        outcomes.append(service.handle([QueueMessage("m", body)]))

    threads = [threading.Thread(target=run, args=(service,)) for service in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    system.salesforce.faults.latency(0.0)
    # Whoever lost the claim hands the message back; a later retry only finds the link.
    if any(outcome.retry for outcome in outcomes):
        services[0].handle([QueueMessage("m", body)])

    assert len(_salesforce_contacts(system, "joan@bletchley.example")) == 1


def test_a_meeting_the_user_organises_becomes_one_event_related_to_known_people_and_mails_nobody(
    system: LocalSystem, worker: Worker
) -> None:
    mails_before = len(system.graph.attendee_mails)
    made = system.graph.put_event(
        seed.M365_USER,
        {
            "subject": "Roadmap review",
            "start": {"dateTime": "2026-12-15T15:00:00", "timeZone": "Pacific Standard Time"},
            "end": {"dateTime": "2026-12-15T16:00:00", "timeZone": "Pacific Standard Time"},
            "attendees": [
                {"emailAddress": {"address": "grace@navy.example"}, "type": "required"},
                {"emailAddress": {"address": "guest@elsewhere.example"}, "type": "optional"},
            ],
        },
    )

    worker.sync(worker.notice("graph", made["id"], "event"))

    [event] = [e for e in system.salesforce.live_records("Event") if e.get("Subject") == "Roadmap review"]
    assert event["Concord_ICalUID__c"] == made["iCalUId"]
    assert event["StartDateTime"].startswith("2026-12-15T23:00:00")  # 15:00 Pacific is 23:00 UTC
    [grace] = _salesforce_contacts(system, "grace@navy.example")
    relations = [r for r in system.salesforce.live_records("EventRelation") if r["EventId"] == event["Id"]]
    assert {r["RelationId"] for r in relations} == {grace["Id"]}
    assert len(system.graph.attendee_mails) == mails_before  # Concord wrote nothing to the meeting

    # A second sync of both sides: nothing written, no attendee mailed, the guest still invited.
    worker.sync(worker.notice("graph", made["id"], "event"), worker.notice("salesforce", event["Id"], "event"))
    assert len(system.graph.attendee_mails) == mails_before
    mailbox_event = system.graph.mailbox(seed.M365_USER).calendar.items[made["id"]]
    assert len(mailbox_event["attendees"]) == 2


def test_an_email_in_outlook_and_gmail_is_one_task_related_to_the_contact(system: LocalSystem, worker: Worker) -> None:
    message_id = "<proposal-7@contoso.example>"
    sent = system.graph.put_message(
        seed.M365_USER,
        "sentitems",
        {
            "internetMessageId": message_id,
            "subject": "Proposal",
            "toRecipients": [
                {"emailAddress": {"address": "alan@bletchley.example"}},
                {"emailAddress": {"address": seed.GOOGLE_USER}},
            ],
        },
    )
    received = system.google.deliver_email(
        seed.GOOGLE_USER, sender=seed.M365_USER, to=["alan@bletchley.example", seed.GOOGLE_USER], subject="Proposal"
    )
    headers = system.google._mailbox(seed.GOOGLE_USER).messages[received["id"]]["_headers"]
    for header in headers:
        if header["name"] == "Message-ID":
            header["value"] = message_id  # the same email, delivered to the second mailbox

    worker.sync(worker.notice("graph", sent["id"], "email"))
    worker.sync(worker.notice("google", received["id"], "email"))

    tasks = [t for t in system.salesforce.live_records("Task") if t.get("Concord_Message_ID__c") == message_id]
    assert len(tasks) == 1 and tasks[0]["Subject"] == "Proposal" and tasks[0]["Status"] == "Completed"
    [alan] = _salesforce_contacts(system, "alan@bletchley.example")
    relations = [r for r in system.salesforce.live_records("TaskRelation") if r["TaskId"] == tasks[0]["Id"]]
    assert alan["Id"] in {r["RelationId"] for r in relations}
    assert worker.link(GOOGLE_CONNECTION, "email", "mailbox", received["id"]).link.salesforce_id == tasks[0]["Id"]


def test_a_linked_lead_converted_in_salesforce_is_followed_to_its_contact(system: LocalSystem, worker: Worker) -> None:
    made = _put_outlook_contact(
        system, {"givenName": "Mary", "surname": "Jackson", "emailAddresses": [{"address": "mary@langley.example"}]}
    )
    lead = system.salesforce.insert(
        "Lead", FirstName="Mary", LastName="Jackson", Email="mary@langley.example", Company="Langley"
    )
    worker.sync(worker.notice("graph", made["id"]))
    log = [(e.status, e.reason) for e in worker.log.by_record(f"graph#contact#{made['id']}")]
    assert worker.link(M365_CONNECTION, "contact", "mailbox", made["id"]).link.salesforce_id == lead, log

    contact = system.salesforce.convert_lead(lead)
    system.graph.edit(seed.M365_USER, made["id"], {"jobTitle": "Engineer"})
    worker.sync(worker.notice("graph", made["id"]))

    failed = [(e.record_key, e.reason) for e in worker.log.by_status("failed")]
    assert worker.failures == [], failed
    assert not [m for m in worker.dead_letters() if made["id"] in m["Body"]]
    [converted] = [c for c in system.salesforce.live_records("Contact") if c["Id"] == contact]
    assert converted["Title"] == "Engineer"
    link = worker.link(M365_CONNECTION, "contact", "mailbox", made["id"]).link
    assert (link.salesforce_object, link.salesforce_id) == ("Contact", contact)


def test_a_company_changed_in_outlook_relates_the_contact_to_the_account_of_that_name(
    system: LocalSystem, worker: Worker
) -> None:
    katherine = _seeded_outlook_contact(system, "katherine@nasa.example")
    worker.sync(worker.notice("graph", katherine["id"]))
    [account] = [a for a in system.salesforce.live_records("Account") if a["Name"] == "Bletchley Park"]

    system.graph.edit(seed.M365_USER, katherine["id"], {"companyName": "Bletchley Park"})
    worker.sync(worker.notice("graph", katherine["id"]))

    [contact] = _salesforce_contacts(system, "katherine@nasa.example")
    assert contact["AccountId"] == account["Id"]


def test_a_company_no_account_is_named_after_is_noted_not_failed_and_not_retried(
    system: LocalSystem, worker: Worker
) -> None:
    made = _put_outlook_contact(
        system,
        {
            "givenName": "Ida",
            "surname": "Rhodes",
            "companyName": "Nowhere Inc",
            "emailAddresses": [{"address": "ida@nowhere.example"}],
        },
    )
    worker.sync(worker.notice("graph", made["id"]))
    [contact] = _salesforce_contacts(system, "ida@nowhere.example")
    [entry] = worker.log.by_record(f"graph#contact#{made['id']}")
    assert entry.status == "synced" and entry.salesforce_id == contact["Id"]
    assert any("no Account of that name" in reason for reason in entry.reasons)

    worker.sync(worker.notice("graph", made["id"]), worker.notice("salesforce", contact["Id"]))

    assert worker.failures == []
    statuses = [e.status for e in worker.log.by_record(f"graph#contact#{made['id']}")]
    assert statuses == ["skipped", "synced"]  # newest first: the second sync had nothing to do


def _with_options(system: LocalSystem, worker: Worker, connection_id: str, **options: Any) -> None:
    """Change a seeded connection's options, as an admin would."""
    from dataclasses import replace

    from concord.adapters.stores import DynamoConnectionStore

    store = DynamoConnectionStore(system.stack.env["CONNECTIONS_TABLE"], dynamodb=worker.dynamodb)
    connection = store.get(connection_id)
    assert connection is not None
    store.put(replace(connection, options=replace(connection.options, **options)))


def test_a_salesforce_contact_new_to_the_owner_reaches_the_outlook_sync_folder_and_google(
    system: LocalSystem, worker: Worker
) -> None:
    contact = system.salesforce.insert(
        "Contact", FirstName="Evelyn", LastName="Boyd", Email="evelyn@ibm.example", Title="Mathematician"
    )

    worker.sync(worker.notice("salesforce", contact))

    mailbox = system.graph.mailbox(seed.M365_USER)
    folder = next(f for f in mailbox.folders.values() if f.display_name == SYNC_FOLDER)
    [outlook] = [c for c in folder.items.values() if c.get("surname") == "Boyd"]
    assert outlook["jobTitle"] == "Mathematician"
    assert worker.link(M365_CONNECTION, "contact", "salesforce", contact).link.mailbox_id == outlook["id"]
    google = worker.link(GOOGLE_CONNECTION, "contact", "salesforce", contact)
    assert google is not None and google.link.mailbox_id.startswith("people/")


def test_deletes_propagate_both_ways_when_the_connection_allows_it(system: LocalSystem, worker: Worker) -> None:
    _with_options(system, worker, M365_CONNECTION, propagate_deletes=True)
    try:
        from_outlook = _put_outlook_contact(
            system, {"givenName": "Del", "surname": "One", "emailAddresses": [{"address": "del1@x.example"}]}
        )
        from_salesforce = _put_outlook_contact(
            system, {"givenName": "Del", "surname": "Two", "emailAddresses": [{"address": "del2@x.example"}]}
        )
        worker.sync(worker.notice("graph", from_outlook["id"]), worker.notice("graph", from_salesforce["id"]))
        [one] = _salesforce_contacts(system, "del1@x.example")
        [two] = _salesforce_contacts(system, "del2@x.example")

        system.graph.remove(seed.M365_USER, from_outlook["id"])  # deleted in Outlook
        system.salesforce.delete(two["Id"])  # deleted in Salesforce
        worker.sync(worker.notice("graph", from_outlook["id"]), worker.notice("salesforce", two["Id"], deleted=True))

        assert _salesforce_contacts(system, "del1@x.example") == []
        with pytest.raises(Exception, match="not found"):
            system.graph.mailbox(seed.M365_USER).find_contact(from_salesforce["id"])
        assert worker.link(M365_CONNECTION, "contact", "mailbox", from_outlook["id"]).link.is_tombstone
    finally:
        _with_options(system, worker, M365_CONNECTION, propagate_deletes=False)


def test_a_google_calendar_event_the_user_organises_becomes_a_salesforce_event(
    system: LocalSystem, worker: Worker
) -> None:
    made = _google_client(system).insert_event(
        seed.GOOGLE_USER,
        {
            "summary": "Design review",
            "start": {"dateTime": "2026-12-16T10:00:00Z"},
            "end": {"dateTime": "2026-12-16T11:00:00Z"},
        },
    )

    worker.sync(worker.notice("google", made["id"], "event"))

    [event] = [e for e in system.salesforce.live_records("Event") if e.get("Subject") == "Design review"]
    assert event["Concord_ICalUID__c"] == made["iCalUID"]
    assert worker.link(GOOGLE_CONNECTION, "event", "mailbox", made["id"]).link.salesforce_id == event["Id"]


def test_a_contact_created_in_google_joins_the_connections_sync_group_and_stays_in_scope(
    system: LocalSystem, worker: Worker
) -> None:
    client = _google_client(system)
    group = client.ensure_contact_group(seed.GOOGLE_USER, "Salesforce Sync")
    _with_options(system, worker, GOOGLE_CONNECTION, contact_group=group)
    try:
        contacts = [
            system.salesforce.insert("Contact", FirstName="Mary", LastName=f"Jackson{i}", Email=f"mary{i}@nasa.example")
            for i in range(2)  # two: People's batch create, and one alone below
        ]
        worker.sync(*(worker.notice("salesforce", c) for c in contacts))
        solo = system.salesforce.insert("Contact", FirstName="Dorothy", LastName="Vaughan", Email="dv@nasa.example")
        worker.sync(worker.notice("salesforce", solo))

        for contact in [*contacts, solo]:
            link = worker.link(GOOGLE_CONNECTION, "contact", "salesforce", contact)
            assert link is not None and link.link.mailbox_id is not None
            person = client.get_contact(seed.GOOGLE_USER, link.link.mailbox_id)
            groups = {m["contactGroupMembership"]["contactGroupResourceName"] for m in person.get("memberships", [])}
            assert group in groups
            # Its own echo finds it in scope: still linked, not filtered out.
            worker.sync(worker.notice("google", link.link.mailbox_id))
            after = worker.link(GOOGLE_CONNECTION, "contact", "mailbox", link.link.mailbox_id)
            assert after is not None and after.link.status == "linked"
            entries = worker.log.by_record(f"google#contact#{link.link.mailbox_id}")
            assert entries and "filter" not in entries[0].reason
    finally:
        _with_options(system, worker, GOOGLE_CONNECTION, contact_group=None)


def test_graph_lifecycle_events_reach_the_channels_through_the_worker(system: LocalSystem, worker: Worker) -> None:
    """``subscriptionRemoved`` and ``reauthorizationRequired`` from Graph, through ingress and the queue:
    the worker hands them to the channels, which recreate or reauthorise the subscription."""
    system.runner.invoke_scheduled("SubscriptionsFunction")
    graph = system.graph
    subscriptions = {s.id: s for s in graph.subscriptions.values() if s.resource.startswith(f"users/{seed.M365_USER}")}
    removed = next(s for s in subscriptions.values() if "contactFolders" in s.resource)
    renewed = next(s for s in subscriptions.values() if s.resource.endswith("/events"))

    graph.lifecycle(removed.id, "subscriptionRemoved")
    graph.lifecycle(renewed.id, "reauthorizationRequired")
    assert graph.wait_notifications(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (
        removed.id in graph.subscriptions
        or not any(s.resource == removed.resource for s in graph.subscriptions.values())
        or graph.subscriptions[renewed.id].needs_reauthorization
    ):
        worker.drain()
        time.sleep(0.1)

    assert [s for s in graph.subscriptions.values() if s.resource == removed.resource and s.live()]
    assert not graph.subscriptions[renewed.id].needs_reauthorization
    assert worker.failures == []
    # (the catch-ups the new channels ask for may dead-letter records earlier tests made invalid)
    assert not [m for m in worker.dead_letters() if '"kind":"re' in m["Body"]]
