"""Meetings in Google Calendar: the mail every attendee would receive, and writes to a meeting the mailbox
user does not organise.

The sandbox records one entry per mail an attendee would get (``attendee_mails``, counted per address by
``mails_to`` and in ``GET /_sandbox/state``); a write to someone else's meeting changes only what Google lets
a guest change in their own copy, mails nobody, and is recorded in ``attendee_copy_writes``.
"""

from __future__ import annotations

import ssl
from collections import Counter
from typing import TYPE_CHECKING, Any

import google_auth_httplib2
import httplib2
import httpx
import pytest
from google.oauth2 import service_account
from googleapiclient.discovery import build

from concord.adapters.google import SCOPE_CALENDAR
from local.sandboxes.server import ca_bundle_path

from .conftest import USER, event_body

if TYPE_CHECKING:
    from concord.adapters.google import GoogleClient
    from local.sandboxes.google import GoogleSandbox

COLLEAGUE = "kim@fabrikam.example"  # the organiser's own Workspace domain: a Google Calendar user
GMAIL = "pat@gmail.com"  # a consumer Google account: a Google Calendar user too
OUTSIDER = "ada@analytical.example"  # no Google Calendar: the only "external" guest
ORGANISER = "grace@navy.example"  # organises the meeting the mailbox user is invited to


def _mails(sandbox: GoogleSandbox) -> Counter[tuple[str, str]]:
    return Counter((m["recipient"], m["kind"]) for m in sandbox.attendee_mails)


def _tls() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_bundle_path())


def _sandbox_state(sandbox: GoogleSandbox) -> dict[str, Any]:
    response = httpx.get(f"{sandbox.url}/_sandbox/state", verify=_tls())
    response.raise_for_status()
    state: dict[str, Any] = response.json()
    return state


# ------------------------------------------------------------------------------ the organiser's writes


def test_organiser_update_and_cancel_with_all_mail_every_guest_but_the_organiser(
    google_sandbox: GoogleSandbox, client: GoogleClient
) -> None:
    body = event_body(attendees=(USER, COLLEAGUE, OUTSIDER))
    created = client.insert_event(USER, body, send_updates="all")
    client.patch_event(USER, created["id"], {"summary": "Moved"}, send_updates="all")
    client.delete_event(USER, created["id"], send_updates="all")

    assert _mails(google_sandbox) == {
        (COLLEAGUE, "invitation"): 1,
        (COLLEAGUE, "update"): 1,
        (COLLEAGUE, "cancellation"): 1,
        (OUTSIDER, "invitation"): 1,
        (OUTSIDER, "update"): 1,
        (OUTSIDER, "cancellation"): 1,
    }
    assert google_sandbox.mails_to(USER) == 0
    assert google_sandbox.mails_to(COLLEAGUE) == google_sandbox.mails_to(OUTSIDER.upper()) == 3
    state = _sandbox_state(google_sandbox)
    assert state["attendee_mail_counts"] == {COLLEAGUE: 3, OUTSIDER: 3}
    assert len(state["attendee_mails"]) == 6
    assert [e["action"] for e in google_sandbox.invitations_sent] == ["created", "updated", "cancelled"]


def test_external_only_mails_only_guests_without_google_calendar(
    google_sandbox: GoogleSandbox, client: GoogleClient
) -> None:
    created = client.insert_event(USER, event_body(attendees=(COLLEAGUE, GMAIL, OUTSIDER)), send_updates="externalOnly")
    client.patch_event(USER, created["id"], {"location": "Room 4"}, send_updates="externalOnly")
    client.delete_event(USER, created["id"], send_updates="externalOnly")

    assert _mails(google_sandbox) == {
        (OUTSIDER, "invitation"): 1,
        (OUTSIDER, "update"): 1,
        (OUTSIDER, "cancellation"): 1,
    }
    assert _sandbox_state(google_sandbox)["attendee_mail_counts"] == {OUTSIDER: 3}


def test_send_updates_none_mails_nobody(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    created = client.insert_event(USER, event_body(attendees=(COLLEAGUE, OUTSIDER)), send_updates="none")
    client.patch_event(USER, created["id"], {"summary": "Quiet"}, send_updates="none")
    client.delete_event(USER, created["id"], send_updates="none")

    assert google_sandbox.attendee_mails == []
    assert google_sandbox.invitations_sent == []
    assert _sandbox_state(google_sandbox)["attendee_mail_counts"] == {}


def test_an_update_invites_added_guests_and_cancels_for_removed_ones(
    google_sandbox: GoogleSandbox, client: GoogleClient
) -> None:
    created = client.insert_event(USER, event_body(attendees=(COLLEAGUE, OUTSIDER)), send_updates="all")
    client.patch_event(USER, created["id"], {"attendees": [{"email": OUTSIDER}, {"email": GMAIL}]}, send_updates="all")

    assert _mails(google_sandbox) == {
        (COLLEAGUE, "invitation"): 1,
        (COLLEAGUE, "cancellation"): 1,
        (OUTSIDER, "invitation"): 1,
        (OUTSIDER, "update"): 1,
        (GMAIL, "invitation"): 1,
    }


def test_a_cancelling_patch_mails_a_cancellation(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    created = client.insert_event(USER, event_body(attendees=(OUTSIDER,)))
    client.patch_event(USER, created["id"], {"status": "cancelled"}, send_updates="all")
    assert _mails(google_sandbox) == {(OUTSIDER, "cancellation"): 1}


def test_an_answer_sent_with_attendees_omitted_keeps_the_guest_list(
    google_sandbox: GoogleSandbox, client: GoogleClient
) -> None:
    created = client.insert_event(USER, event_body(attendees=(USER, OUTSIDER)))
    answer = client.patch_event(
        USER,
        created["id"],
        {"attendeesOmitted": True, "attendees": [{"email": USER, "responseStatus": "tentative"}]},
        send_updates="all",
    )
    assert {a["email"]: a["responseStatus"] for a in answer["attendees"]} == {
        USER: "tentative",
        OUTSIDER: "needsAction",
    }
    assert _mails(google_sandbox) == {(OUTSIDER, "update"): 1}  # not a cancellation: nobody was removed


# ------------------------------------------------------------------- someone else's meeting, as a guest


@pytest.fixture
def invitation(google_sandbox: GoogleSandbox) -> dict[str, Any]:
    """``USER``'s copy of a meeting ``ORGANISER`` organises, with ``OUTSIDER`` invited too."""
    return google_sandbox.invite(
        USER,
        {**event_body("Navy briefing", attendees=(ORGANISER, USER, OUTSIDER)), "location": "Pier 4"},
        organizer=ORGANISER,
    )


def test_an_invitation_is_the_users_copy_of_a_meeting_someone_else_organises(
    invitation: dict[str, Any], client: GoogleClient
) -> None:
    got = client.get_event(USER, invitation["id"])

    assert got["organizer"] == {"email": ORGANISER}
    attendees = {a["email"]: a for a in got["attendees"]}
    assert attendees[ORGANISER]["organizer"] is True
    assert attendees[USER]["self"] is True and "organizer" not in attendees[USER]
    assert attendees[USER]["responseStatus"] == "needsAction"
    assert invitation["id"] in {e["id"] for e in client.list_events(USER).items}


def test_a_guests_change_to_the_meeting_itself_is_ignored_and_mails_nobody(
    google_sandbox: GoogleSandbox, invitation: dict[str, Any], client: GoogleClient
) -> None:
    before = client.get_event(USER, invitation["id"])
    cursor = client.list_events(USER).next_sync_token

    answer = client.patch_event(
        USER,
        invitation["id"],
        {
            "summary": "My briefing",
            "location": "Home",
            "start": {"dateTime": "2026-12-20T10:00:00Z"},
            "end": {"dateTime": "2026-12-20T11:00:00Z"},
            "attendees": [*before["attendees"], {"email": "crasher@example.com"}],
        },
        etag=before["etag"],
        send_updates="all",
    )

    # 200 with the event as it was: Google neither refuses nor applies a guest's change to shared fields
    assert answer == before
    assert client.get_event(USER, invitation["id"]) == before
    assert client.list_events(USER, sync_token=cursor).items == []
    assert google_sandbox.attendee_mails == [] and google_sandbox.invitations_sent == []
    assert google_sandbox.attendee_copy_writes == [
        {
            "user": USER,
            "event_id": invitation["id"],
            "action": "updated",
            "ignored": ["attendees", "end", "location", "start", "summary"],
        }
    ]


def test_a_guest_answers_and_sets_the_private_properties_of_their_copy(
    google_sandbox: GoogleSandbox, invitation: dict[str, Any], client: GoogleClient
) -> None:
    reminders = {"useDefault": False, "overrides": [{"method": "popup", "minutes": 5}]}
    answer = client.patch_event(
        USER,
        invitation["id"],
        {
            "attendeesOmitted": True,
            "attendees": [{"email": USER, "responseStatus": "accepted", "comment": "On my way"}],
            "colorId": "5",
            "reminders": reminders,
            "extendedProperties": {"private": {"note": "bring badge"}, "shared": {"agenda": "mine"}},
        },
        send_updates="all",
    )

    attendees = {a["email"]: a for a in answer["attendees"]}
    assert set(attendees) == {ORGANISER, USER, OUTSIDER}  # the guest list is not the guest's to cut
    assert attendees[USER]["responseStatus"] == "accepted" and attendees[USER]["comment"] == "On my way"
    assert attendees[OUTSIDER]["responseStatus"] == "needsAction"
    assert answer["colorId"] == "5" and answer["reminders"] == reminders
    assert answer["extendedProperties"] == {"private": {"note": "bring badge"}}
    assert "attendeesOmitted" not in answer
    assert answer["etag"] != invitation["etag"]
    assert google_sandbox.attendee_mails == []
    assert google_sandbox.attendee_copy_writes[-1]["ignored"] == ["extendedProperties.shared"]


def test_a_guest_deleting_removes_only_their_copy_and_mails_nobody(
    google_sandbox: GoogleSandbox, invitation: dict[str, Any], client: GoogleClient
) -> None:
    cursor = client.list_events(USER).next_sync_token

    client.delete_event(USER, invitation["id"], send_updates="all")

    assert client.get_event(USER, invitation["id"])["status"] == "cancelled"
    assert [e["status"] for e in client.list_events(USER, sync_token=cursor).items] == ["cancelled"]
    assert client.list_events(USER).items == []
    assert google_sandbox.attendee_mails == [] and google_sandbox.invitations_sent == []
    assert [w["action"] for w in google_sandbox.attendee_copy_writes] == ["deleted"]


def test_a_guests_full_update_keeps_the_meeting_and_resets_only_their_copy(
    google_sandbox: GoogleSandbox, invitation: dict[str, Any]
) -> None:
    """events.update (PUT), through google-api-python-client: the same rules as patch."""
    from_info: Any = service_account.Credentials.from_service_account_info  # google-auth is untyped
    credentials = from_info(google_sandbox.service_account_info(), scopes=[SCOPE_CALENDAR]).with_subject(USER)
    http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http(ca_certs=ca_bundle_path()))
    calendar = build(
        "calendar",
        "v3",
        http=http,
        static_discovery=True,
        cache_discovery=False,
        client_options={"api_endpoint": f"{google_sandbox.url}/calendar/v3/"},
    )
    try:
        body = {
            **event_body("Renamed by a guest", attendees=(USER,)),
            "attendees": [{"email": USER, "responseStatus": "declined"}],
            "colorId": "3",
        }
        answer = calendar.events().update(calendarId="primary", eventId=invitation["id"], body=body, sendUpdates="all")
        answer = answer.execute()
    finally:
        calendar.close()

    assert answer["summary"] == "Navy briefing" and answer["location"] == "Pier 4"
    assert answer["start"] == invitation["start"]
    assert {a["email"]: a["responseStatus"] for a in answer["attendees"]} == {
        ORGANISER: "needsAction",
        USER: "declined",
        OUTSIDER: "needsAction",
    }
    assert answer["colorId"] == "3"
    assert google_sandbox.attendee_mails == []


def test_guests_can_modify_lets_a_guest_change_the_meeting_for_everyone(
    google_sandbox: GoogleSandbox, client: GoogleClient
) -> None:
    event = {**event_body("Open agenda", attendees=(ORGANISER, USER, OUTSIDER)), "guestsCanModify": True}
    shared = google_sandbox.invite(USER, event, organizer=ORGANISER)

    answer = client.patch_event(USER, shared["id"], {"summary": "Agenda, edited"}, send_updates="all")

    assert answer["summary"] == "Agenda, edited"
    assert answer["organizer"] == {"email": ORGANISER}
    assert _mails(google_sandbox) == {(ORGANISER, "update"): 1, (OUTSIDER, "update"): 1}
    assert google_sandbox.attendee_copy_writes == []


def test_an_invitation_can_be_placed_over_http(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    response = httpx.post(
        f"{google_sandbox.url}/_sandbox/google/invite",
        json={"user": USER, "organizer": ORGANISER, "event": event_body("By admin", attendees=(ORGANISER,))},
        verify=_tls(),
    )
    response.raise_for_status()
    copy = client.get_event(USER, response.json()["id"])
    assert copy["organizer"] == {"email": ORGANISER}
    assert {a["email"] for a in copy["attendees"]} == {ORGANISER, USER}  # the invitee is always a guest
