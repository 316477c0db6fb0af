"""Contract tests: events in the default calendar, UTC on request, time zones stored as given."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx
import pytest

from concord.adapters.http import ConflictError, NotFoundError, PermanentError
from local.sandboxes import seed
from local.sandboxes.server import ca_bundle_path

if TYPE_CHECKING:
    from concord.adapters.graph import GraphClient
    from local.sandboxes.graph import GraphSandbox

USER = seed.M365_USER
START, END = datetime(2026, 11, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)


def test_calendar_view_has_seed_meetings_in_utc(graph: GraphClient) -> None:
    events = {e["subject"]: e for e in graph.list_events(USER, START, END)}
    for meeting in seed.MEETINGS:
        assert (meeting.subject in events) == meeting.in_m365
        if meeting.in_m365:
            event = events[meeting.subject]
            assert event["iCalUId"] == meeting.ical_uid
            assert event["start"] == {"dateTime": meeting.start[:-1] + ".0000000", "timeZone": "UTC"}
            assert {a["emailAddress"]["address"] for a in event["attendees"]} == set(meeting.attendees)
            assert event["organizer"]["emailAddress"]["address"] == USER
            assert event["isOrganizer"] is True
    # stored in "Pacific Standard Time", answered in UTC
    assert events["Dentist"]["start"] == {"dateTime": "2026-12-02T16:00:00.0000000", "timeZone": "UTC"}
    assert events["Dentist"]["sensitivity"] == "private"
    assert events["Navy briefing"]["isOrganizer"] is False


def test_window_excludes_events_outside_it(graph: GraphClient) -> None:
    events = graph.list_events(USER, datetime(2026, 12, 3, tzinfo=UTC), datetime(2026, 12, 4, tzinfo=UTC))
    assert [e["subject"] for e in events] == ["Contract call"]


def test_prefer_time_zone_is_honoured(graph: GraphClient, graph_sandbox: GraphSandbox) -> None:
    event = next(e for e in graph.list_events(USER, START, END) if e["subject"] == "Quarterly review")
    answer = httpx.get(
        f"{graph_sandbox.graph_url}/users/{USER}/events/{event['id']}",
        headers={"Authorization": f"Bearer {graph._token()}", "Prefer": 'outlook.timezone="Pacific Standard Time"'},
        verify=ca_bundle_path(),
    )
    assert answer.json()["start"] == {"dateTime": "2026-12-01T07:00:00.0000000", "timeZone": "Pacific Standard Time"}
    assert answer.headers["Preference-Applied"] == 'outlook.timezone="Pacific Standard Time"'


def test_create_update_delete_event(graph: GraphClient, graph_sandbox: GraphSandbox) -> None:
    created = graph.create_event(
        USER,
        {
            "subject": "Planning",
            "body": {"contentType": "text", "content": "Agenda"},
            "start": {"dateTime": "2026-12-10T09:00:00", "timeZone": "Pacific Standard Time"},
            "end": {"dateTime": "2026-12-10T10:00:00", "timeZone": "Pacific Standard Time"},
            "location": {"displayName": "Room 1"},
            "attendees": [{"emailAddress": {"address": "ada@analytical.example", "name": "Ada"}, "type": "required"}],
            "showAs": "tentative",
        },
    )
    assert created["start"] == {"dateTime": "2026-12-10T17:00:00.0000000", "timeZone": "UTC"}
    assert created["iCalUId"] and created["type"] == "singleInstance" and created["showAs"] == "tentative"
    stored = graph_sandbox.mailbox(USER).calendar.items[created["id"]]
    assert stored["start"]["timeZone"] == "Pacific Standard Time"  # kept as given

    updated = graph.update_event(USER, created["id"], {"subject": "Planning v2"}, etag=created["@odata.etag"])
    assert updated["subject"] == "Planning v2" and updated["changeKey"] != created["changeKey"]
    with pytest.raises(ConflictError):
        graph.update_event(USER, created["id"], {"subject": "lost"}, etag=created["@odata.etag"])
    assert graph.get_event(USER, created["id"])["subject"] == "Planning v2"

    graph.delete_event(USER, created["id"])
    with pytest.raises(NotFoundError):
        graph.get_event(USER, created["id"])


def test_unknown_time_zone_is_refused(graph: GraphClient) -> None:
    with pytest.raises(PermanentError, match="TimeZoneNotSupportedException"):
        graph.create_event(
            USER,
            {
                "subject": "x",
                "start": {"dateTime": "2026-12-10T09:00:00", "timeZone": "Mars Standard Time"},
                "end": {"dateTime": "2026-12-10T10:00:00", "timeZone": "Mars Standard Time"},
            },
        )
