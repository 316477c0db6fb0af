"""A replayed delivery enqueues nothing, and every report of it (answer, log, metric) says 0."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from concord.ingress.apps.google_webhook import GoogleWebhook
from concord.ingress.apps.graph_webhook import GraphWebhook
from concord.ingress.apps.salesforce_events import SalesforceEvents
from concord.ingress.apps.salesforce_webhook import SalesforceWebhook
from concord.observability import metrics
from tests.support.events import load_event
from tests.unit.ingress.helpers import CONTEXT, FakeQueue, SigningKey, fake_deps, outbound_event, settings

if TYPE_CHECKING:
    import io

KEY = SigningKey()


def _enqueued_metric() -> list[float]:
    values: list[float] = metrics.serialize_metric_set().get("NoticesEnqueued", [])
    return values


def _logged_enqueued(out: str) -> list[int]:
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [line["enqueued"] for line in lines if "enqueued" in line]


def _queue_size(queue: Any) -> int:
    assert isinstance(queue, FakeQueue)
    return len(queue.bodies)


def test_replayed_outbound_message_reports_zero(logs: io.StringIO) -> None:
    deps = fake_deps()
    webhook = SalesforceWebhook(settings(), deps)
    for _ in range(2):
        assert webhook.resolve(outbound_event(), CONTEXT)["statusCode"] == 200
    assert _queue_size(deps.queue) == 2
    assert _enqueued_metric() == [2.0, 0.0]
    assert _logged_enqueued(logs.getvalue()) == [2, 0]


def test_replayed_change_event_reports_zero(logs: io.StringIO) -> None:
    deps = fake_deps()
    handler = SalesforceEvents(settings(), deps)
    event = load_event("salesforce_events/contact_change_event")
    first, replay = handler.handle(event, CONTEXT), handler.handle(event, CONTEXT)
    assert (first["status"], first["enqueued"]) == ("enqueued", 1)
    assert (replay["status"], replay["enqueued"]) == ("replayed", 0)
    assert _queue_size(deps.queue) == 1
    assert _enqueued_metric() == [1.0, 0.0]
    assert _logged_enqueued(logs.getvalue()) == [1, 0]


def test_replayed_graph_batch_reports_zero(logs: io.StringIO) -> None:
    deps = fake_deps()
    webhook = GraphWebhook(settings(), deps)
    event = load_event("graph_webhook/notifications")
    for _ in range(2):
        assert webhook.resolve(event, CONTEXT)["statusCode"] == 202
    assert _queue_size(deps.queue) == 2
    assert _enqueued_metric() == [2.0, 0.0]
    assert _logged_enqueued(logs.getvalue()) == [2, 0]


def test_replayed_google_notifications_report_zero() -> None:
    deps = fake_deps()
    webhook = GoogleWebhook(settings(), deps, keys=KEY)
    gmail = load_event("google_webhook/gmail_push")
    gmail["headers"]["Authorization"] = f"Bearer {KEY.token()}"
    calendar = load_event("google_webhook/calendar_notification")
    answers = [json.loads(webhook.resolve(event, CONTEXT)["body"]) for event in (gmail, gmail, calendar, calendar)]
    assert answers == [
        {"enqueued": 1, "replayed": False},
        {"enqueued": 0, "replayed": True},
        {"enqueued": 1, "replayed": False},
        {"enqueued": 0, "replayed": True},
    ]
    assert _queue_size(deps.queue) == 2
    assert _enqueued_metric() == [1.0, 0.0, 1.0, 0.0]
