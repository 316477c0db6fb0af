"""Every fault switch, seen through GoogleClient: throttling, 5xx, latency, expired tokens, push faults."""

from __future__ import annotations

import ssl
import uuid
from typing import TYPE_CHECKING

import httpx
import pytest

from concord.adapters.google import contact_marker, event_id_for
from concord.adapters.http import AuthError, RetryPolicy, TransientError
from local.sandboxes.server import ca_bundle_path
from tests.support.receiver import Receiver

from .conftest import USER, Sleeps, event_body

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from concord.adapters.google import GoogleClient
    from local.sandboxes.google import GoogleSandbox


def _token_requests(client: GoogleClient) -> int:
    return client._token_transport.calls


def test_429_retry_after_is_honoured(google_sandbox: GoogleSandbox, client: GoogleClient, sleeps: Sleeps) -> None:
    client.list_events(USER)  # token in hand, so the throttled calls are API calls
    google_sandbox.faults.throttle(2, retry_after=3)
    calls = client.transport.calls

    assert client.list_events(USER).next_sync_token

    assert client.transport.calls - calls == 3
    assert sleeps == [3.0, 3.0]  # Retry-After, not the (shorter) exponential backoff


def test_throttling_beyond_the_time_left_is_handed_back(
    google_sandbox: GoogleSandbox, make_client: Callable[..., GoogleClient], sleeps: Sleeps
) -> None:
    client = make_client(time_left=lambda: 2.0)
    client.list_events(USER)
    google_sandbox.faults.throttle(1, retry_after=30)

    with pytest.raises(TransientError) as caught:
        client.list_events(USER)

    assert caught.value.status == 429 and caught.value.retry_after == 30
    assert sleeps == []


def test_5xx_and_403_rate_limits_are_retried(
    google_sandbox: GoogleSandbox, client: GoogleClient, sleeps: Sleeps
) -> None:
    client.list_contacts(USER)
    google_sandbox.faults.fail(1, status=503)
    client.list_contacts(USER)
    google_sandbox.faults.fail(1, status=403)  # Google's usageLimits "rateLimitExceeded"
    client.list_contacts(USER)
    assert len(sleeps) == 2


def test_persistent_5xx_gives_up_as_transient(
    google_sandbox: GoogleSandbox, make_client: Callable[..., GoogleClient], sleeps: Sleeps
) -> None:
    client = make_client(policy=RetryPolicy(max_attempts=3))
    client.mailbox_history_id(USER)
    google_sandbox.faults.fail(5, status=500)

    with pytest.raises(TransientError) as caught:
        client.mailbox_history_id(USER)
    assert caught.value.status == 500 and caught.value.code == "backendError"
    assert len(sleeps) == 2


def test_latency_beyond_the_timeout_is_transient(
    google_sandbox: GoogleSandbox, make_client: Callable[..., GoogleClient]
) -> None:
    http = httpx.Client(timeout=httpx.Timeout(0.3), verify=ssl.create_default_context(cafile=ca_bundle_path()))
    client = make_client(client=http, policy=RetryPolicy(max_attempts=1))
    client.list_events(USER)
    google_sandbox.faults.latency(0.6)
    try:
        with pytest.raises(TransientError, match="timed out"):
            client.list_events(USER)
    finally:
        google_sandbox.faults.latency(0.0)


def test_expired_token_is_refreshed_once(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    client.list_events(USER)
    assert _token_requests(client) == 1
    client.list_events(USER)
    assert _token_requests(client) == 1  # cached

    google_sandbox.tokens.expire_all()
    client.list_events(USER)

    assert _token_requests(client) == 2


def test_tokens_are_cached_per_user_and_scope(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    client.list_events(USER)
    client.list_contacts(USER)
    client.list_events("other@fabrikam.example")
    client.list_contacts(USER)
    assert _token_requests(client) == 3


def test_a_second_401_is_an_auth_error(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    client.list_events(USER)
    google_sandbox.faults.fail(2, status=401)

    with pytest.raises(AuthError) as caught:
        client.list_events(USER)
    assert caught.value.status == 401
    assert _token_requests(client) == 2


def test_admin_endpoint_switches_faults(google_sandbox: GoogleSandbox, client: GoogleClient, sleeps: Sleeps) -> None:
    client.list_events(USER)
    with httpx.Client(verify=ssl.create_default_context(cafile=ca_bundle_path())) as admin:
        answer = admin.post(
            f"{google_sandbox.url}/_sandbox/faults",
            json={"throttle": {"calls": 1, "retry_after": 2}, "expire_tokens": True},
        )
        assert answer.status_code == 200
        client.list_events(USER)
        assert sleeps == [2.0]
        assert _token_requests(client) == 2

        delivered = admin.post(
            f"{google_sandbox.url}/_sandbox/google/deliver",
            json={"user": USER, "from": "ada@analytical.example", "subject": "via admin"},
        ).json()
        assert client.list_message_ids(USER) == [delivered["id"]]
        admin.post(f"{google_sandbox.url}/_sandbox/google/expire_history", json={})
        admin.post(f"{google_sandbox.url}/_sandbox/google/expire_sync_tokens")
        state = admin.get(f"{google_sandbox.url}/_sandbox/state").json()
        assert state["users"][USER]["messages"] == 1


def _watch(client: GoogleClient, receiver: Receiver) -> None:
    client.watch_events(USER, channel_id=str(uuid.uuid4()), address=receiver.url)
    receiver.wait_for(1)


def test_dropped_notifications(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    with Receiver() as receiver:
        _watch(client, receiver)
        google_sandbox.faults.notifications(drop=1)
        client.insert_event(USER, event_body("dropped"))
        client.insert_event(USER, event_body("delivered"))
        assert google_sandbox.wait_pushes()
        assert len(receiver.received) == 2


def test_duplicated_notifications(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    with Receiver() as receiver:
        _watch(client, receiver)
        google_sandbox.faults.notifications(duplicate=1)
        client.insert_event(USER, event_body())
        pushes = receiver.wait_for(3)
        assert pushes[1].headers["x-goog-message-number"] == pushes[2].headers["x-goog-message-number"]


def test_reordered_notifications(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    with Receiver() as receiver:
        _watch(client, receiver)
        google_sandbox.faults.notifications(reorder=1)
        client.insert_event(USER, event_body("first"))
        client.insert_event(USER, event_body("second"))
        pushes = receiver.wait_for(3)
        numbers = [int(p.headers["x-goog-message-number"]) for p in pushes[1:]]
        assert numbers[0] > numbers[1]


def test_unacknowledged_pushes_are_retried(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    answers: Iterator[tuple[int, dict[str, str], bytes]] = iter([(500, {}, b""), (204, {}, b"")])
    with Receiver(answer=lambda _: next(answers, (204, {}, b""))) as receiver:
        client.watch_events(USER, channel_id="retry-me", address=receiver.url)
        pushes = receiver.wait_for(2)
        assert [p.headers["x-goog-resource-state"] for p in pushes] == ["sync", "sync"]


def _live_events(client: GoogleClient, summary: str) -> list[dict[str, object]]:
    return [e for e in client.list_events(USER).items if e.get("summary") == summary and e["status"] != "cancelled"]


@pytest.mark.parametrize("status", [503, None], ids=["5xx-after-commit", "dropped-after-commit"])
def test_a_retried_event_insert_does_not_duplicate(
    google_sandbox: GoogleSandbox, client: GoogleClient, sleeps: Sleeps, status: int | None
) -> None:
    client.list_events(USER)
    google_sandbox.fail_after_commit(1, status=status)

    created = client.insert_event(USER, event_body("Once", attendees=("ada@analytical.example",)), send_updates="all")

    assert [e["id"] for e in _live_events(client, "Once")] == [created["id"]]
    assert len(sleeps) == 1  # retried once, answered 409, read back
    assert len(google_sandbox.invitations_sent) == 1  # and the attendee was invited once


def test_an_insert_under_a_known_id_returns_the_existing_event(
    google_sandbox: GoogleSandbox, client: GoogleClient
) -> None:
    event_id = event_id_for("00U5e00000AbCdEFGH")
    first = client.insert_event(USER, event_body("Stable"), event_id=event_id)
    again = client.insert_event(USER, event_body("Stable"), event_id=event_id)  # a later invocation's retry

    assert first["id"] == again["id"] == event_id
    assert len(_live_events(client, "Stable")) == 1


@pytest.mark.parametrize("status", [503, None], ids=["5xx-after-commit", "dropped-after-commit"])
def test_a_contact_create_that_failed_after_commit_is_found_not_repeated(
    google_sandbox: GoogleSandbox, client: GoogleClient, status: int | None
) -> None:
    client.list_contacts(USER)
    google_sandbox.fail_after_commit(1, status=status)

    created = client.create_contact(USER, {"names": [{"givenName": "Only", "familyName": "Once"}]}, marker="003A")

    people = [p for p in client.list_contacts(USER).items if p.get("names", [{}])[0].get("givenName") == "Only"]
    assert [p["resourceName"] for p in people] == [created["resourceName"]]
    assert contact_marker(created) == "003A"


def test_a_contact_create_refused_before_commit_is_resent(
    google_sandbox: GoogleSandbox, client: GoogleClient, sleeps: Sleeps
) -> None:
    client.list_contacts(USER)
    google_sandbox.faults.throttle(1, retry_after=1)

    created = client.create_contact(USER, {"names": [{"givenName": "Throttled"}]})

    assert sleeps == [1.0]
    assert [p["resourceName"] for p in client.list_contacts(USER).items] == [created["resourceName"]]


def test_a_create_that_never_committed_is_resent_after_looking(
    google_sandbox: GoogleSandbox, client: GoogleClient, sleeps: Sleeps
) -> None:
    client.list_contacts(USER)
    google_sandbox.faults.fail(1, status=503)  # refused before the write: the lookup finds nothing

    created = client.create_contact(USER, {"names": [{"givenName": "Second", "familyName": "Try"}]})

    assert len(sleeps) == 1
    assert [p["resourceName"] for p in client.list_contacts(USER).items] == [created["resourceName"]]
