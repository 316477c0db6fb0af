"""The webhook functions end to end: the sandbox sends, the handler enqueues, the test reads the queue.

Every request travels the way it does in production: the Salesforce, Graph and Google sandboxes push
over HTTP to the local runner's API Gateway routes (or, for change events, through the runner's
EventBridge rule), the runner invokes the function from ``functions/<name>/app.py``, the function
checks the Subscriptions table and the idempotency table in DynamoDB Local and sends to moto's SQS.
The runner does not poll the changes queue here, so the notices stay queued for the test to read.
"""

from __future__ import annotations

import hashlib
import io
import logging
import secrets
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from concord.adapters.google import GoogleClient, GoogleEndpoints, ServiceAccount
from concord.adapters.salesforce import SalesforceClient
from concord.adapters.subscriptions import channel_key, gmail_key
from concord.ingress.errors import Rejected
from concord.ingress.google import JwksKeys
from concord.notices import ChangeNotice, decode_message
from concord.observability import logger
from local.runner import LocalRunner
from local.sandboxes import seed
from local.sandboxes.google import DEFAULT_PUSH_ACCOUNT, GoogleSandbox
from local.sandboxes.graph import GraphSandbox
from local.sandboxes.salesforce import OutboundMessage, SalesforceSandbox
from local.sandboxes.server import ca_bundle_path
from tests.integration.connectors.graph.conftest import SleepRecorder
from tests.integration.connectors.graph.conftest import make_client as make_graph_client
from tests.integration.connectors.salesforce.conftest import (
    AUDIENCE as SALESFORCE_AUDIENCE,
)
from tests.integration.connectors.salesforce.conftest import (
    CONSUMER_KEY,
    USERNAME,
    KeyPair,
    credentials_for,
    new_key_pair,
)
from tests.unit.ingress.helpers import channel_item

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from concord.adapters.graph import GraphClient
    from local.aws.stack import LocalStack

pytestmark = pytest.mark.integration

GMAIL_TOPIC = "projects/concord-tests/topics/gmail"
GMAIL_AUDIENCE = "concord-gmail-push"
M365_USER = seed.M365_USER
GOOGLE_USER = seed.GOOGLE_USER


# ----------------------------------------------------------------------------------------- sandboxes


@pytest.fixture(scope="module")
def salesforce_key() -> KeyPair:
    return new_key_pair()


@pytest.fixture(scope="module")
def _salesforce_server(salesforce_key: KeyPair) -> Iterator[SalesforceSandbox]:
    sandbox = SalesforceSandbox(
        consumer_key=CONSUMER_KEY,
        username=USERNAME,
        public_key_pem=salesforce_key.public_pem,
        audience=SALESFORCE_AUDIENCE,
    )
    sandbox.start()
    yield sandbox
    sandbox.stop()


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
def salesforce(_salesforce_server: SalesforceSandbox) -> Iterator[SalesforceSandbox]:
    """The org, reset and seeded, with no Outbound Message action and no change event sink yet."""
    sandbox = _salesforce_server
    sandbox.reset()
    sandbox.outbound.clear()
    sandbox.cdc_sink = None
    sandbox.seed()
    yield sandbox
    sandbox.outbound.clear()
    sandbox.cdc_sink = None
    sandbox.reset()  # stops retrying anything still pending towards this test's runner


@pytest.fixture
def graph_sandbox(_graph_server: GraphSandbox) -> Iterator[GraphSandbox]:
    _graph_server.reset()
    _graph_server.seed()
    yield _graph_server
    _graph_server.reset()


@pytest.fixture
def google_sandbox(_google_server: GoogleSandbox) -> Iterator[GoogleSandbox]:
    _google_server.reset()
    yield _google_server
    _google_server.reset()


# ------------------------------------------------------------------------------------------ the runner


@pytest.fixture
def runner(
    aws: LocalStack, _salesforce_server: SalesforceSandbox, _google_server: GoogleSandbox
) -> Iterator[LocalRunner]:
    """The functions behind the local API Gateway, their settings pointed at the sandboxes."""
    overrides = {
        "SALESFORCE_ORG_ID": _salesforce_server.org_id,
        "GOOGLE_JWKS_URL": f"{_google_server.url}/oauth2/v3/certs",
        "GOOGLE_PUSH_AUDIENCE": GMAIL_AUDIENCE,
        "GOOGLE_PUSH_SERVICE_ACCOUNT": DEFAULT_PUSH_ACCOUNT,
        "CA_BUNDLE": ca_bundle_path(),
        "POWERTOOLS_LOG_LEVEL": "INFO",
        # Asks Powertools to log every event: the functions must refuse (the events hold secrets).
        "POWERTOOLS_LOGGER_LOG_EVENT": "true",
    }
    parameters = {"SalesforceOutboundTokenSha256": OUTBOUND_TOKEN_SHA256}
    with LocalRunner(
        aws, overrides=overrides, parameters=parameters, poll_queues=False, schedule_interval_s=3600
    ) as local:
        yield local
    assert local.errors == []


@pytest.fixture
def record_answers(runner: LocalRunner, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], list[dict[str, Any]]]:
    """``record_answers(logical_id)`` records every answer that function gives (what the sandbox gets back)."""

    def record(logical_id: str) -> list[dict[str, Any]]:
        function = runner.functions[logical_id]
        recorded: list[dict[str, Any]] = []
        invoke = function.invoke

        def recording(event: dict[str, Any]) -> Any:
            answer = invoke(event)
            recorded.append(answer)
            return answer

        monkeypatch.setattr(function, "invoke", recording)
        return recorded

    return record


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def drain(aws: LocalStack) -> list[ChangeNotice]:
    """Every notice on the changes queue (received and deleted)."""
    sqs = aws.client("sqs")
    queue_url = aws.env["CHANGES_QUEUE_URL"]
    notices: list[ChangeNotice] = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
            "Messages", []
        )
        if not messages:
            return notices
        notices += [notice for m in messages for notice in decode_message(m["Body"])]
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )


def store_channel(
    aws: LocalStack,
    pk: str,
    *,
    connection_id: str,
    provider: str,
    object_type: str,
    secret: str | None,
    resource_id: str | None = None,
) -> None:
    """Store a channel in the Subscriptions table, as the subscriptions function does."""
    item = channel_item(pk, connection_id, provider, object_type, secret, resource_id=resource_id)
    aws.client("dynamodb").put_item(TableName=aws.env["SUBSCRIPTIONS_TABLE"], Item=item)


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """What the functions log (they run in this process and share Concord's logger)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    logger.addHandler(handler)
    yield stream
    logger.removeHandler(handler)


# ---------------------------------------------------------------------------------------- Salesforce

# The secret in the endpoint URL configured on the outbound messages; the functions hold its digest.
OUTBOUND_TOKEN = secrets.token_urlsafe(32)
OUTBOUND_TOKEN_SHA256 = hashlib.sha256(OUTBOUND_TOKEN.encode()).hexdigest()


def outbound_url(runner: LocalRunner, token: str = OUTBOUND_TOKEN) -> str:
    return f"{runner.url}/salesforce/outbound?token={token}"


@pytest.fixture
def salesforce_client(salesforce: SalesforceSandbox, salesforce_key: KeyPair) -> Iterator[SalesforceClient]:
    client = SalesforceClient(credentials_for(salesforce, salesforce_key), verify=ca_bundle_path())
    yield client
    client.close()


def test_outbound_message_from_the_sandbox_is_acknowledged_and_enqueued(
    aws: LocalStack,
    runner: LocalRunner,
    record_answers: Callable[[str], list[dict[str, Any]]],
    salesforce: SalesforceSandbox,
    salesforce_client: SalesforceClient,
) -> None:
    answers = record_answers("SalesforceWebhookFunction")
    salesforce.add_outbound_message(OutboundMessage("Contact", outbound_url(runner), ("Id", "LastModifiedDate")))
    created = salesforce_client.create("Contact", [{"LastName": f"Outbound{i}"} for i in range(3)])
    assert salesforce.pusher.wait_idle()

    [delivered] = salesforce.pusher.delivered
    assert delivered.attempts == 1 and salesforce.pusher.abandoned == []
    [answer] = answers
    assert answer["statusCode"] == 200 and "<Ack>true</Ack>" in answer["body"]
    notices = drain(aws)
    assert sorted(n.record_id or "" for n in notices) == sorted(r.id or "" for r in created)
    assert {(n.source, n.object_type, n.kind) for n in notices} == {("salesforce", "contact", "change")}
    assert len({n.provider_event_id for n in notices}) == 3
    assert all(n.provider_event_id.startswith("04l") for n in notices)


def test_outbound_message_delivered_twice_is_enqueued_once(
    aws: LocalStack,
    runner: LocalRunner,
    record_answers: Callable[[str], list[dict[str, Any]]],
    salesforce: SalesforceSandbox,
) -> None:
    answers = record_answers("SalesforceWebhookFunction")
    salesforce.add_outbound_message(OutboundMessage("Contact", outbound_url(runner)))
    salesforce.faults.notifications(duplicate=1)
    contact_id = salesforce.live_records("Contact")[0]["Id"]
    salesforce.change(contact_id, Phone="+1 555 0101")
    assert salesforce.pusher.wait_idle()

    assert len(salesforce.pusher.delivered) == 2 and {p.body for p in salesforce.pusher.delivered} != set()
    assert [a["statusCode"] for a in answers] == [200, 200]  # both acknowledged: the replay too
    [notice] = drain(aws)
    assert notice.record_id == contact_id


@pytest.mark.parametrize(("token", "status"), [(None, 401), ("not-the-token", 403)])
def test_outbound_message_without_the_token_is_refused_and_the_token_never_logged(
    aws: LocalStack,
    runner: LocalRunner,
    record_answers: Callable[[str], list[dict[str, Any]]],
    salesforce: SalesforceSandbox,
    logs: io.StringIO,
    token: str | None,
    status: int,
) -> None:
    answers = record_answers("SalesforceWebhookFunction")
    # The right org (not a secret) but the wrong URL, alongside a message with the right one.
    wrong = f"{runner.url}/salesforce/outbound" + (f"?token={token}" if token else "")
    salesforce.add_outbound_message(OutboundMessage("Contact", wrong))
    salesforce.add_outbound_message(OutboundMessage("Contact", outbound_url(runner)))
    contact_id = salesforce.live_records("Contact")[0]["Id"]
    salesforce.change(contact_id, Phone="+1 555 0199")
    wait_for(lambda: len(answers) >= 2)

    assert sorted(a["statusCode"] for a in answers[:2]) == sorted([200, status])
    [refused] = [a for a in answers if a["statusCode"] == status]
    assert "<faultcode>soapenv:Client</faultcode>" in refused["body"]
    [notice] = drain(aws)  # from the message with the token only
    assert notice.record_id == contact_id
    assert "outbound message accepted" in logs.getvalue()
    assert OUTBOUND_TOKEN not in logs.getvalue() and OUTBOUND_TOKEN not in refused["body"]


def test_change_events_through_eventbridge(
    aws: LocalStack, runner: LocalRunner, salesforce: SalesforceSandbox, salesforce_client: SalesforceClient
) -> None:
    results: list[Any] = []
    salesforce.cdc_sink = lambda event: results.extend(runner.put_event(event))

    contact_id = salesforce.live_records("Contact")[0]["Id"]
    salesforce.change(contact_id, Title="VP Sales")  # a user's change in the UI
    [user_change] = drain(aws)
    assert (user_change.record_id, user_change.kind, user_change.object_type) == (contact_id, "change", "contact")

    salesforce_client.update("Contact", [{"Id": contact_id, "Title": "CFO"}])  # Concord's own write
    assert results[-1]["status"] == "echo"
    assert drain(aws) == []

    salesforce.emit_gap("Contact", "GAP_OVERFLOW")
    [gap] = drain(aws)
    assert (gap.kind, gap.object_type, gap.record_id) == ("catch_up", "contact", None)
    assert [r["status"] for r in results] == ["enqueued", "echo", "enqueued"]


def test_gap_events_through_eventbridge_name_their_records(
    aws: LocalStack, runner: LocalRunner, salesforce: SalesforceSandbox
) -> None:
    salesforce.cdc_sink = lambda event: runner.put_event(event)
    first, second = (r["Id"] for r in salesforce.live_records("Contact")[:2])

    salesforce.emit_gap("Contact", "GAP_UPDATE", [first, second])
    assert sorted((n.kind, n.record_id, n.deleted) for n in drain(aws)) == sorted(
        [("change", first, None), ("change", second, None)]
    )
    salesforce.emit_gap("Contact", "GAP_DELETE", [first])
    [gone] = drain(aws)
    assert (gone.kind, gone.record_id, gone.deleted) == ("change", first, True)


def test_change_event_delivered_twice_is_enqueued_once(
    aws: LocalStack, runner: LocalRunner, salesforce: SalesforceSandbox
) -> None:
    events: list[dict[str, Any]] = []
    salesforce.cdc_sink = events.append
    salesforce.change(salesforce.live_records("Contact")[0]["Id"], Department="Finance")
    [event] = events
    assert [r["status"] for r in runner.put_event(event) + runner.put_event(event)] == ["enqueued", "replayed"]
    assert len(drain(aws)) == 1


# --------------------------------------------------------------------------------------------- Graph


@pytest.fixture
def graph(graph_sandbox: GraphSandbox) -> Iterator[GraphClient]:
    client = make_graph_client(graph_sandbox, SleepRecorder())
    yield client
    client.close()


def _subscribe(aws: LocalStack, runner: LocalRunner, graph: GraphClient, *, stored_secret: str) -> tuple[str, str]:
    """(subscription id, folder id): a contacts subscription made through the runner's handshake, stored
    in the Subscriptions table with ``stored_secret``'s digest."""
    folder = graph.ensure_contact_folder(M365_USER)
    client_state = f"state-{uuid.uuid4()}"
    sub = graph.create_subscription(
        f"users/{M365_USER}/contactFolders/{folder}/contacts",
        f"{runner.url}/graph/notifications",
        client_state,
        lifecycle_url=f"{runner.url}/graph/lifecycle",
    )
    secret = client_state if stored_secret == "the real one" else stored_secret
    store_channel(
        aws,
        channel_key(str(sub["id"])),
        connection_id="conn_alex",
        provider="graph",
        object_type="contact",
        secret=secret,
    )
    return str(sub["id"]), folder


def test_graph_subscription_handshake_then_notification(
    aws: LocalStack,
    runner: LocalRunner,
    record_answers: Callable[[str], list[dict[str, Any]]],
    graph_sandbox: GraphSandbox,
    graph: GraphClient,
) -> None:
    answers = record_answers("GraphWebhookFunction")
    sub_id, folder = _subscribe(aws, runner, graph, stored_secret="the real one")
    # Both URLs were validated through the runner: 200 text/plain echoing the token.
    assert [(a["statusCode"], a["body"].startswith("Validation: ")) for a in answers] == [(200, True), (200, True)]

    contact = graph.list_contacts(M365_USER, folder)[0]
    graph_sandbox.edit(M365_USER, contact["id"], {"jobTitle": "Treasurer"})
    assert graph_sandbox.wait_notifications()

    assert answers[-1]["statusCode"] == 202 and graph_sandbox.pusher.abandoned == []
    [notice] = drain(aws)
    assert (notice.source, notice.connection_id, notice.object_type, notice.record_id) == (
        "graph",
        "conn_alex",
        "contact",
        contact["id"],
    )
    assert notice.subscription_id in (None, sub_id)

    graph_sandbox.lifecycle(sub_id, "missed")
    assert graph_sandbox.wait_notifications()
    [missed] = drain(aws)
    assert (missed.kind, missed.connection_id, missed.object_type) == ("catch_up", "conn_alex", "contact")


def test_graph_notification_with_a_different_stored_secret_is_refused(
    aws: LocalStack,
    runner: LocalRunner,
    record_answers: Callable[[str], list[dict[str, Any]]],
    graph_sandbox: GraphSandbox,
    graph: GraphClient,
) -> None:
    answers = record_answers("GraphWebhookFunction")
    _, folder = _subscribe(aws, runner, graph, stored_secret="not-the-client-state")
    contact = graph.list_contacts(M365_USER, folder)[0]
    graph_sandbox.edit(M365_USER, contact["id"], {"jobTitle": "Forged?"})
    graph_sandbox.flush_notifications()

    wait_for(lambda: len(answers) > 2)  # after the two handshakes, the first delivery attempt
    assert answers[2]["statusCode"] == 403
    assert drain(aws) == []
    assert graph_sandbox.pusher.delivered == []  # Graph keeps retrying what was not acknowledged


# -------------------------------------------------------------------------------------------- Google


@pytest.fixture
def google(google_sandbox: GoogleSandbox) -> Iterator[GoogleClient]:
    client = GoogleClient(
        ServiceAccount.from_info(google_sandbox.service_account_info()),
        endpoints=GoogleEndpoints.for_base(google_sandbox.url),
        verify=ca_bundle_path(),
    )
    yield client
    client.close()


def test_gmail_push_with_its_oidc_token(
    aws: LocalStack,
    runner: LocalRunner,
    record_answers: Callable[[str], list[dict[str, Any]]],
    google_sandbox: GoogleSandbox,
    google: GoogleClient,
) -> None:
    answers = record_answers("GoogleWebhookFunction")
    google_sandbox.add_push_subscription(GMAIL_TOPIC, f"{runner.url}/google/gmail", audience=GMAIL_AUDIENCE)
    google.watch_mailbox(GOOGLE_USER, GMAIL_TOPIC)
    store_channel(
        aws, gmail_key(GOOGLE_USER), connection_id="conn_sam", provider="gmail", object_type="email", secret=None
    )

    delivered = google_sandbox.deliver_email(GOOGLE_USER, sender="ada@example.com", to=[GOOGLE_USER], subject="Hi")
    assert google_sandbox.wait_pushes()

    assert [a["statusCode"] for a in answers] == [200]
    [notice] = drain(aws)
    assert (notice.source, notice.connection_id, notice.kind, notice.object_type) == (
        "google",
        "conn_sam",
        "catch_up",
        "email",
    )
    assert notice.source_version == delivered["historyId"]


def test_calendar_channel_sync_then_change(
    aws: LocalStack,
    runner: LocalRunner,
    record_answers: Callable[[str], list[dict[str, Any]]],
    google_sandbox: GoogleSandbox,
    google: GoogleClient,
) -> None:
    answers = record_answers("GoogleWebhookFunction")
    token = f"token-{uuid.uuid4()}"
    channel = google.watch_events(
        GOOGLE_USER, channel_id=str(uuid.uuid4()), address=f"{runner.url}/google/calendar", token=token
    )
    store_channel(
        aws,
        channel_key(channel.id),
        connection_id="conn_sam",
        provider="google_calendar",
        object_type="event",
        secret=token,
        resource_id=channel.resource_id,
    )
    assert google_sandbox.wait_pushes()
    [sync] = answers  # acknowledged before any lookup: it can arrive before the channel is stored
    assert sync["statusCode"] == 200 and '"enqueued": 0' in sync["body"]
    assert drain(aws) == []

    google.insert_event(
        GOOGLE_USER,
        {
            "summary": "Planning",
            "start": {"dateTime": "2026-12-10T10:00:00Z"},
            "end": {"dateTime": "2026-12-10T11:00:00Z"},
        },
    )
    assert google_sandbox.wait_pushes()
    assert [a["statusCode"] for a in answers] == [200, 200]
    [notice] = drain(aws)
    assert (notice.source, notice.connection_id, notice.kind, notice.object_type) == (
        "google",
        "conn_sam",
        "catch_up",
        "event",
    )


def test_certs_url_problems_are_a_503_naming_the_ca_bundle_or_the_url(
    google_sandbox: GoogleSandbox, logs: io.StringIO
) -> None:
    token = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsifQ.e30.c2ln"  # only its kid is looked at before the keys
    untrusted = JwksKeys(f"{google_sandbox.url}/oauth2/v3/certs")  # the system CAs: not the sandbox's
    with pytest.raises(Rejected) as refused:
        untrusted(token)
    assert (refused.value.status, refused.value.reason) == (
        503,
        "the certs URL's TLS certificate cannot be verified with the configured CA bundle",
    )
    assert "set CA_BUNDLE to the CA that signed the certs URL's certificate" in logs.getvalue()

    with socket.socket() as refuser:
        refuser.bind(("127.0.0.1", 0))
        closed = JwksKeys(f"https://127.0.0.1:{refuser.getsockname()[1]}/oauth2/v3/certs", ca_bundle=ca_bundle_path())
        with pytest.raises(Rejected) as refused:
            closed(token)
    assert refused.value.status == 503 and "GOOGLE_JWKS_URL" in refused.value.reason
    assert "check GOOGLE_JWKS_URL and that the function can reach it" in logs.getvalue()
