from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from concord.ingress.apps.graph_webhook import GraphWebhook
from concord.ingress.graph import MAX_VALIDATION_TOKEN
from concord.observability import metrics
from tests.support.events import load_event
from tests.unit.ingress.helpers import (
    CONTACTS_SUB,
    CONTEXT,
    EVENTS_STATE,
    FakeChannels,
    FakeQueue,
    assert_no_canary,
    fake_deps,
    graph_batch,
    settings,
)

if TYPE_CHECKING:
    from concord.ingress.apps.common import Deps


@pytest.fixture
def deps() -> Deps:
    return fake_deps()


@pytest.fixture
def webhook(deps: Deps) -> GraphWebhook:
    return GraphWebhook(settings(), deps)


def _queue(deps: Deps) -> FakeQueue:
    assert isinstance(deps.queue, FakeQueue)
    return deps.queue


def _event(name: str = "notifications", body: str | None = None) -> dict[str, Any]:
    event = load_event(f"graph_webhook/{name}")
    if body is not None:
        event["body"] = body
    return event


def test_validation_handshake_echoes_the_token_as_text(webhook: GraphWebhook, deps: Deps) -> None:
    answer = webhook.resolve(_event("validation"), CONTEXT)
    assert answer["statusCode"] == 200
    assert answer["multiValueHeaders"]["Content-Type"] == ["text/plain"]
    assert answer["body"].startswith("Validation: Testing client application reachability")
    assert _queue(deps).bodies == []


def _handshake(token: str) -> dict[str, Any]:
    event = _event("validation")
    event["queryStringParameters"] = {"validationToken": token}
    event["multiValueQueryStringParameters"] = {"validationToken": [token]}
    return event


def test_a_validation_token_of_the_longest_allowed_size_is_echoed(webhook: GraphWebhook) -> None:
    token = "Validation: " + "x" * (MAX_VALIDATION_TOKEN - len("Validation: "))
    answer = webhook.resolve(_handshake(token), CONTEXT)
    assert (answer["statusCode"], answer["body"]) == (200, token)


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("x" * (MAX_VALIDATION_TOKEN + 1), f"validationToken longer than {MAX_VALIDATION_TOKEN} characters"),
        ("", "empty validationToken"),
        ("Validation:\r\nSet-Cookie: a=b", "validationToken holds control characters"),
    ],
)
def test_an_oversized_or_odd_validation_token_is_not_echoed(
    webhook: GraphWebhook, deps: Deps, token: str, reason: str
) -> None:
    answer = webhook.resolve(_handshake(token), CONTEXT)
    assert answer["statusCode"] == 400 and json.loads(answer["body"]) == {"error": reason}
    assert _queue(deps).bodies == []


def test_valid_notifications_are_enqueued_with_202(
    webhook: GraphWebhook, deps: Deps, capsys: pytest.CaptureFixture[str]
) -> None:
    answer = webhook.resolve(_event(), CONTEXT)
    assert answer["statusCode"] == 202
    notices = _queue(deps).notices
    assert [(n["object_type"], n["connection_id"], n["kind"]) for n in notices] == [
        ("contact", "conn_ada_graph", "change"),
        ("event", "conn_ada_graph", "change"),
    ]
    assert notices[1]["source_version"] == 'W/"DwAAABYAAACQ2fKdhq8oSKEDSVrdi3lRAAAFv6BN"'
    out = capsys.readouterr()
    assert_no_canary(out.out, out.err, answer["body"], *_queue(deps).bodies)


def test_replayed_batch_enqueues_nothing(webhook: GraphWebhook, deps: Deps) -> None:
    webhook.resolve(_event(), CONTEXT)
    assert webhook.resolve(_event(), CONTEXT)["statusCode"] == 202
    assert len(_queue(deps).bodies) == 2


def test_forged_batch_gets_403_and_nothing_is_enqueued(
    webhook: GraphWebhook, deps: Deps, capsys: pytest.CaptureFixture[str]
) -> None:
    answer = webhook.resolve(_event(body=graph_batch(3, client_state="CANARY-guessed-state")), CONTEXT)
    assert answer["statusCode"] == 403 and "clientState" in json.loads(answer["body"])["error"]
    assert _queue(deps).bodies == []
    out = capsys.readouterr()
    assert_no_canary(out.out, out.err, answer["body"])


def test_mixed_batch_keeps_the_matching_and_counts_the_dropped(webhook: GraphWebhook, deps: Deps) -> None:
    good = json.loads(graph_batch(2))["value"]
    bad = json.loads(graph_batch(1, client_state=EVENTS_STATE))["value"]  # another subscription's secret
    bad[0]["resourceData"]["id"] = bad[0]["resource"] = "AAMkOther="
    unknown = json.loads(graph_batch(1, subscription="00000000-dead-beef-0000-000000000000"))["value"]
    answer = webhook.resolve(_event(body=json.dumps({"value": good + bad + unknown})), CONTEXT)
    assert answer["statusCode"] == 202 and len(_queue(deps).bodies) == 2
    dropped = metrics.metric_set["GraphNotificationsDropped"]["Value"]
    assert dropped == [2]


@pytest.mark.parametrize("body", ["{", "[]", '{"value": []}', '{"value": [{"no": "ids"}]}', '{"value": 3}'])
def test_malformed_body_gets_400(webhook: GraphWebhook, deps: Deps, body: str) -> None:
    answer = webhook.resolve(_event(body=body), CONTEXT)
    assert answer["statusCode"] == 400 and json.loads(answer["body"])["error"]
    assert _queue(deps).bodies == []


def test_oversized_body_gets_413(deps: Deps) -> None:
    webhook = GraphWebhook(settings(WEBHOOK_MAX_BODY_BYTES="4096"), deps)
    answer = webhook.resolve(_event(body=graph_batch(50)), CONTEXT)
    assert answer["statusCode"] == 413 and _queue(deps).bodies == []


def test_lifecycle_events_become_tasks(webhook: GraphWebhook, deps: Deps) -> None:
    answer = webhook.resolve(_event("lifecycle"), CONTEXT)
    assert answer["statusCode"] == 202
    notices = _queue(deps).notices
    assert [(n["kind"], n["object_type"], n["subscription_id"]) for n in notices] == [
        ("reauthorize", "contact", CONTACTS_SUB),
        ("catch_up", "event", "2e8a4f1c-6b3d-4c9e-a7f5-1d0b9c8e7a6f"),
    ]


def test_subscription_removed_asks_to_recreate(webhook: GraphWebhook, deps: Deps) -> None:
    event = _event("lifecycle")
    body = json.loads(event["body"])
    body["value"] = body["value"][:1]
    body["value"][0]["lifecycleEvent"] = "subscriptionRemoved"
    event["body"] = json.dumps(body)
    assert webhook.resolve(event, CONTEXT)["statusCode"] == 202
    assert _queue(deps).notices[0]["kind"] == "recreate_subscription"


def test_batch_of_100_uses_one_lookup(webhook: GraphWebhook, deps: Deps) -> None:
    assert webhook.resolve(_event(body=graph_batch(100)), CONTEXT)["statusCode"] == 202
    assert len(_queue(deps).bodies) == 100
    channels = deps.channels
    assert isinstance(channels, FakeChannels) and channels.lookups == 1
