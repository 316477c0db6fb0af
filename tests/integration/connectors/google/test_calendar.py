"""Contract tests: the Calendar part of GoogleClient against the sandbox (and its pushes)."""

from __future__ import annotations

import uuid
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

import pytest

from concord.adapters.http import ConflictError, NotFoundError, PermanentError, ResyncRequired
from local.sandboxes import seed
from tests.support.receiver import Receiver

from .conftest import USER, event_body

if TYPE_CHECKING:
    from concord.adapters.google import GoogleClient
    from local.sandboxes.google import GoogleSandbox


def test_full_sync_lists_seeded_meetings_with_organizer_and_ical_uid(
    seeded: GoogleSandbox, client: GoogleClient
) -> None:
    delta = client.list_events(USER)

    expected = {m.ical_uid: m for m in seed.MEETINGS if m.in_google}
    assert {e["iCalUID"] for e in delta.items} == set(expected)
    for event in delta.items:
        assert event["organizer"] == {"email": USER, "self": True}
        assert event["etag"].startswith('"')
        assert event["start"]["dateTime"] == expected[event["iCalUID"]].start
    assert delta.next_sync_token


def test_incremental_sync_returns_changes_and_cancelled_deletions(
    google_sandbox: GoogleSandbox, client: GoogleClient
) -> None:
    first = client.insert_event(USER, event_body("One"))
    second = client.insert_event(USER, event_body("Two", day=11))
    cursor = client.list_events(USER).next_sync_token
    assert client.list_events(USER, sync_token=cursor).items == []

    client.patch_event(USER, first["id"], {"location": "Room 4"})
    client.delete_event(USER, second["id"])
    delta = client.list_events(USER, sync_token=cursor)

    by_id = {e["id"]: e for e in delta.items}
    assert by_id[first["id"]]["location"] == "Room 4"
    assert by_id[second["id"]]["status"] == "cancelled"
    assert delta.next_sync_token and delta.next_sync_token != cursor
    # a full sync no longer shows the deleted event
    assert [e["id"] for e in client.list_events(USER).items] == [first["id"]]


def test_listing_follows_every_page(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    client.page_sizes["events"] = 2
    ids = {client.insert_event(USER, event_body(f"E{i}", day=10 + i))["id"] for i in range(5)}
    calls = client.transport.calls

    delta = client.list_events(USER)

    assert {e["id"] for e in delta.items} == ids
    assert client.transport.calls - calls == 3  # pages of 2, 2 and 1
    assert delta.next_sync_token


def test_expired_sync_token_raises_resync_required(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    cursor = client.list_events(USER).next_sync_token
    google_sandbox.expire_sync_tokens()

    with pytest.raises(ResyncRequired) as caught:
        client.list_events(USER, sync_token=cursor)

    assert caught.value.status == 410
    assert caught.value.code == "fullSyncRequired"


def test_insert_get_patch_delete_round_trip(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    created = client.insert_event(USER, {**event_body("Kickoff"), "iCalUID": "kickoff@concord.example"})
    assert created["iCalUID"] == "kickoff@concord.example"
    assert created["status"] == "confirmed"

    fetched = client.get_event(USER, created["id"])
    assert fetched == created

    patched = client.patch_event(USER, created["id"], {"summary": "Kick-off"}, etag=created["etag"])
    assert patched["summary"] == "Kick-off"
    assert patched["etag"] != created["etag"]
    assert patched["updated"] >= created["updated"]
    assert patched["end"] == created["end"]  # patch keeps what it was not given

    client.delete_event(USER, created["id"], etag=patched["etag"])
    assert client.get_event(USER, created["id"])["status"] == "cancelled"
    with pytest.raises(NotFoundError):
        client.delete_event(USER, created["id"])  # 410 "deleted"


def test_find_by_ical_uid(seeded: GoogleSandbox, client: GoogleClient) -> None:
    found = client.list_events(USER, ical_uid="seed-engine-demo@fabrikam.example").items
    assert [e["summary"] for e in found] == ["Engine demo"]


def test_stale_etag_is_a_conflict(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    created = client.insert_event(USER, event_body())
    client.patch_event(USER, created["id"], {"summary": "Changed elsewhere"})

    with pytest.raises(ConflictError) as caught:
        client.patch_event(USER, created["id"], {"summary": "Mine"}, etag=created["etag"])
    assert caught.value.status == 412
    with pytest.raises(ConflictError):
        client.delete_event(USER, created["id"], etag=created["etag"])


def test_unknown_event_and_bad_event_are_permanent(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    with pytest.raises(NotFoundError):
        client.get_event(USER, "nosuchevent0")
    with pytest.raises(PermanentError) as caught:
        client.insert_event(USER, {"summary": "no times"})
    assert caught.value.status == 400 and caught.value.code == "required"


def test_writes_mail_attendees_only_when_asked(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    quiet = client.insert_event(USER, event_body(attendees=("ada@analytical.example",)))
    client.patch_event(USER, quiet["id"], {"summary": "Moved"})
    client.delete_event(USER, quiet["id"])
    assert google_sandbox.invitations_sent == []

    loud = client.insert_event(USER, event_body(attendees=("ada@analytical.example",)), send_updates="all")
    assert google_sandbox.invitations_sent == [
        {"user": USER, "event_id": loud["id"], "action": "created", "recipients": ["ada@analytical.example"]}
    ]


def test_watch_pushes_sync_then_exists_with_channel_headers(
    google_sandbox: GoogleSandbox, client: GoogleClient
) -> None:
    with Receiver() as receiver:
        channel = client.watch_events(USER, channel_id=str(uuid.uuid4()), address=receiver.url, token="chan-secret")
        assert channel.resource_id and channel.expiration_ms
        sync = receiver.wait_for(1)[0]
        assert sync.body == b""
        assert sync.headers["content-length"] == "0"
        assert sync.headers["x-goog-resource-state"] == "sync"
        assert sync.headers["x-goog-message-number"] == "1"
        assert sync.headers["x-goog-channel-id"] == channel.id
        assert sync.headers["x-goog-channel-token"] == "chan-secret"
        assert sync.headers["x-goog-resource-id"] == channel.resource_id
        assert sync.headers["x-goog-resource-uri"] == channel.resource_uri
        expires = parsedate_to_datetime(sync.headers["x-goog-channel-expiration"])
        assert abs(expires.timestamp() * 1000 - channel.expiration_ms) < 1000

        created = client.insert_event(USER, event_body())
        client.patch_event(USER, created["id"], {"summary": "Again"})
        pushes = receiver.wait_for(3)
        assert [p.headers["x-goog-resource-state"] for p in pushes] == ["sync", "exists", "exists"]
        numbers = [int(p.headers["x-goog-message-number"]) for p in pushes]
        assert numbers == sorted(set(numbers))

        client.stop_channel(USER, channel.id, channel.resource_id)
        client.insert_event(USER, event_body("after stop"))
        assert google_sandbox.wait_pushes()
        assert len(receiver.received) == 3
        with pytest.raises(NotFoundError):
            client.stop_channel(USER, channel.id, channel.resource_id)


def test_expired_channel_pushes_nothing(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    with Receiver() as receiver:
        client.watch_events(USER, channel_id="c-expiring", address=receiver.url)
        receiver.wait_for(1)
        google_sandbox.expire_channels()
        client.insert_event(USER, event_body())
        assert google_sandbox.wait_pushes()
        assert len(receiver.received) == 1


def test_deleted_calendar_pushes_not_exists(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    with Receiver() as receiver:
        client.watch_events(USER, channel_id="c-gone", address=receiver.url)
        receiver.wait_for(1)
        google_sandbox.delete_calendar(USER)
        pushes = receiver.wait_for(2)
        assert pushes[1].headers["x-goog-resource-state"] == "not_exists"
        with pytest.raises(NotFoundError):
            client.list_events(USER)


def test_a_listing_longer_than_the_page_cap_stops_with_a_clear_error(
    google_sandbox: GoogleSandbox, client: GoogleClient
) -> None:
    for day in (1, 2, 3):
        client.insert_event(USER, event_body(f"Paged {day}", day=day))
    client.page_sizes["events"] = 1
    client.max_pages = 2
    calls = client.transport.calls

    with pytest.raises(PermanentError, match="more than 2 pages"):
        client.list_events(USER)
    assert client.transport.calls - calls == 2


def test_many_events_are_read_in_http_batches_and_a_gone_one_is_none(client: GoogleClient) -> None:
    made = [client.insert_event(USER, event_body(f"Batch {i}", day=1 + i % 28))["id"] for i in range(55)]
    client.delete_event(USER, made[0])
    calls = client.transport.calls

    events = client.get_events(USER, [*made, "nosucheventid0123"])

    assert client.transport.calls - calls == 2  # 56 ids: two HTTP batches of at most 50, not 56 calls
    assert events["nosucheventid0123"] is None
    assert events[made[0]] is not None and events[made[0]]["status"] == "cancelled"  # as events.get answers
    assert [(events[e] or {}).get("summary") for e in made[1:3]] == ["Batch 1", "Batch 2"]
