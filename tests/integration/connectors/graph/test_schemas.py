"""The sandbox reads write bodies as Graph's OData reader does: unknown properties, wrong types and
read-only properties are refused with 400 and Graph's error shape, so a wrong wire format fails here
before it fails against Microsoft (a bare-date ``birthday`` passed every test while the sandbox was lenient)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from concord.adapters.http import PermanentError
from local.sandboxes import seed

if TYPE_CHECKING:
    from concord.adapters.graph import GraphClient
    from local.sandboxes.graph import GraphSandbox

USER = seed.M365_USER
EVENT = {
    "subject": "Schema check",
    "start": {"dateTime": "2026-12-10T10:00:00", "timeZone": "W. Europe Standard Time"},
    "end": {"dateTime": "2026-12-10T11:00:00", "timeZone": "W. Europe Standard Time"},
}


def _refused(call: Any) -> tuple[str | None, str]:
    with pytest.raises(PermanentError) as refused:
        call()
    assert refused.value.status == 400
    return refused.value.code, str(refused.value)


def test_contact_birthday_must_be_a_date_time_offset(graph: GraphClient) -> None:
    folder = graph.ensure_contact_folder(USER)
    code, message = _refused(lambda: graph.create_contact(USER, folder, {"givenName": "Ada", "birthday": "1990-02-03"}))
    assert code == "RequestBodyRead"
    assert "Cannot convert the literal '1990-02-03' to the expected type 'Edm.DateTimeOffset'" in message
    created = graph.create_contact(USER, folder, {"givenName": "Ada", "birthday": "1990-02-03T00:00:00Z"})
    assert created["birthday"] == "1990-02-03T00:00:00Z"


def test_unknown_property_is_refused_even_when_nested(graph: GraphClient) -> None:
    folder = graph.ensure_contact_folder(USER)
    code, message = _refused(lambda: graph.create_contact(USER, folder, {"givenName": "Ada", "nickname": "A"}))
    assert code == "RequestBodyRead"
    assert "The property 'nickname' does not exist on type 'Microsoft.OutlookServices.Contact'" in message
    nested = {"givenName": "Ada", "emailAddresses": [{"address": "ada@example.com", "label": "work"}]}
    code, message = _refused(lambda: graph.create_contact(USER, folder, nested))
    assert "'label' does not exist on type 'Microsoft.OutlookServices.EmailAddress'" in message


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"businessPhones": "+1 555 0100"}, "a 'StartArray' node was expected"),
        ({"businessPhones": None}, "does not allow null values"),
        ({"givenName": 42}, "expected type 'Edm.String'"),
        ({"homeAddress": "1 Main St"}, "a 'StartObject' node was expected"),
    ],
)
def test_wrong_types_in_an_update_are_refused(graph: GraphClient, changes: dict[str, Any], expected: str) -> None:
    folder = graph.ensure_contact_folder(USER)
    contact = graph.list_contacts(USER, folder)[0]
    code, message = _refused(lambda: graph.update_contact(USER, contact["id"], changes))
    assert code == "RequestBodyRead" and expected in message


def test_read_only_properties_are_refused(graph: GraphClient) -> None:
    folder = graph.ensure_contact_folder(USER)
    contact = graph.list_contacts(USER, folder)[0]
    code, message = _refused(lambda: graph.update_contact(USER, contact["id"], {"changeKey": "x"}))
    assert code == "ErrorInvalidPropertySet" and "Set action is invalid for property" in message
    code, _ = _refused(lambda: graph.create_event(USER, {**EVENT, "createdDateTime": "2026-01-01T00:00:00Z"}))
    assert code == "ErrorInvalidPropertySet"


def test_event_types_enums_and_ignored_properties(graph: GraphClient) -> None:
    code, message = _refused(lambda: graph.create_event(USER, {**EVENT, "sensitivity": "secret"}))
    assert code == "RequestBodyRead" and "Cannot convert the literal 'secret'" in message
    code, message = _refused(lambda: graph.create_event(USER, {**EVENT, "isAllDay": "false"}))
    assert "expected type 'Edm.Boolean'" in message
    code, message = _refused(lambda: graph.create_event(USER, {**EVENT, "start": "2026-12-10T10:00:00Z"}))
    assert "a 'StartObject' node was expected" in message
    # Graph drops a written iCalUId, organizer and isOrganizer silently: the calendar's owner organises.
    someone = {"emailAddress": {"name": "Someone", "address": "someone@example.com"}}
    created = graph.create_event(USER, {**EVENT, "iCalUId": "mine", "organizer": someone, "isOrganizer": False})
    assert created["iCalUId"] != "mine" and created["isOrganizer"] is True
    assert created["organizer"]["emailAddress"]["address"] == USER


def test_subscription_body_is_checked(graph: GraphClient, graph_sandbox: GraphSandbox) -> None:
    code, message = _refused(
        lambda: graph._call(  # the client never sends this; the sandbox must still refuse it as Graph does
            "POST",
            graph.graph_url + "/subscriptions",
            json={"changeType": "created", "resource": "users/x/events", "notificationUrl": "https://x", "foo": 1},
        )
    )
    assert code == "RequestBodyRead" and "'foo' does not exist on type 'microsoft.graph.subscription'" in message
