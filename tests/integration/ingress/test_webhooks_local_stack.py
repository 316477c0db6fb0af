"""The webhook apps against the local stack: DynamoDB Local (subscriptions, idempotency) and moto's SQS.

Each test sends a request the way the sender would, lets the real app enqueue, and reads the queue.
Google's keys come from a JWKS served over HTTP on loopback, so PyJWKClient really fetches them.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

from concord.ingress.apps.google_webhook import GoogleWebhook
from concord.ingress.apps.graph_webhook import GraphWebhook
from concord.ingress.apps.salesforce_events import EnqueueFailed, SalesforceEvents
from concord.ingress.apps.salesforce_webhook import SalesforceWebhook
from concord.notices import ChangeNotice, decode_message
from concord.settings import WebhookSettings
from tests.support.events import load_event
from tests.unit.ingress.helpers import (
    AUDIENCE,
    CONTEXT,
    ORG_ID,
    OUTBOUND_TOKEN_SHA256,
    PUSH_ACCOUNT,
    SigningKey,
    assert_no_canary,
    channel_items,
    graph_batch,
    outbound_message,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from local.aws.stack import LocalStack

pytestmark = pytest.mark.integration

KEY = SigningKey()


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    body = json.dumps(KEY.jwks()).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # keep test output quiet; requests are asserted on, not logged

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/oauth2/v3/certs"
    server.shutdown()
    server.server_close()


@pytest.fixture
def settings(aws: LocalStack, jwks_url: str, monkeypatch: pytest.MonkeyPatch) -> WebhookSettings:
    for name, value in {
        "POWERTOOLS_SERVICE_NAME": "ingress-integration",
        "POWERTOOLS_METRICS_NAMESPACE": "Concord",
        "SALESFORCE_ORG_ID": ORG_ID,
        "GOOGLE_PUSH_AUDIENCE": AUDIENCE,
        "GOOGLE_PUSH_SERVICE_ACCOUNT": PUSH_ACCOUNT,
        "GOOGLE_JWKS_URL": jwks_url,
        "SALESFORCE_OUTBOUND_TOKEN_SHA256": OUTBOUND_TOKEN_SHA256,
    }.items():
        monkeypatch.setenv(name, value)
    dynamodb = aws.client("dynamodb")
    for item in channel_items():
        dynamodb.put_item(TableName=aws.env["SUBSCRIPTIONS_TABLE"], Item=item)
    return WebhookSettings.from_env()


def _drain(aws: LocalStack) -> list[str]:
    sqs = aws.client("sqs")
    bodies: list[str] = []
    while True:
        answer = sqs.receive_message(QueueUrl=aws.env["CHANGES_QUEUE_URL"], MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = answer.get("Messages", [])
        if not messages:
            return bodies
        bodies.extend(m["Body"] for m in messages)
        sqs.delete_message_batch(
            QueueUrl=aws.env["CHANGES_QUEUE_URL"],
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )


def _notices(bodies: list[str]) -> list[ChangeNotice]:
    return [notice for body in bodies for notice in decode_message(body)]


def test_outbound_message_of_100_is_enqueued_once(
    aws: LocalStack, settings: WebhookSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    webhook = SalesforceWebhook(settings)
    event = load_event("salesforce_webhook/outbound_message")
    event["body"] = outbound_message(100)
    first = webhook.resolve(event, CONTEXT)
    replay = webhook.resolve(event, CONTEXT)
    assert first["statusCode"] == replay["statusCode"] == 200 and "<Ack>true</Ack>" in replay["body"]
    bodies = _drain(aws)
    assert len(bodies) == 10  # ten notices to a message
    notices = _notices(bodies)
    assert len(notices) == 100
    assert {n.provider_event_id for n in notices} == {f"04l5g00000N{n:06d}A" for n in range(1, 101)}
    out = capsys.readouterr()
    assert_no_canary(out.out, out.err, first["body"], *bodies)


def test_outbound_message_from_another_org_enqueues_nothing(aws: LocalStack, settings: WebhookSettings) -> None:
    event = load_event("salesforce_webhook/outbound_message")
    event["body"] = outbound_message(2, org_id="00D000000000001AAA")
    assert SalesforceWebhook(settings).resolve(event, CONTEXT)["statusCode"] == 403
    assert _drain(aws) == []


def test_graph_notifications_are_checked_against_the_subscriptions_table(
    aws: LocalStack, settings: WebhookSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    webhook = GraphWebhook(settings)
    event = load_event("graph_webhook/notifications")
    assert webhook.resolve(event, CONTEXT)["statusCode"] == 202
    assert webhook.resolve(event, CONTEXT)["statusCode"] == 202  # replay
    forged = load_event("graph_webhook/notifications")
    forged["body"] = graph_batch(5, client_state="CANARY-forged")
    assert webhook.resolve(forged, CONTEXT)["statusCode"] == 403
    bodies = _drain(aws)
    assert sorted(n.object_type for n in _notices(bodies)) == ["contact", "event"]
    out = capsys.readouterr()
    assert_no_canary(out.out, out.err, *bodies)


def test_graph_batch_of_100(aws: LocalStack, settings: WebhookSettings) -> None:
    event = load_event("graph_webhook/notifications")
    event["body"] = graph_batch(100)
    assert GraphWebhook(settings).resolve(event, CONTEXT)["statusCode"] == 202
    assert len(_notices(_drain(aws))) == 100


def test_gmail_push_verified_with_fetched_keys(aws: LocalStack, settings: WebhookSettings) -> None:
    webhook = GoogleWebhook(settings)
    event = load_event("google_webhook/gmail_push")
    event["headers"]["Authorization"] = f"Bearer {KEY.token()}"
    assert webhook.resolve(event, CONTEXT)["statusCode"] == 200
    assert webhook.resolve(event, CONTEXT)["statusCode"] == 200  # replay
    forged = load_event("google_webhook/gmail_push")  # the fixture's token: not signed by our keys
    assert webhook.resolve(forged, CONTEXT)["statusCode"] == 401
    [notice] = _notices(_drain(aws))
    assert (notice.connection_id, notice.kind, notice.source_version) == ("conn_ada_google", "catch_up", "9876543210")


def test_calendar_channel_notification(aws: LocalStack, settings: WebhookSettings) -> None:
    webhook = GoogleWebhook(settings)
    event = load_event("google_webhook/calendar_notification")
    assert webhook.resolve(event, CONTEXT)["statusCode"] == 200
    assert webhook.resolve(event, CONTEXT)["statusCode"] == 200  # replay
    other_resource = load_event("google_webhook/calendar_notification")
    other_resource["headers"]["X-Goog-Resource-ID"] = "another-calendars-resource"
    other_resource["headers"]["X-Goog-Message-Number"] = "1094"
    assert webhook.resolve(other_resource, CONTEXT)["statusCode"] == 403
    event["headers"]["X-Goog-Channel-Token"] = "CANARY-wrong"
    assert webhook.resolve(event, CONTEXT)["statusCode"] == 403
    assert len(_notices(_drain(aws))) == 1


def test_change_event_enqueued_once(aws: LocalStack, settings: WebhookSettings) -> None:
    handler = SalesforceEvents(settings)
    event = load_event("salesforce_events/contact_change_event")
    assert handler.handle(event, CONTEXT)["status"] == "enqueued"
    assert handler.handle(event, CONTEXT)["status"] == "replayed"
    [notice] = _notices(_drain(aws))
    assert notice.record_id == "0035g00000ADALVAA1"


# ------------------------------------------------------------------------------------ store outages


@pytest.fixture
def dynamodb_down(aws: LocalStack, settings: WebhookSettings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """DynamoDB's endpoint is a loopback port that refuses connections (bound, never listening)."""
    refuser = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    refuser.bind(("127.0.0.1", 0))
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://127.0.0.1:{refuser.getsockname()[1]}")
    yield
    refuser.close()


def _error(answer: dict[str, Any]) -> str:
    return str(json.loads(answer["body"])["error"])


@pytest.mark.usefixtures("dynamodb_down")
def test_every_route_answers_a_retryable_503_when_dynamodb_cannot_be_reached(
    aws: LocalStack, settings: WebhookSettings
) -> None:
    graph = GraphWebhook(settings).resolve(load_event("graph_webhook/notifications"), CONTEXT)
    assert graph["statusCode"] == 503 and "retry later" in _error(graph)

    google = GoogleWebhook(settings)
    gmail = load_event("google_webhook/gmail_push")
    gmail["headers"]["Authorization"] = f"Bearer {KEY.token()}"
    for event in (gmail, load_event("google_webhook/calendar_notification")):
        answer = google.resolve(event, CONTEXT)
        assert answer["statusCode"] == 503 and "retry later" in _error(answer)

    outbound = load_event("salesforce_webhook/outbound_message")
    salesforce = SalesforceWebhook(settings).resolve(outbound, CONTEXT)
    assert salesforce["statusCode"] == 503 and "soapenv:Server" in salesforce["body"]
    assert "retry later" in salesforce["body"]

    with pytest.raises(EnqueueFailed, match="retry later"):  # raised: Lambda retries, then dead-letters
        SalesforceEvents(settings).handle(load_event("salesforce_events/contact_change_event"), CONTEXT)
    assert _drain(aws) == []
