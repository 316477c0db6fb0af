"""The sandbox refuses request bodies the real services refuse: unknown properties and wrong types, with
Google's status, error shape and messages (People: gRPC-transcoding ``Invalid JSON payload received`` /
``Invalid value at``; Calendar: 400 ``invalid``)."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from concord.adapters.google import SCOPE_CALENDAR, SCOPE_CONTACTS
from concord.adapters.http import ConflictError, PermanentError
from local.sandboxes.server import ca_bundle_path

from .conftest import USER, event_body

if TYPE_CHECKING:
    from concord.adapters.google import GoogleClient
    from local.sandboxes.google import GoogleSandbox


def _raw(sandbox: GoogleSandbox, client: GoogleClient, scope: str, method: str, path: str, **kwargs: Any) -> Any:
    token = client._tokens.get(USER, scope)
    with httpx.Client(verify=ssl.create_default_context(cafile=ca_bundle_path())) as http:
        return http.request(method, sandbox.url + path, headers={"Authorization": f"Bearer {token}"}, **kwargs)


def test_a_person_with_an_unknown_property_is_refused_as_people_does(
    google_sandbox: GoogleSandbox, client: GoogleClient
) -> None:
    answer = _raw(
        google_sandbox, client, SCOPE_CONTACTS, "POST", "/v1/people:createContact", json={"names": [], "x": 1}
    )

    assert answer.status_code == 400
    error = answer.json()["error"]
    message = "Invalid JSON payload received. Unknown name \"x\" at 'person': Cannot find field."
    assert (error["code"], error["status"], error["message"]) == (400, "INVALID_ARGUMENT", message)
    assert error["details"] == [
        {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": "person", "description": message}],
        }
    ]
    assert client.list_contacts(USER).items == []


def test_a_birthday_is_a_date_message_not_a_string(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    with pytest.raises(PermanentError) as caught:
        client.create_contact(USER, {"names": [{"givenName": "Ada"}], "birthdays": [{"date": "1990-02-03"}]})
    assert caught.value.status == 400
    assert "Invalid value at 'person.birthdays[0].date' (type.googleapis.com/google.type.Date)" in str(caught.value)

    created = client.create_contact(
        USER, {"names": [{"givenName": "Ada"}], "birthdays": [{"date": {"year": 1990, "month": 2, "day": 3}}]}
    )
    assert created["birthdays"][0]["date"] == {"year": 1990, "month": 2, "day": 3}


@pytest.mark.parametrize(
    ("person", "fragment"),
    [
        ({"emailAddresses": {"value": "a@b.example"}}, "person.email_addresses"),
        ({"names": [{"givenName": 5}]}, "person.names[0].given_name' (TYPE_STRING), 5"),
        ({"names": [{"givenName": "A", "nick": "B"}]}, "Unknown name \"nick\" at 'person.names[0]'"),
        ({"birthdays": [{"date": {"year": 1990, "month": 2, "day": 3, "era": 1}}]}, 'Unknown name "era"'),
    ],
)
def test_wrong_person_shapes_are_refused(
    google_sandbox: GoogleSandbox, client: GoogleClient, person: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(PermanentError) as caught:
        client.create_contact(USER, person)
    assert caught.value.status == 400 and fragment in str(caught.value)


def test_update_person_fields_must_be_updatable_and_the_etag_current(
    google_sandbox: GoogleSandbox, client: GoogleClient
) -> None:
    created = client.create_contact(USER, {"names": [{"givenName": "Grace"}]})
    with pytest.raises(PermanentError, match='Invalid updatePersonFields mask path: "metadata"'):
        client.update_contact(USER, created["resourceName"], {"etag": created["etag"]}, ["metadata"])
    with pytest.raises(PermanentError, match="Invalid updatePersonFields mask path"):
        client.update_contact(USER, created["resourceName"], {"etag": created["etag"]}, ["nonsense"])

    updated = client.update_contact(
        USER, created["resourceName"], {"etag": created["etag"], "names": [{"givenName": "Grace H"}]}, ["names"]
    )
    with pytest.raises(ConflictError):
        client.update_contact(
            USER, created["resourceName"], {"etag": created["etag"], "names": [{"givenName": "Stale"}]}, ["names"]
        )
    assert updated["etag"] != created["etag"]


def test_a_contact_group_with_an_unknown_property_is_refused(
    google_sandbox: GoogleSandbox, client: GoogleClient
) -> None:
    answer = _raw(
        google_sandbox,
        client,
        SCOPE_CONTACTS,
        "POST",
        "/v1/contactGroups",
        json={"contactGroup": {"name": "Sync", "colour": "red"}},
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == (
        "Invalid JSON payload received. Unknown name \"colour\" at 'contact_group': Cannot find field."
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"subject": "Outlook's word"}, 'Invalid JSON payload received. Unknown name "subject": Cannot find field.'),
        (
            {"start": {"dateTime": "2026-12-10T10:00:00Z", "tz": "UTC"}},
            "Invalid JSON payload received. Unknown name \"tz\" at 'start': Cannot find field.",
        ),
        ({"summary": 5}, "Invalid value for: 5 is not a valid value"),
        ({"attendees": {"email": "a@b.example"}}, "Invalid value for: {'email': 'a@b.example'} is not a valid value"),
        ({"guestsCanModify": "yes"}, "Invalid value for: 'yes' is not a valid value"),
    ],
)
def test_calendar_refuses_unknown_properties_and_wrong_types(
    google_sandbox: GoogleSandbox, client: GoogleClient, change: dict[str, Any], message: str
) -> None:
    answer = _raw(
        google_sandbox,
        client,
        SCOPE_CALENDAR,
        "POST",
        "/calendar/v3/calendars/primary/events",
        json={**event_body(), **change},
    )
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["message"] == message
    assert error["errors"] == [{"domain": "global", "reason": "invalid", "message": message}]

    created = client.insert_event(USER, event_body())
    with pytest.raises(PermanentError, match="Invalid"):
        client.patch_event(USER, created["id"], change)


def test_a_well_formed_event_with_every_field_concord_writes_is_accepted(
    google_sandbox: GoogleSandbox, client: GoogleClient
) -> None:
    event = {
        **event_body("Full", attendees=("ada@analytical.example",)),
        "description": "Agenda",
        "location": "Room 1",
        "visibility": "private",
        "transparency": "opaque",
        "status": "confirmed",
        "extendedProperties": {"private": {"concordId": "00U1"}},
        "reminders": {"useDefault": False, "overrides": [{"method": "popup", "minutes": 10}]},
    }
    assert client.insert_event(USER, event)["extendedProperties"] == {"private": {"concordId": "00U1"}}
