"""The sync worker under faults, through its real handler (issue 14, "Failures"): throttling storms,
5xx answers after a committed create, permanent refusals, transient errors past ``maxReceiveCount``, the
Lambda running out of time, and no secret in any log, sync log entry or dead letter.

Driven as ``test_worker`` drives it: ``LocalSystem`` with the queue poller off, notices put on the real
changes queue (moto), the worker invoked with real SQS records, and only what it does not report failed
deleted, as Lambda's event source does. Where a test needs the backoff to pass at once, it makes the
handed-back messages visible again itself (:meth:`Faulty.hurry`); where the wait is the point (a
``Retry-After``), it waits for real.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from local.runner import LOCAL_PARAMETERS, LambdaContext, sqs_record
from local.sandboxes import seed
from local.sandboxes.graph import SEED_CLIENT_ID, SEED_TENANT
from local.sandboxes.salesforce.sandbox import ValidationRule
from local.system import GOOGLE_CONNECTION, M365_CONNECTION, SALESFORCE_USERNAME, SYNC_FOLDER, LocalSystem
from tests.integration.worker.test_worker import Worker

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from local.sandboxes.server import Request, Response, Sandbox

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def system() -> Iterator[LocalSystem]:
    with LocalSystem(schedule_interval_s=3600, poll_queues=False) as running:
        yield running


class Faulty(Worker):
    """``Worker`` with the single steps a fault test needs: receive, invoke (with any time left), hurry."""

    def __init__(self, system: LocalSystem) -> None:
        super().__init__(system)
        self.arn = next(str(event["Queue"]) for event in self.function.events.values() if "Queue" in event)
        #: tracebacks of invocations that raised (Lambda then retries the whole batch and logs the traceback)
        self.crashes: list[str] = []

    def receive(self, *, visibility: int | None = None) -> list[dict[str, Any]]:
        """Every message visible now (up to 10 a call, as many calls as it takes)."""
        found: list[dict[str, Any]] = []
        while True:
            extra = {} if visibility is None else {"VisibilityTimeout": visibility}
            got = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], **extra
            ).get("Messages", [])
            if not got or visibility == 0:
                return found + got
            found += got

    def invoke(self, messages: list[dict[str, Any]], *, timeout_s: float | None = None) -> set[str]:
        """One invocation on these messages, as the event source makes it; deletes what succeeded and
        returns the ids reported failed."""
        if not messages:
            return set()
        event = {"Records": [sqs_record(m, self.arn) for m in messages]}
        context = LambdaContext(self.function.logical_id, timeout_s=timeout_s or self.function.timeout_s)
        try:
            result = self.function.load()(event, context) or {}
        except Exception:  # as in Lambda: the whole batch comes back, the traceback goes to the log
            self.crashes.append(traceback.format_exc())
            result = {"batchItemFailures": [{"itemIdentifier": m["MessageId"]} for m in messages]}
        failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
        self.failures += sorted(failed)
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done[start:][:10])],
            )
        return failed

    def hurry(self, messages: Iterable[dict[str, Any]]) -> None:
        """Let the backoff of these handed-back messages pass now: visible again at once."""
        for message in messages:
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )

    def run(self, rounds: int = 8) -> None:
        """Drain the queue, retrying handed-back messages at once, until it is empty."""
        for _ in range(rounds):
            messages = self.receive()
            if not messages:
                return
            failed = self.invoke(messages)
            self.hurry(m for m in messages if m["MessageId"] in failed)
        raise AssertionError(f"the queue did not drain in {rounds} rounds: {self.failures}")

    def settle(self) -> None:
        """Let the echoes of earlier tests (outbound messages, change events) arrive and be synced."""
        self.system.salesforce.pusher.wait_idle()
        time.sleep(0.2)  # change events go out on their own threads
        self.run()

    def warm(self) -> None:
        """One sync that reaches every service, so the worker holds its sessions and tokens."""
        grace = next(c for c in _outlook_contacts(self.system, "grace@navy.example"))
        email = f"warm.{secrets.token_hex(4)}@concord.example"
        contact = self.system.salesforce.insert("Contact", LastName="Warm", Email=email)
        self.queue.send([self.notice("graph", grace["id"]), self.notice("salesforce", contact)])
        self.run()

    def take_dead_letters(self) -> list[dict[str, Any]]:
        """Every message in the DLQ, removed from it."""
        letters: list[dict[str, Any]] = []
        while got := self.sqs.receive_message(
            QueueUrl=self.dlq_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
            VisibilityTimeout=60,
        ).get("Messages", []):
            letters += got
            self.sqs.delete_message_batch(
                QueueUrl=self.dlq_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)],
            )
        return letters


@pytest.fixture
def faulty(system: LocalSystem) -> Iterator[Faulty]:
    worker = Faulty(system)
    worker.settle()
    worker.take_dead_letters()
    yield worker
    for sandbox in (system.salesforce, system.graph, system.google):
        sandbox.faults.clear()


@dataclass
class Call:
    path: str
    started: float
    ended: float
    retry_after: str | None


def _watch(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> list[Call]:
    """Every API request the sandbox answers from now on, with when it came and whether it said Retry-After.
    (An observer: the sandbox's own dispatch answers every request.)"""
    calls: list[Call] = []
    dispatch = sandbox.dispatch

    def watched(request: Request) -> Response:
        started = time.monotonic()
        response = dispatch(request)
        if not request.path.startswith("/_sandbox/"):
            calls.append(Call(request.path, started, time.monotonic(), response.headers.get("Retry-After")))
        return response

    monkeypatch.setattr(sandbox, "dispatch", watched)
    return calls


def _assert_no_call_before_retry_after(calls: list[Call]) -> None:
    throttled = [i for i, call in enumerate(calls) if call.retry_after is not None]
    assert throttled, "the throttle never fired"
    for i in throttled:
        if i + 1 < len(calls):
            waited = calls[i + 1].started - calls[i].ended
            wanted = float(calls[i].retry_after or 0)
            assert waited >= wanted - 0.01, f"{calls[i + 1].path} came {waited:.2f}s after a Retry-After: {wanted}"


def _reasons(letters: list[dict[str, Any]]) -> list[str]:
    return [m.get("MessageAttributes", {}).get("reason", {}).get("StringValue", m["Body"]) for m in letters]


def _mine(messages: list[dict[str, Any]], *record_ids: str) -> list[dict[str, Any]]:
    return [m for m in messages if any(record_id in m["Body"] for record_id in record_ids)]


def _put_outlook_contact(system: LocalSystem, first: str, last: str, email: str) -> dict[str, Any]:
    mailbox = system.graph.mailbox(seed.M365_USER)
    folder = next(f.id for f in mailbox.folders.values() if f.display_name == SYNC_FOLDER)
    fields = {"givenName": first, "surname": last, "emailAddresses": [{"address": email}]}
    return system.graph.put_contact(seed.M365_USER, fields, folder_id=folder)


def _salesforce_contacts(system: LocalSystem, email: str) -> list[dict[str, Any]]:
    return [r for r in system.salesforce.live_records("Contact") if str(r.get("Email", "")).lower() == email]


def _outlook_contacts(system: LocalSystem, email: str) -> list[dict[str, Any]]:
    mailbox = system.graph.mailbox(seed.M365_USER)
    return [
        contact
        for folder in [mailbox.contacts, *mailbox.folders.values()]
        for contact in folder.items.values()
        if any(str(a.get("address", "")).lower() == email for a in contact.get("emailAddresses") or [])
    ]


def _google_contacts(system: LocalSystem, email: str) -> list[str]:
    people = system.google._mailbox(seed.GOOGLE_USER).people
    return [
        name
        for name, person in people.items()
        if not person.deleted
        and any(str(e.get("value", "")).lower() == email for e in person.body.get("emailAddresses") or [])
    ]


# ------------------------------------------------------------------------------------------ 429 storms

RETRY_AFTER_S = 2


def _wait_for(faulty: Faulty, handed_back_ids: set[str], handed_back: float) -> list[dict[str, Any]]:
    """The handed-back messages: invisible until ``Retry-After`` has passed, then back at once. (Other
    messages, such as the ingress's own notices of a Salesforce change, may come and go meanwhile.)"""

    def back(messages: list[dict[str, Any]]) -> set[str]:
        return {m["MessageId"] for m in messages} & handed_back_ids

    assert handed_back_ids
    assert back(faulty.receive(visibility=0)) == set(), "retried before Retry-After"
    time.sleep(max(0.0, handed_back + RETRY_AFTER_S - 0.4 - time.monotonic()))
    assert back(faulty.receive(visibility=0)) == set(), "retried before Retry-After"
    time.sleep(max(0.0, handed_back + RETRY_AFTER_S + 0.1 - time.monotonic()))
    received: list[dict[str, Any]] = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        received += faulty.receive()
        if back(received) == handed_back_ids:
            return received
        time.sleep(0.2)
    raise AssertionError(f"not redelivered soon after Retry-After: {handed_back_ids - back(received)}")


@pytest.mark.parametrize("session", ["held", "renewed"])
def test_a_salesforce_throttle_storm_hands_the_batch_back_until_retry_after_then_syncs_each_contact_once(
    system: LocalSystem, faulty: Faulty, monkeypatch: pytest.MonkeyPatch, session: str
) -> None:
    """``renewed``: the session has expired, so the storm meets the token request first: a throttled
    login is as transient as a throttled query."""
    faulty.warm()
    made = [
        _put_outlook_contact(system, "Storm", f"Trooper{i}", f"storm{i}.{session}@throttle.example") for i in range(3)
    ]
    emails = [f"storm{i}.{session}@throttle.example" for i in range(3)]
    ids = tuple(m["id"] for m in made)
    faulty.queue.send([faulty.notice("graph", record_id) for record_id in ids])
    calls = _watch(system.salesforce, monkeypatch)
    if session == "renewed":
        system.salesforce.tokens.expire_all()
    system.salesforce.faults.throttle(1000, retry_after=RETRY_AFTER_S)

    batch = faulty.receive()
    failed = faulty.invoke(batch)
    handed_back = time.monotonic()
    system.salesforce.faults.throttle(0)  # the storm is over; the worker may only find out after Retry-After

    assert _reasons(faulty.take_dead_letters()) == [], "a throttled call is transient, never a dead letter"
    mine = {m["MessageId"] for m in _mine(batch, *ids)}
    assert mine <= failed
    assert all(_salesforce_contacts(system, email) == [] for email in emails)
    back = _wait_for(faulty, mine, handed_back)
    assert faulty.invoke(back) == set()

    _assert_no_call_before_retry_after(calls)
    for email, made_contact in zip(emails, made, strict=True):
        [contact] = _salesforce_contacts(system, email)
        link = faulty.link(M365_CONNECTION, "contact", "mailbox", made_contact["id"])
        assert link is not None and link.link.salesforce_id == contact["Id"]
    assert _reasons(faulty.take_dead_letters()) == []


@pytest.mark.parametrize("session", ["held", "renewed"])
def test_a_graph_throttle_storm_hands_the_record_back_until_retry_after_and_google_is_not_written_twice(
    system: LocalSystem, faulty: Faulty, monkeypatch: pytest.MonkeyPatch, session: str
) -> None:
    faulty.warm()
    email = f"gale.{session}@throttle.example"
    contact = system.salesforce.insert("Contact", FirstName="Gale", LastName="Force", Email=email)
    faulty.queue.send([faulty.notice("salesforce", contact)])
    calls = _watch(system.graph, monkeypatch)
    if session == "renewed":
        system.graph.tokens.expire_all()
    system.graph.faults.throttle(1000, retry_after=RETRY_AFTER_S)

    batch = faulty.receive()
    failed = faulty.invoke(batch)
    handed_back = time.monotonic()
    system.graph.faults.throttle(0)

    mine = {m["MessageId"] for m in _mine(batch, contact)} & failed
    assert mine
    assert _outlook_contacts(system, email) == []
    assert len(_google_contacts(system, email)) == 1  # the batch-mate on the other connection was synced
    back = _wait_for(faulty, mine, handed_back)
    assert faulty.invoke(back) == set()

    _assert_no_call_before_retry_after(calls)
    [outlook] = _outlook_contacts(system, email)
    assert faulty.link(M365_CONNECTION, "contact", "salesforce", contact).link.mailbox_id == outlook["id"]
    [google] = _google_contacts(system, email)
    assert faulty.link(GOOGLE_CONNECTION, "contact", "salesforce", contact).link.mailbox_id == google


# --------------------------------------------------------------------------- 5xx after a committed create


@pytest.mark.parametrize("status", [500, None], ids=["500", "dropped"])
def test_a_salesforce_create_answered_by_a_5xx_after_commit_is_matched_on_retry_not_made_twice(
    system: LocalSystem, faulty: Faulty, status: int | None
) -> None:
    email = f"ada.{status}@after-commit.example".lower()
    made = _put_outlook_contact(system, "Ada", f"Committed{status}", email)
    system.salesforce.fail_after_commit(1, status=status)

    faulty.queue.send([faulty.notice("graph", made["id"])])
    faulty.run()

    assert system.salesforce._after_commit == [], "the fault never fired"
    assert faulty.failures, "an answer that leaves the create unknown is retried, not taken as success"
    [contact] = _salesforce_contacts(system, email)
    assert faulty.link(M365_CONNECTION, "contact", "mailbox", made["id"]).link.salesforce_id == contact["Id"]
    assert _reasons(faulty.take_dead_letters()) == []


@pytest.mark.parametrize("status", [503, None], ids=["503", "dropped"])
def test_mailbox_creates_answered_by_a_5xx_after_commit_are_found_not_made_twice(
    system: LocalSystem, faulty: Faulty, status: int | None
) -> None:
    email = f"bo.{status}@after-commit.example".lower()
    contact = system.salesforce.insert("Contact", FirstName="Bo", LastName=f"Committed{status}", Email=email)
    system.graph.fail_after_commit(1, status=status)
    system.google.fail_after_commit(1, status=status)

    faulty.queue.send([faulty.notice("salesforce", contact)])
    faulty.run()

    assert system.graph._after_commit == [] and system.google._after_commit == [], "a fault never fired"
    [outlook] = _outlook_contacts(system, email)
    assert faulty.link(M365_CONNECTION, "contact", "salesforce", contact).link.mailbox_id == outlook["id"]
    [google] = _google_contacts(system, email)
    assert faulty.link(GOOGLE_CONNECTION, "contact", "salesforce", contact).link.mailbox_id == google
    assert _reasons(faulty.take_dead_letters()) == []


# ------------------------------------------------------------------------------------ permanent errors


def _refuse_contact_writes(graph: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Graph refuses every contact write in a ``$batch`` as it refuses a body naming a property a contact
    lacks (400 ``RequestBodyRead``): a mapping that cannot apply. Reads are answered as ever."""
    answer_one = graph._batch_one

    def refusing(item: dict[str, Any], outer: Request) -> Response:
        if str(item.get("method")).upper() in ("POST", "PATCH") and "/contacts" in str(item.get("url")):
            message = "The property 'x' does not exist on type 'microsoft.graph.contact'."
            return graph.error(400, "RequestBodyRead", message)
        return answer_one(item, outer)

    monkeypatch.setattr(graph, "_batch_one", refusing)


def test_a_write_graph_refuses_goes_to_the_dlq_at_once_with_its_reason_and_its_batch_mate_syncs(
    system: LocalSystem, faulty: Faulty, monkeypatch: pytest.MonkeyPatch
) -> None:
    email = "rita@refused.example"
    contact = system.salesforce.insert("Contact", FirstName="Rita", LastName="Refused", Email=email)
    _refuse_contact_writes(system.graph, monkeypatch)

    faulty.queue.send([faulty.notice("salesforce", contact)])
    faulty.run()

    assert faulty.failures == [], "a permanent error does not burn receives"
    letters = _mine(faulty.take_dead_letters(), contact)
    assert letters
    assert all("RequestBodyRead" in reason and "HTTP 400" in reason for reason in _reasons(letters))
    assert _outlook_contacts(system, email) == []
    assert faulty.link(M365_CONNECTION, "contact", "salesforce", contact) is None
    assert len(_google_contacts(system, email)) == 1  # the other connection's record synced all the same
    failed = [e for e in faulty.log.by_record(f"salesforce#contact#{contact}") if e.status == "failed"]
    assert failed and {e.connection_id for e in failed} == {M365_CONNECTION}


def test_a_refused_salesforce_login_while_reading_salesforce_notices_dead_letters_them_without_crashing(
    system: LocalSystem, faulty: Faulty
) -> None:
    """The integration user's login is refused (the connected app was changed): permanent, as it is for a
    mailbox notice's Salesforce read, so the notice goes to the DLQ with the reason and is logged."""
    contact = system.salesforce.insert("Contact", FirstName="Lou", LastName="Gin", Email="lou@refused.example")
    consumer_key = system.salesforce.consumer_key
    system.salesforce.tokens.expire_all()
    system.salesforce.consumer_key = "not-the-connected-app"
    try:
        faulty.queue.send([faulty.notice("salesforce", contact)])
        batch = faulty.receive()
        failed = faulty.invoke(batch)
    finally:
        system.salesforce.consumer_key = consumer_key

    assert faulty.crashes == [], "the handler raised: Lambda retries the whole batch and nothing is logged"
    mine = {m["MessageId"] for m in _mine(batch, contact)}
    assert mine and not mine & failed
    letters = _mine(faulty.take_dead_letters(), contact)
    assert letters and all("token request refused" in reason for reason in _reasons(letters))
    entries = faulty.log.by_record(f"salesforce#contact#{contact}")
    assert entries and all(e.status == "failed" for e in entries)


# ----------------------------------------------------------------------- transient past maxReceiveCount


def test_a_transient_error_that_never_ends_reaches_the_dlq_through_the_queues_redrive_after_five_receives(
    system: LocalSystem, faulty: Faulty
) -> None:
    made = _put_outlook_contact(system, "Per", "Sistent", "per@persistent.example")
    faulty.queue.send([faulty.notice("graph", made["id"])])
    system.salesforce.faults.fail(1_000_000, status=503)

    counts = []
    for _ in range(5):
        batch = faulty.receive()
        [mine] = _mine(batch, made["id"])
        counts.append(int(mine["Attributes"]["ApproximateReceiveCount"]))
        failed = faulty.invoke(batch)
        assert mine["MessageId"] in failed
        assert _reasons(faulty.take_dead_letters()) == [], "a transient error is retried, not dead-lettered"
        faulty.hurry(m for m in batch if m["MessageId"] in failed)  # the backoff passes
    assert counts == [1, 2, 3, 4, 5]

    assert _mine(faulty.receive(), made["id"]) == []  # the sixth receive finds it past maxReceiveCount
    [letter] = _mine(faulty.take_dead_letters(), made["id"])
    assert "reason" not in letter.get("MessageAttributes", {})  # moved there by SQS, not sent by the worker
    assert _salesforce_contacts(system, "per@persistent.example") == []
    entries = faulty.log.by_record(f"graph#contact#{made['id']}")
    assert len(entries) == 5 and all(e.status == "failed" and e.reason.startswith("will retry") for e in entries)


# --------------------------------------------------------------------------------- out of time


def test_a_batch_the_lambda_deadline_cuts_short_is_handed_back_whole_and_syncs_on_retry(
    system: LocalSystem, faulty: Faulty
) -> None:
    made = [_put_outlook_contact(system, "Late", f"Comer{i}", f"late{i}@deadline.example") for i in range(3)]
    ids = tuple(m["id"] for m in made)
    for record_id in ids:  # one message each
        faulty.queue.send([faulty.notice("graph", record_id)])
    batch = faulty.receive()
    mine = {m["MessageId"] for m in _mine(batch, *ids)}
    assert len(mine) == 3

    # 17 s of Lambda time leave 12 after the deadline's margin: enough to start (10 are needed), and a
    # slow first read then leaves too little to start writing.
    system.graph.faults.latency(3.0)
    failed = faulty.invoke(batch, timeout_s=17)
    system.graph.faults.latency(0.0)

    assert mine <= failed
    assert all(_salesforce_contacts(system, f"late{i}@deadline.example") == [] for i in range(3))
    assert all(faulty.link(M365_CONNECTION, "contact", "mailbox", record_id) is None for record_id in ids)
    for record_id in ids:
        [entry] = faulty.log.by_record(f"graph#contact#{record_id}")
        assert entry.status == "failed" and "ran out of time" in entry.reason

    faulty.hurry(m for m in batch if m["MessageId"] in failed)
    faulty.run()

    for i, record_id in enumerate(ids):
        [contact] = _salesforce_contacts(system, f"late{i}@deadline.example")
        assert faulty.link(M365_CONNECTION, "contact", "mailbox", record_id).link.salesforce_id == contact["Id"]
    assert _reasons(faulty.take_dead_letters()) == []


# ---------------------------------------------------------------------------------------- canaries


def _key_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private.decode(), public.decode()


def _plant_canaries(system: LocalSystem, faulty: Faulty) -> list[str]:
    """New credentials with recognisable values, in the sandboxes and in Secrets Manager, and a cold start
    of the worker so that it reads them. Returns what must never be seen: the canaries and every line of
    both private keys."""
    tag = secrets.token_hex(6)
    sf_private, sf_public = _key_pair()
    google_private, google_public = _key_pair()
    sf_consumer, graph_secret = f"CANARY-sf-consumer-{tag}", f"CANARY-graph-secret-{tag}"
    system.salesforce.consumer_key, system.salesforce.public_key_pem = sf_consumer, sf_public
    system.graph.add_app(SEED_TENANT, SEED_CLIENT_ID, graph_secret)
    system.google.service_account_private_key = google_private
    system.google.service_account_public_key = google_public
    values = {
        "SalesforceJwtSecretArn": {
            "consumer_key": sf_consumer,
            "username": SALESFORCE_USERNAME,
            "private_key": sf_private,
            "login_url": system.salesforce.url,
            "audience": system.salesforce.audience,
        },
        "GraphAppSecretArn": {"tenant_id": SEED_TENANT, "client_id": SEED_CLIENT_ID, "client_secret": graph_secret},
        "GoogleServiceAccountSecretArn": system.google.service_account_info(),
    }
    client = system.stack.client("secretsmanager")
    for parameter, value in values.items():
        name = LOCAL_PARAMETERS[parameter].rsplit(":secret:", 1)[1]
        client.put_secret_value(SecretId=name, SecretString=json.dumps(value))
    faulty.function.module = None  # the next invocation is a cold start
    key_lines = [line for pem in (sf_private, google_private) for line in pem.splitlines() if "-----" not in line]
    return [sf_consumer, graph_secret, *key_lines]


def _issued_tokens(system: LocalSystem) -> list[str]:
    return [token for sandbox in (system.salesforce, system.graph, system.google) for token in sandbox.tokens._tokens]


def _sync_log_text(system: LocalSystem) -> str:
    pages = system.stack.client("dynamodb").get_paginator("scan")
    items = [item for page in pages.paginate(TableName=system.stack.env["SYNC_LOG_TABLE"]) for item in page["Items"]]
    assert items
    return json.dumps(items)


def test_no_secret_or_token_reaches_the_logs_the_sync_log_or_the_dlq(
    system: LocalSystem, faulty: Faulty, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from concord.observability import logger as powertools_logger

    caplog.set_level(logging.INFO)  # the level the template sets
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)  # the worker's JSON lines, as CloudWatch would hold them
    handler.setFormatter(powertools_logger.registered_formatter)
    powertools_logger.addHandler(handler)
    try:
        canaries = _plant_canaries(system, faulty)
        # Tokens are issued, then every one expires: each client meets a 401 and logs in again.
        made = _put_outlook_contact(system, "Cana", "Ry", "cana@canary.example")
        contact = system.salesforce.insert(
            "Contact", FirstName="Tweety", LastName="Bird", Email="tweety@canary.example"
        )
        faulty.queue.send([faulty.notice("graph", made["id"]), faulty.notice("salesforce", contact)])
        faulty.run()
        for sandbox in (system.salesforce, system.graph, system.google):
            sandbox.tokens.expire_all()
        # A validation rule refuses a write (its message goes to the DLQ), Google fails transiently.
        system.salesforce.add_validation_rule(ValidationRule("Contact", "Title", ("Canary",), "Titles are vetted."))
        vetted = _put_outlook_contact(system, "Vet", "Ted", "vetted@canary.example")
        system.graph.edit(seed.M365_USER, vetted["id"], {"jobTitle": "Canary"})
        system.salesforce.change(contact, Title="Songbird")
        system.google.faults.fail(1, status=503)
        faulty.queue.send([faulty.notice("graph", vetted["id"]), faulty.notice("salesforce", contact)])
        faulty.run()
        # Graph refuses the token and its renewal (401 twice); Salesforce refuses the login outright.
        system.graph.faults.fail(2, status=401)
        system.salesforce.tokens.expire_all()
        system.salesforce.consumer_key = "someone-else"
        system.graph.edit(seed.M365_USER, made["id"], {"jobTitle": "Lookout"})
        faulty.queue.send([faulty.notice("graph", made["id"]), faulty.notice("salesforce", contact)])
        batch = faulty.receive()
        failed = faulty.invoke(batch)
        system.salesforce.consumer_key = canaries[0]
        faulty.hurry(m for m in batch if m["MessageId"] in failed)
        faulty.run()
    finally:
        powertools_logger.removeHandler(handler)

    letters = faulty.take_dead_letters()
    reasons = " ".join(_reasons(letters))
    # The failures happened: a validation refusal, a refused login, and Graph 401s.
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION" in reasons and "token request refused" in reasons, reasons
    assert system.graph.faults.error_calls < 2  # at least one Graph 401 was answered
    captured = capfd.readouterr()
    seen = {
        "logs": "\n".join([lines.getvalue(), caplog.text, captured.out, captured.err, *faulty.crashes]),
        "sync log": _sync_log_text(system),
        "dead letters": json.dumps(letters),
    }
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION" in seen["logs"] and "token request refused" in seen["logs"]
    secrets_known = canaries + _issued_tokens(system)
    assert '"level":"INFO"' in seen["logs"] and len(secrets_known) > len(canaries)  # the haystack and needles
    for where, text in seen.items():
        leaked = [secret[:12] + "…" for secret in secrets_known if secret in text]
        assert leaked == [], f"secrets in the {where}"
        assert "PRIVATE KEY" not in text and "eyJ" not in text, f"a key or a JWT in the {where}"
