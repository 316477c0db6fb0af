"""GraphFeed over HTTP against the Graph sandbox: full loads within the connection's filters, the changes
since a delta link, idle rounds at one call per folder, expired links as CursorExpired without the link."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from concord.adapters.http import TransientError
from concord.core import ConnectionOptions
from concord.ports import Connection, CursorExpired
from local.sandboxes import seed

if TYPE_CHECKING:
    from concord.adapters.feeds import GraphFeed
    from concord.notices import ObjectType
    from local.sandboxes.graph import Collection, GraphSandbox

USER = seed.M365_USER
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def connection(**options: Any) -> Connection:
    return Connection("c-graph", "graph", USER, "005000000000001AAA", ConnectionOptions(provider="graph", **options))


def sync_folder(sandbox: GraphSandbox) -> Collection:
    return next(f for f in sandbox.mailbox(USER).folders.values() if f.display_name == "Salesforce Sync")


def test_contacts_full_load_lists_the_sync_folder_only(graph_feed: GraphFeed, graph_sandbox: GraphSandbox) -> None:
    page = graph_feed.changes(connection(), "contact", None, NOW)

    assert {c.record_id for c in page.changes} == set(sync_folder(graph_sandbox).items)
    assert len(page.changes) == sum(p.in_m365 for p in seed.PEOPLE)  # Pat and Mum (default folder) left out
    assert all(not c.deleted and c.version and c.version.startswith('W/"') for c in page.changes)
    assert page.cursor


def test_contacts_of_a_named_folder(graph_feed: GraphFeed, graph_sandbox: GraphSandbox) -> None:
    folder = graph_sandbox.add_contact_folder(USER, "Elsewhere")
    made = graph_sandbox.put_contact(USER, {"givenName": "Only", "surname": "Here"}, folder)

    page = graph_feed.changes(connection(contact_folder_id=folder), "contact", None, NOW)

    assert [c.record_id for c in page.changes] == [made["id"]]


def test_contact_changes_since_the_cursor_then_an_idle_round(
    graph_feed: GraphFeed, graph_sandbox: GraphSandbox
) -> None:
    first = graph_feed.changes(connection(), "contact", None, NOW)
    edited, gone = first.changes[0].record_id, first.changes[1].record_id
    new = graph_sandbox.put_contact(USER, {"givenName": "New", "surname": "Person"}, sync_folder(graph_sandbox).id)
    graph_sandbox.edit(USER, edited, {"jobTitle": "Edited"})
    graph_sandbox.remove(USER, gone)
    graph_sandbox.put_contact(USER, {"givenName": "Default", "surname": "Folder"})  # outside the sync folder

    second = graph_feed.changes(connection(), "contact", first.cursor, NOW)

    by_id = {c.record_id: c for c in second.changes}
    assert set(by_id) == {new["id"], edited, gone}
    assert by_id[gone].deleted and by_id[gone].version is None
    assert not by_id[edited].deleted and by_id[edited].version != first.changes[0].version
    assert second.cursor != first.cursor

    calls = graph_feed.calls()
    idle = graph_feed.changes(connection(), "contact", second.cursor, NOW)
    assert idle.changes == []
    assert graph_feed.calls() - calls == 1


def test_events_full_load_keeps_the_window(graph_feed: GraphFeed, graph_sandbox: GraphSandbox) -> None:
    everything = graph_feed.changes(connection(), "event", None, NOW)
    recent = graph_feed.changes(connection(event_window_past_days=1, event_window_future_days=1), "event", None, NOW)

    subjects = {e["id"]: e["subject"] for e in graph_sandbox.mailbox(USER).calendar.items.values()}
    assert {subjects[c.record_id] for c in everything.changes} == set(subjects.values())
    # 2026-12-02T12:00Z .. 2026-12-04T12:00Z: the dentist (08:00 PST is 16:00Z) and the call; the review
    # (12-01) ended before, the briefing (12-04 14:00Z) starts after
    assert {subjects[c.record_id] for c in recent.changes} == {"Dentist", "Contract call"}
    assert all(not c.deleted and c.version for c in everything.changes)


def test_unbounded_window_reaches_years_away(graph_feed: GraphFeed, graph_sandbox: GraphSandbox) -> None:
    far = graph_sandbox.put_event(
        USER,
        {
            "subject": "Far off",
            "start": {"dateTime": "2029-06-01T10:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2029-06-01T11:00:00", "timeZone": "UTC"},
        },
    )
    unbounded = connection(event_window_past_days=None, event_window_future_days=None)

    assert far["id"] in {c.record_id for c in graph_feed.changes(unbounded, "event", None, NOW).changes}
    assert far["id"] not in {c.record_id for c in graph_feed.changes(connection(), "event", None, NOW).changes}


def test_event_changes_since_the_cursor_then_an_idle_round(graph_feed: GraphFeed, graph_sandbox: GraphSandbox) -> None:
    first = graph_feed.changes(connection(), "event", None, NOW)
    edited, gone = first.changes[0].record_id, first.changes[1].record_id
    new = graph_sandbox.put_event(
        USER,
        {
            "subject": "Added",
            "start": {"dateTime": "2026-12-10T10:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2026-12-10T11:00:00", "timeZone": "UTC"},
        },
    )
    graph_sandbox.edit(USER, edited, {"subject": "Moved on"})
    graph_sandbox.remove(USER, gone)

    second = graph_feed.changes(connection(), "event", first.cursor, NOW)

    by_id = {c.record_id: c for c in second.changes}
    assert set(by_id) == {new["id"], edited, gone}
    assert by_id[gone].deleted and not by_id[edited].deleted and not by_id[new["id"]].deleted

    calls = graph_feed.calls()
    assert graph_feed.changes(connection(), "event", second.cursor, NOW).changes == []
    assert graph_feed.calls() - calls == 1


def test_mail_full_load_is_sent_items_and_the_inbox_when_received_mail_is_logged(
    graph_feed: GraphFeed, graph_sandbox: GraphSandbox
) -> None:
    mailbox = graph_sandbox.mailbox(USER)
    sent, inbox = set(mailbox.mail_folder("sentitems").items), set(mailbox.mail_folder("inbox").items)
    assert sent and inbox

    both = graph_feed.changes(connection(), "email", None, NOW)
    sent_only = graph_feed.changes(connection(log_received_email=False), "email", None, NOW)

    assert {c.record_id for c in both.changes} == sent | inbox
    assert sorted(json.loads(both.cursor)) == ["inbox", "sentitems"]
    assert {c.record_id for c in sent_only.changes} == sent
    assert sorted(json.loads(sent_only.cursor)) == ["sentitems"]


@pytest.mark.parametrize(("logged", "folders"), [(True, 2), (False, 1)])
def test_mail_changes_then_an_idle_round_costs_one_call_per_folder(
    graph_feed: GraphFeed, graph_sandbox: GraphSandbox, logged: bool, folders: int
) -> None:
    conn = connection(log_received_email=logged)
    first = graph_feed.changes(conn, "email", None, NOW)
    reply = graph_sandbox.put_message(USER, "sentitems", {"subject": "Re: later"})
    received = graph_sandbox.put_message(USER, "inbox", {"subject": "Later"})

    second = graph_feed.changes(conn, "email", first.cursor, NOW)

    expected = {reply["id"], received["id"]} if logged else {reply["id"]}
    assert {c.record_id for c in second.changes} == expected
    calls = graph_feed.calls()
    assert graph_feed.changes(conn, "email", second.cursor, NOW).changes == []
    assert graph_feed.calls() - calls == folders


def test_mail_cursor_gains_the_inbox_when_received_mail_becomes_logged(
    graph_feed: GraphFeed, graph_sandbox: GraphSandbox
) -> None:
    first = graph_feed.changes(connection(log_received_email=False), "email", None, NOW)

    second = graph_feed.changes(connection(log_received_email=True), "email", first.cursor, NOW)

    assert {c.record_id for c in second.changes} == set(graph_sandbox.mailbox(USER).mail_folder("inbox").items)
    assert sorted(json.loads(second.cursor)) == ["inbox", "sentitems"]


@pytest.mark.parametrize("object_type", ["contact", "event", "email"])
def test_an_expired_delta_link_is_cursor_expired_without_the_link(
    graph_feed: GraphFeed, graph_sandbox: GraphSandbox, object_type: ObjectType
) -> None:
    cursor = graph_feed.changes(connection(), object_type, None, NOW).cursor
    graph_sandbox.invalidate_delta_tokens()

    with pytest.raises(CursorExpired) as expired:
        graph_feed.changes(connection(), object_type, cursor, NOW)

    text = f"{expired.value} {expired.value.reason} {expired.value!r}"
    assert "410" in expired.value.reason and "syncStateNotFound" in expired.value.reason
    assert cursor not in text and "deltatoken" not in text.lower() and "http" not in text
    assert expired.value.__cause__ is None and expired.value.__suppress_context__


def test_an_unreadable_mail_cursor_is_cursor_expired(graph_feed: GraphFeed) -> None:
    calls = graph_feed.calls()
    with pytest.raises(CursorExpired) as expired:
        graph_feed.changes(connection(), "email", "https://graph.example/delta?$deltatoken=secret", NOW)
    assert "secret" not in str(expired.value)
    assert graph_feed.calls() == calls


def test_other_errors_propagate_unchanged(graph_feed: GraphFeed, graph_sandbox: GraphSandbox) -> None:
    cursor = graph_feed.changes(connection(), "contact", None, NOW).cursor
    graph_sandbox.faults.fail(50, 503)

    with pytest.raises(TransientError) as failed:
        graph_feed.changes(connection(), "contact", cursor, NOW)

    assert failed.value.status == 503
    assert "deltatoken" not in str(failed.value).lower()
