"""GoogleFeed over HTTP against the Google sandbox: People and Calendar sync tokens, Gmail history ids
(never moved backwards), group and window filters on full loads, expiry as CursorExpired."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from concord.adapters.http import TransientError
from concord.core import ConnectionOptions
from concord.ports import Connection, CursorExpired
from local.sandboxes import seed

if TYPE_CHECKING:
    from concord.adapters.feeds import GoogleFeed
    from concord.adapters.google import GoogleClient
    from local.sandboxes.google import GoogleSandbox

USER = seed.GOOGLE_USER
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def connection(**options: Any) -> Connection:
    return Connection("c-google", "google", USER, "005000000000001AAA", ConnectionOptions(provider="google", **options))


def sync_group(client: GoogleClient) -> str:
    return next(str(g["resourceName"]) for g in client.list_contact_groups(USER) if g.get("name") == "Salesforce Sync")


# ---------------------------------------------------------------- contacts


def test_contacts_full_load_keeps_the_contact_group(google_feed: GoogleFeed, google_client: GoogleClient) -> None:
    everyone = google_feed.changes(connection(), "contact", None, NOW)
    grouped = google_feed.changes(connection(contact_group=sync_group(google_client)), "contact", None, NOW)

    assert len(everyone.changes) == sum(p.in_google for p in seed.PEOPLE) + 1  # the outsider too
    assert len(grouped.changes) == sum(p.in_google for p in seed.PEOPLE)
    assert {c.record_id for c in grouped.changes} < {c.record_id for c in everyone.changes}
    assert all(c.record_id.startswith("people/") and c.version and not c.deleted for c in everyone.changes)
    assert grouped.cursor


def test_contact_changes_since_the_token_then_an_idle_round(
    google_feed: GoogleFeed, google_client: GoogleClient
) -> None:
    conn = connection(contact_group=sync_group(google_client))
    first = google_feed.changes(conn, "contact", None, NOW)
    edited, gone = first.changes[0].record_id, first.changes[1].record_id
    new = google_client.create_contact(USER, {"names": [{"givenName": "New", "familyName": "Person"}]})
    current = google_client.get_contact(USER, edited)
    google_client.update_contact(USER, edited, {**current, "organizations": [{"title": "Edited"}]}, ["organizations"])
    google_client.delete_contact(USER, gone)

    second = google_feed.changes(conn, "contact", first.cursor, NOW)

    by_id = {c.record_id: c for c in second.changes}
    # incremental rounds report every change; the new contact is outside the group, the worker's filter judges it
    assert set(by_id) == {new["resourceName"], edited, gone}
    assert by_id[gone].deleted and not by_id[edited].deleted
    assert by_id[edited].version != first.changes[0].version

    calls = google_feed.calls()
    assert google_feed.changes(conn, "contact", second.cursor, NOW).changes == []
    assert google_feed.calls() - calls == 1


# ---------------------------------------------------------------- events


def test_events_full_load_keeps_the_window(google_feed: GoogleFeed, google_client: GoogleClient) -> None:
    everything = google_feed.changes(connection(), "event", None, NOW)
    narrow = google_feed.changes(connection(event_window_past_days=2, event_window_future_days=0), "event", None, NOW)

    subjects = {e["id"]: e.get("summary") for e in google_client.list_events(USER).items}
    assert {subjects[c.record_id] for c in everything.changes} == {m.subject for m in seed.MEETINGS if m.in_google}
    # 2026-12-01T12:00Z .. 2026-12-03T12:00Z: the demo (12-02) is in it, the lunch (12-05) starts after
    assert {subjects[c.record_id] for c in narrow.changes} == {"Engine demo"}
    assert all(c.version and not c.deleted for c in everything.changes)


def test_a_full_load_leaves_out_past_events_but_not_without_a_past_bound(
    google_feed: GoogleFeed, google_client: GoogleClient
) -> None:
    old = google_client.insert_event(
        USER,
        {
            "summary": "Long ago",
            "start": {"dateTime": "2020-01-01T10:00:00Z"},
            "end": {"dateTime": "2020-01-01T11:00:00Z"},
        },
    )

    bounded = google_feed.changes(connection(), "event", None, NOW)
    unbounded = google_feed.changes(connection(event_window_past_days=None), "event", None, NOW)

    assert old["id"] not in {c.record_id for c in bounded.changes}
    assert old["id"] in {c.record_id for c in unbounded.changes}


def test_event_changes_since_the_token_then_an_idle_round(google_feed: GoogleFeed, google_client: GoogleClient) -> None:
    first = google_feed.changes(connection(), "event", None, NOW)
    edited, gone = first.changes[0].record_id, first.changes[1].record_id
    new = google_client.insert_event(
        USER,
        {
            "summary": "Added",
            "start": {"dateTime": "2026-12-10T10:00:00Z"},
            "end": {"dateTime": "2026-12-10T11:00:00Z"},
        },
    )
    google_client.patch_event(USER, edited, {"summary": "Moved on"})
    google_client.delete_event(USER, gone)

    second = google_feed.changes(connection(), "event", first.cursor, NOW)

    by_id = {c.record_id: c for c in second.changes}
    assert set(by_id) == {new["id"], edited, gone}
    assert by_id[gone].deleted and not by_id[edited].deleted and not by_id[new["id"]].deleted

    calls = google_feed.calls()
    assert google_feed.changes(connection(), "event", second.cursor, NOW).changes == []
    assert google_feed.calls() - calls == 1


@pytest.mark.parametrize(("object_type", "words"), [("contact", "EXPIRED_SYNC_TOKEN"), ("event", "410")])
def test_an_expired_sync_token_is_cursor_expired_without_the_token(
    google_feed: GoogleFeed, google_sandbox: GoogleSandbox, object_type: Any, words: str
) -> None:
    cursor = google_feed.changes(connection(), object_type, None, NOW).cursor
    google_sandbox.expire_sync_tokens()

    with pytest.raises(CursorExpired) as expired:
        google_feed.changes(connection(), object_type, cursor, NOW)

    assert words in expired.value.reason
    assert cursor not in f"{expired.value} {expired.value!r}"
    assert expired.value.__cause__ is None and expired.value.__suppress_context__


# ---------------------------------------------------------------- mail


def mail_ids(client: GoogleClient, label: str | None = None) -> set[str]:
    messages = client.get_messages(USER, client.list_message_ids(USER)).values()
    return {m["id"] for m in messages if m is not None and (label is None or label in m["labelIds"])}


def test_mail_full_load_is_the_users_own_mail_unless_received_mail_is_logged(
    google_feed: GoogleFeed, google_client: GoogleClient
) -> None:
    before = google_client.mailbox_history_id(USER)

    everything = google_feed.changes(connection(), "email", None, NOW)
    sent = google_feed.changes(connection(log_received_email=False), "email", None, NOW)

    assert {c.record_id for c in everything.changes} == mail_ids(google_client) and len(everything.changes) == 3
    assert {c.record_id for c in sent.changes} == mail_ids(google_client, "SENT") and len(sent.changes) == 1
    assert everything.cursor == sent.cursor == str(before)


def test_mail_arriving_after_the_load_is_in_the_next_round(
    google_feed: GoogleFeed, google_sandbox: GoogleSandbox
) -> None:
    first = google_feed.changes(connection(), "email", None, NOW)
    arrived = google_sandbox.deliver_email(USER, sender="Ada <ada@analytical.example>", to=[USER], subject="More")

    second = google_feed.changes(connection(), "email", first.cursor, NOW)

    assert [c.record_id for c in second.changes] == [arrived["id"]]
    assert int(second.cursor) == int(arrived["historyId"]) > int(first.cursor)

    calls = google_feed.calls()
    idle = google_feed.changes(connection(), "email", second.cursor, NOW)
    assert idle.changes == [] and idle.cursor == second.cursor
    assert google_feed.calls() - calls == 1


def test_the_history_id_never_goes_backwards(google_feed: GoogleFeed, google_client: GoogleClient) -> None:
    ahead = str(google_client.mailbox_history_id(USER) + 1000)  # a cursor saved past what history.list answers

    page = google_feed.changes(connection(), "email", ahead, NOW)

    assert page.changes == [] and page.cursor == ahead


def test_expired_history_is_cursor_expired(google_feed: GoogleFeed, google_sandbox: GoogleSandbox) -> None:
    cursor = google_feed.changes(connection(), "email", None, NOW).cursor
    google_sandbox.deliver_email(USER, sender="Ada <ada@analytical.example>", to=[USER], subject="More")
    google_sandbox.expire_history(USER)

    with pytest.raises(CursorExpired) as expired:
        google_feed.changes(connection(), "email", cursor, NOW)

    assert "404" in expired.value.reason and cursor not in str(expired.value)


def test_an_unreadable_history_id_is_cursor_expired_without_a_call(google_feed: GoogleFeed) -> None:
    calls = google_feed.calls()
    with pytest.raises(CursorExpired) as expired:
        google_feed.changes(connection(), "email", "not-a-number-secret", NOW)
    assert "secret" not in str(expired.value)
    assert google_feed.calls() == calls


def test_other_errors_propagate_unchanged(google_feed: GoogleFeed, google_sandbox: GoogleSandbox) -> None:
    cursor = google_feed.changes(connection(), "event", None, NOW).cursor
    google_sandbox.faults.fail(50, 503)

    with pytest.raises(TransientError) as failed:
        google_feed.changes(connection(), "event", cursor, NOW)

    assert failed.value.status == 503 and cursor not in str(failed.value)


def test_expiry_makes_even_the_newest_history_id_too_old_but_not_the_next_full_loads(
    google_feed: GoogleFeed, google_sandbox: GoogleSandbox
) -> None:
    cursor = google_feed.changes(connection(), "email", None, NOW).cursor
    google_sandbox.expire_history(USER)  # no mail in between: the cursor is the mailbox's current id

    with pytest.raises(CursorExpired):
        google_feed.changes(connection(), "email", cursor, NOW)
    fresh = google_feed.changes(connection(), "email", None, NOW).cursor
    assert google_feed.changes(connection(), "email", fresh, NOW).changes == []
