"""Subscriptions: validation handshake, change and lifecycle notifications, renewal and expiry."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from concord.adapters.http import NotFoundError, PermanentError
from local.sandboxes import seed
from local.sandboxes.server import ca_bundle_path
from tests.integration.connectors.graph.conftest import echo_validation
from tests.support.receiver import Received, Receiver

if TYPE_CHECKING:
    from concord.adapters.graph import GraphClient
    from local.sandboxes.graph import GraphSandbox

USER = seed.M365_USER
STATE = "client-state-of-the-test"


def _notifications(receiver: Receiver) -> list[dict[str, Any]]:
    return [n for r in receiver.received if r.body for n in json.loads(r.body)["value"]]


def _subscribe(
    graph: GraphClient, webhook: Receiver, lifecycle: Receiver | None = None
) -> tuple[str, dict[str, object]]:
    folder = graph.ensure_contact_folder(USER)
    sub = graph.create_subscription(
        f"users/{USER}/contactFolders/{folder}/contacts",
        webhook.url + "/graph",
        STATE,
        lifecycle_url=lifecycle.url + "/lifecycle" if lifecycle else None,
    )
    return folder, sub


def test_create_performs_the_handshake(graph: GraphClient, webhook: Receiver) -> None:
    with Receiver(answer=echo_validation) as lifecycle:
        _, sub = _subscribe(graph, webhook, lifecycle)
        shake = webhook.received[0]
        assert shake.method == "POST" and shake.body == b""
        assert shake.headers["content-type"].startswith("text/plain")
        assert shake.query["validationToken"][0].startswith("Validation: ")  # '+' decoded to spaces
        assert len(lifecycle.received) == 1  # the lifecycle URL is validated too
    assert sub["clientState"] == STATE and sub["changeType"] == "created,updated,deleted"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", str(sub["expirationDateTime"]))


def test_handshake_not_echoed_is_refused(graph: GraphClient) -> None:
    with Receiver() as deaf, pytest.raises(PermanentError, match="ValidationError"):
        graph.create_subscription(f"users/{USER}/events", deaf.url, STATE)


def test_handshake_echoed_as_json_is_refused(graph: GraphClient) -> None:
    def wrong_type(r: Received) -> tuple[int, dict[str, str], bytes]:
        return 200, {"Content-Type": "application/json"}, r.query["validationToken"][0].encode()

    with Receiver(answer=wrong_type) as receiver, pytest.raises(PermanentError, match="exactly match"):
        graph.create_subscription(f"users/{USER}/events", receiver.url, STATE)


def test_slow_handshake_times_out(graph: GraphClient) -> None:
    def slow(r: Received) -> tuple[int, dict[str, str], bytes]:
        time.sleep(1.5)  # the sandbox fixture waits 1 s (the real service 10 s)
        return echo_validation(r)

    with Receiver(answer=slow) as receiver, pytest.raises(PermanentError, match="timed out"):
        graph.create_subscription(f"users/{USER}/events", receiver.url, STATE)


def test_expiration_beyond_the_maximum_is_400(graph: GraphClient, webhook: Receiver) -> None:
    too_late = datetime.now(UTC) + timedelta(minutes=10081)
    with pytest.raises(PermanentError, match="10080 minutes") as refused:
        graph.create_subscription(f"users/{USER}/events", webhook.url, STATE, expiration=too_late)
    assert refused.value.status == 400 and webhook.received == []


def test_change_notifications_are_batched(graph: GraphClient, graph_sandbox: GraphSandbox, webhook: Receiver) -> None:
    folder, sub = _subscribe(graph, webhook)
    created = graph.create_contact(USER, folder, {"givenName": "Note"})
    graph.update_contact(USER, created["id"], {"jobTitle": "x"})
    graph_sandbox.put_contact(USER, {"givenName": "Elsewhere"})  # default folder: not subscribed
    assert graph_sandbox.wait_notifications()
    posts = [r for r in webhook.received if r.body]
    assert len(posts) == 1  # both changes within the window, one POST
    assert posts[0].headers["content-type"].startswith("application/json")
    first, second = json.loads(posts[0].body)["value"]
    assert (first["changeType"], second["changeType"]) == ("created", "updated")
    assert first["subscriptionId"] == sub["id"] and first["clientState"] == STATE
    assert (
        first["tenantId"]
        and first["resource"].startswith("Users/")
        and f"/Contacts/{created['id']}" in first["resource"]
    )
    assert (
        first["resourceData"]["@odata.type"] == "#Microsoft.Graph.Contact"
        and first["resourceData"]["id"] == created["id"]
    )
    assert first["resourceData"]["@odata.etag"].startswith('W/"')
    assert re.fullmatch(r".*T\d\d:\d\d:\d\d\.\d{7}\+00:00", first["subscriptionExpirationDateTime"])

    graph.delete_contact(USER, created["id"])
    assert graph_sandbox.wait_notifications()
    deleted = _notifications(webhook)[-1]
    assert deleted["changeType"] == "deleted" and "@odata.etag" not in deleted["resourceData"]


def test_event_subscription_notifies(graph: GraphClient, graph_sandbox: GraphSandbox, webhook: Receiver) -> None:
    graph.create_subscription(f"users/{USER}/events", webhook.url, STATE, change_type="updated")
    event = graph.list_events(USER, datetime(2026, 11, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))[0]
    graph_sandbox.edit(USER, event["id"], {"subject": "Renamed in Outlook"})
    assert graph_sandbox.wait_notifications()
    (note,) = _notifications(webhook)
    assert note["changeType"] == "updated"
    assert note["resourceData"]["@odata.type"] == "#Microsoft.Graph.Event"


def test_unacknowledged_pushes_are_retried(graph: GraphClient, graph_sandbox: GraphSandbox) -> None:
    refusals = {"left": 2}

    def flaky(r: Received) -> tuple[int, dict[str, str], bytes]:
        if "validationToken" in r.query:
            return echo_validation(r)
        if refusals["left"]:
            refusals["left"] -= 1
            return 500, {}, b""
        return 202, {}, b""

    with Receiver(answer=flaky) as receiver:
        folder, _ = _subscribe(graph, receiver)
        graph.create_contact(USER, folder, {"givenName": "Retry"})
        assert graph_sandbox.wait_notifications()
        assert len([r for r in receiver.received if r.body]) == 3


@pytest.mark.parametrize(("fault", "posts"), [("drop", 0), ("duplicate", 2)])
def test_notification_faults(
    graph: GraphClient, graph_sandbox: GraphSandbox, webhook: Receiver, fault: str, posts: int
) -> None:
    folder, _ = _subscribe(graph, webhook)
    graph_sandbox.faults.notifications(**{fault: 1})
    graph.create_contact(USER, folder, {"givenName": "Faulty"})
    assert graph_sandbox.wait_notifications()
    assert len([r for r in webhook.received if r.body]) == posts


def test_reorder_fault(graph: GraphClient, graph_sandbox: GraphSandbox, webhook: Receiver) -> None:
    folder, _ = _subscribe(graph, webhook)
    graph_sandbox.faults.notifications(reorder=1)
    first = graph.create_contact(USER, folder, {"givenName": "First"})
    assert graph_sandbox.wait_notifications()
    second = graph.create_contact(USER, folder, {"givenName": "Second"})
    assert graph_sandbox.wait_notifications()
    ids = [n["resourceData"]["id"] for n in _notifications(webhook)]
    assert ids == [second["id"], first["id"]]


def test_renew_delete_and_expiry(graph: GraphClient, graph_sandbox: GraphSandbox, webhook: Receiver) -> None:
    folder, sub = _subscribe(graph, webhook)
    later = datetime.now(UTC) + timedelta(days=2)
    renewed = graph.renew_subscription(str(sub["id"]), later)
    assert renewed["expirationDateTime"].startswith(later.strftime("%Y-%m-%dT%H:%M"))
    graph_sandbox.expire_subscription(str(sub["id"]))
    graph.create_contact(USER, folder, {"givenName": "Unheard"})
    assert graph_sandbox.wait_notifications()
    assert _notifications(webhook) == []  # expired subscriptions stay silent
    with pytest.raises(NotFoundError):
        graph.renew_subscription(str(sub["id"]))

    _, other = _subscribe(graph, webhook)
    graph.delete_subscription(str(other["id"]))
    with pytest.raises(NotFoundError):
        graph.delete_subscription(str(other["id"]))


def test_lifecycle_notifications(graph: GraphClient, graph_sandbox: GraphSandbox, webhook: Receiver) -> None:
    with Receiver(answer=echo_validation) as lifecycle:
        _, sub = _subscribe(graph, webhook, lifecycle)
        graph_sandbox.lifecycle(str(sub["id"]), "reauthorizationRequired")
        answer = httpx.post(
            f"{graph_sandbox.url}/_sandbox/subscriptions/{sub['id']}/lifecycle",
            json={"event": "missed"},
            verify=ca_bundle_path(),
        )
        assert answer.status_code == 200
        assert graph_sandbox.wait_notifications()
        graph.reauthorize_subscription(str(sub["id"]))
        graph_sandbox.lifecycle(str(sub["id"]), "subscriptionRemoved")
        assert graph_sandbox.wait_notifications()
        events = [n for r in lifecycle.received if r.body for n in json.loads(r.body)["value"]]
    assert [e["lifecycleEvent"] for e in events] == ["reauthorizationRequired", "missed", "subscriptionRemoved"]
    assert set(events[0]) == {
        "subscriptionId",
        "subscriptionExpirationDateTime",
        "tenantId",
        "clientState",
        "lifecycleEvent",
    }
    assert events[0]["clientState"] == STATE
    with pytest.raises(NotFoundError):
        graph.reauthorize_subscription(str(sub["id"]))


@pytest.mark.parametrize("folder", ["inbox", "sentitems"])
def test_mail_folders_can_be_subscribed_to(graph: GraphClient, webhook: Receiver, folder: str) -> None:
    sub = graph.create_subscription(f"users/{USER}/mailFolders('{folder}')/messages", webhook.url + "/graph", STATE)
    assert sub["resource"] == f"users/{USER}/mailFolders('{folder}')/messages"
