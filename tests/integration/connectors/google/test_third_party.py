"""Faithfulness: Google's own client libraries, which nobody here wrote, against the sandbox.

google-auth signs the domain-wide-delegation JWT and trades it at the sandbox's token endpoint;
google-api-python-client builds every request from its bundled discovery documents (static discovery),
with ``api_endpoint`` standing in for each API's ``rootUrl`` + ``servicePath``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import google_auth_httplib2
import httplib2
import pytest
from google.oauth2 import service_account
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest

from concord.adapters.google import PERSON_FIELDS, SCOPE_CALENDAR, SCOPE_CONTACTS, SCOPE_GMAIL
from local.sandboxes.server import ca_bundle_path

from .conftest import USER, event_body

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from local.sandboxes.google import GoogleSandbox

# discovery rootUrl + servicePath: calendar "https://www.googleapis.com/" + "calendar/v3/", people
# "https://people.googleapis.com/" + "", gmail "https://gmail.googleapis.com/" + "" (its paths start "gmail/v1/").
SERVICE_PATHS = {"calendar": "calendar/v3/", "people": "", "gmail": ""}


@pytest.fixture
def google_api(google_sandbox: GoogleSandbox) -> Iterator[Callable[[str, str, str], Any]]:
    services: list[Any] = []

    def make(api: str, version: str, scope: str) -> Any:
        from_info: Any = service_account.Credentials.from_service_account_info  # google-auth is untyped
        credentials = from_info(google_sandbox.service_account_info(), scopes=[scope]).with_subject(USER)
        http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http(ca_certs=ca_bundle_path()))
        service = build(
            api,
            version,
            http=http,
            static_discovery=True,
            cache_discovery=False,
            client_options={"api_endpoint": f"{google_sandbox.url}/{SERVICE_PATHS[api]}"},
        )
        services.append(service)
        return service

    yield make
    for service in services:
        service.close()


def test_calendar_events_list_insert_patch_delete(
    google_sandbox: GoogleSandbox, google_api: Callable[[str, str, str], Any]
) -> None:
    google_sandbox.seed()
    calendar = google_api("calendar", "v3", SCOPE_CALENDAR)
    events = calendar.events()

    listed = events.list(calendarId="primary", maxResults=1).execute()
    assert len(listed["items"]) == 1 and listed["nextPageToken"]
    rest = events.list(calendarId="primary", maxResults=1, pageToken=listed["nextPageToken"]).execute()
    cursor = rest["nextSyncToken"]

    created = events.insert(calendarId="primary", body=event_body("From googleapiclient"), sendUpdates="none").execute()
    request = events.patch(calendarId="primary", eventId=created["id"], body={"summary": "Patched"})
    request.headers["If-Match"] = created["etag"]
    patched = request.execute()
    assert patched["summary"] == "Patched"

    stale = events.patch(calendarId="primary", eventId=created["id"], body={"summary": "Stale"})
    stale.headers["If-Match"] = created["etag"]
    with pytest.raises(HttpError) as caught:
        stale.execute()
    assert caught.value.resp.status == 412

    replaced = events.update(
        calendarId="primary", eventId=created["id"], body={**event_body("Replaced"), "location": "Room 1"}
    ).execute()
    assert (replaced["summary"], replaced["location"], replaced["iCalUID"]) == (
        "Replaced",
        "Room 1",
        created["iCalUID"],
    )

    assert events.delete(calendarId="primary", eventId=created["id"]).execute() == ""
    changed = events.list(calendarId=USER, syncToken=cursor).execute()
    assert [(e["id"], e["status"]) for e in changed["items"]] == [(created["id"], "cancelled")]

    google_sandbox.expire_sync_tokens()
    with pytest.raises(HttpError) as expired:
        events.list(calendarId="primary", syncToken=changed["nextSyncToken"]).execute()
    assert expired.value.resp.status == 410
    assert expired.value.error_details[0]["reason"] == "fullSyncRequired"


def test_calendar_watch_and_stop(google_sandbox: GoogleSandbox, google_api: Callable[[str, str, str], Any]) -> None:
    events = google_api("calendar", "v3", SCOPE_CALENDAR)
    channel = (
        events.events()
        .watch(calendarId="primary", body={"id": "tp-channel", "type": "web_hook", "address": "http://127.0.0.1:9/x"})
        .execute()
    )
    assert channel["kind"] == "api#channel" and channel["resourceId"]
    events.channels().stop(body={"id": channel["id"], "resourceId": channel["resourceId"]}).execute()


def test_people_connections_list_and_contact_writes(
    google_sandbox: GoogleSandbox, google_api: Callable[[str, str, str], Any]
) -> None:
    google_sandbox.seed()
    people = google_api("people", "v1", SCOPE_CONTACTS)

    first = (
        people.people()
        .connections()
        .list(resourceName="people/me", personFields=PERSON_FIELDS, requestSyncToken=True, pageSize=3)
        .execute()
    )
    assert len(first["connections"]) == 3
    second = (
        people.people()
        .connections()
        .list(
            resourceName="people/me",
            personFields=PERSON_FIELDS,
            requestSyncToken=True,
            pageSize=3,
            pageToken=first["nextPageToken"],
        )
        .execute()
    )
    assert second["nextSyncToken"] and second["totalPeople"] == len(first["connections"]) + len(second["connections"])

    created = people.people().createContact(body={"names": [{"givenName": "Third", "familyName": "Party"}]}).execute()
    updated = (
        people.people()
        .updateContact(
            resourceName=created["resourceName"],
            updatePersonFields="emailAddresses",
            body={"etag": created["etag"], "emailAddresses": [{"value": "tp@example.org"}]},
        )
        .execute()
    )
    assert updated["emailAddresses"][0]["value"] == "tp@example.org"
    groups = people.contactGroups().list().execute()["contactGroups"]
    sync_group = next(g for g in groups if g["name"] == "Salesforce Sync")
    people.contactGroups().members().modify(
        resourceName=sync_group["resourceName"], body={"resourceNamesToAdd": [created["resourceName"]]}
    ).execute()
    people.people().deleteContact(resourceName=created["resourceName"]).execute()

    changed = (
        people.people()
        .connections()
        .list(
            resourceName="people/me",
            personFields=PERSON_FIELDS,
            requestSyncToken=True,  # "all other request parameters must match the first call"
            syncToken=second["nextSyncToken"],
        )
        .execute()
    )
    assert changed["connections"][-1]["metadata"]["deleted"] is True

    google_sandbox.expire_sync_tokens()
    with pytest.raises(HttpError) as expired:
        people.people().connections().list(
            resourceName="people/me", personFields="names", syncToken=changed["nextSyncToken"]
        ).execute()
    assert expired.value.resp.status == 400
    assert "Sync token is expired" in expired.value.reason


def test_gmail_history_messages_and_watch(
    google_sandbox: GoogleSandbox, google_api: Callable[[str, str, str], Any]
) -> None:
    gmail = google_api("gmail", "v1", SCOPE_GMAIL)
    users = gmail.users()
    watch = users.watch(userId="me", body={"topicName": "projects/p/topics/t", "labelIds": ["INBOX"]}).execute()
    sent = google_sandbox.deliver_email(USER, sender="ada@analytical.example", to=[USER], subject="Via third party")

    history = (
        users.history().list(userId="me", startHistoryId=watch["historyId"], historyTypes="messageAdded").execute()
    )
    assert [r["messagesAdded"][0]["message"]["id"] for r in history["history"]] == [sent["id"]]
    assert history["historyId"] == sent["historyId"]

    message = (
        users.messages()
        .get(userId="me", id=sent["id"], format="metadata", metadataHeaders=["From", "Subject"])
        .execute()
    )
    assert {h["name"] for h in message["payload"]["headers"]} == {"From", "Subject"}
    assert users.messages().list(userId=USER).execute()["messages"] == [
        {"id": sent["id"], "threadId": sent["threadId"]}
    ]

    google_sandbox.expire_history()
    with pytest.raises(HttpError) as too_old:
        users.history().list(userId="me", startHistoryId=watch["historyId"]).execute()
    assert too_old.value.resp.status == 404
    users.stop(userId="me").execute()


def test_gmail_http_batch_as_googleapiclient_sends_it(
    google_sandbox: GoogleSandbox, google_api: Callable[[str, str, str], Any]
) -> None:
    """The endpoint a normal Gmail sync needs to read many messages: the discovery document's ``batchPath``.
    googleapiclient joins it to the real ``rootUrl`` (not ``api_endpoint``), so the test names the sandbox's."""
    gmail = google_api("gmail", "v1", SCOPE_GMAIL)
    sent = [
        google_sandbox.deliver_email(USER, sender="ada@a.example", to=[USER], subject=f"B{i}")["id"] for i in range(3)
    ]
    gmail.users().getProfile(userId="me").execute()  # credentials hold a token, refreshed over the sandbox's CA
    answers: dict[str, Any] = {}

    def collect(request_id: str, response: Any, exception: Any) -> None:
        answers[request_id] = exception or response

    batch = BatchHttpRequest(callback=collect, batch_uri=f"{google_sandbox.url}/batch/gmail/v1")
    for message_id in [*sent, "0123456789abcdef"]:
        batch.add(
            gmail.users().messages().get(userId="me", id=message_id, format="metadata", metadataHeaders=["Subject"]),
            request_id=message_id,
        )
    batch.execute()

    assert [answers[m]["payload"]["headers"] for m in sent] == [
        [{"name": "Subject", "value": f"B{i}"}] for i in range(3)
    ]
    assert isinstance(answers["0123456789abcdef"], HttpError) and answers["0123456789abcdef"].resp.status == 404
