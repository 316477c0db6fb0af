"""What each transform puts on the wire, per system, against the type each API documents.

The round-trip tests (read(write(v)) == v) cannot catch a wrong wire type: our own reader is lenient and
reads back what our writer wrote. These tests assert the exact JSON instead, taken from the documentation:

- Microsoft Graph contact: ``birthday`` is an ``Edm.DateTimeOffset`` ("ISO 8601, always UTC, e.g.
  ``2014-01-01T00:00:00Z``"); ``emailAddresses`` ``[{address, name}]``; ``businessAddress`` a
  ``physicalAddress`` ``{street, city, state, postalCode, countryOrRegion}``.
- Graph event: ``start``/``end`` a ``dateTimeTimeZone`` ``{dateTime: "2017-08-29T04:00:00.0000000",
  timeZone}``; ``body`` an ``itemBody`` ``{contentType: text|html, content}``; ``sensitivity`` one of
  ``normal, personal, private, confidential``; ``showAs`` one of ``free, tentative, busy, oof,
  workingElsewhere, unknown``; ``attendees`` ``[{emailAddress: {address, name}, type}]``.
- Google People: ``birthdays[].date`` a ``Date`` ``{year, month, day}`` (year 0/absent: unknown);
  ``addresses[] {streetAddress, city, region, postalCode, country}``; ``phoneNumbers[] {value, type}``.
- Google Calendar: ``start``/``end`` an ``EventDateTime`` ``{dateTime (RFC 3339), timeZone}`` or
  ``{date: "yyyy-mm-dd"}``; ``visibility`` ``default, public, private, confidential``; ``transparency``
  ``opaque, transparent``. ``events.patch`` merges ``start``: switching between timed and all-day needs the
  other form set to ``null`` (Google's answer on apps-api-issues 3110).
- Salesforce (REST API "Valid Date and DateTime Formats"): ``date`` ``yyyy-MM-dd``; ``dateTime``
  ``yyyy-MM-ddTHH:mm:ss.SSSZ`` or ``…SSS+/-HH:mm`` (``+0000`` without the colon is not a documented form);
  Event ``ShowAs`` picklist ``Busy, Free, OutOfOffice``; ``IsPrivate``/``IsAllDayEvent`` booleans.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from concord.core import default_mapping
from concord.core.paths import parse_path
from concord.core.transforms import REGISTRY, Context, Rule, get_transform

if TYPE_CHECKING:
    from concord.core.mapping import FieldRule

ADDRESS = ("1 Main St\nSuite 2", "Springfield", "IL", "62701", "USA")
GRAPH_ADDRESS = {
    "street": "1 Main St\nSuite 2",
    "city": "Springfield",
    "state": "IL",
    "postalCode": "62701",
    "countryOrRegion": "USA",
}
GOOGLE_ADDRESS = {
    "streetAddress": "1 Main St\nSuite 2",
    "city": "Springfield",
    "region": "IL",
    "postalCode": "62701",
    "country": "USA",
}

# (kind, Salesforce object, field name in the default mapping, provider, canonical value, expected patch)
MAILBOX_WIRE: list[tuple[str, str, str, str, Any, dict[str, Any]]] = [
    # contacts, Graph
    ("contact", "Contact", "first_name", "graph", "Ada", {"givenName": "Ada"}),
    ("contact", "Contact", "last_name", "graph", "Lovelace", {"surname": "Lovelace"}),
    ("contact", "Contact", "email", "graph", "ada@example.com", {"emailAddresses": [{"address": "ada@example.com"}]}),
    ("contact", "Contact", "business_phone", "graph", "+14155550100", {"businessPhones": ["+1 415-555-0100"]}),
    ("contact", "Contact", "mobile_phone", "graph", "+14155550100", {"mobilePhone": "+1 415-555-0100"}),
    ("contact", "Contact", "home_phone", "graph", "+442079460958", {"homePhones": ["+44 20 7946 0958"]}),
    ("contact", "Contact", "title", "graph", "CTO", {"jobTitle": "CTO"}),
    ("contact", "Contact", "department", "graph", "R&D", {"department": "R&D"}),
    ("contact", "Contact", "company", "graph", "Engines Ltd", {"companyName": "Engines Ltd"}),
    ("contact", "Contact", "mailing_address", "graph", ADDRESS, {"businessAddress": GRAPH_ADDRESS}),
    ("contact", "Contact", "birthday", "graph", "1990-02-03", {"birthday": "1990-02-03T00:00:00Z"}),
    ("contact", "Contact", "birthday", "graph", None, {"birthday": None}),
    # contacts, Google People
    ("contact", "Contact", "first_name", "google", "Ada", {"names": [{"givenName": "Ada"}]}),
    ("contact", "Contact", "last_name", "google", "Lovelace", {"names": [{"familyName": "Lovelace"}]}),
    ("contact", "Contact", "email", "google", "ada@example.com", {"emailAddresses": [{"value": "ada@example.com"}]}),
    (
        "contact",
        "Contact",
        "business_phone",
        "google",
        "+14155550100",
        {"phoneNumbers": [{"type": "work", "value": "+1 415-555-0100"}]},
    ),
    (
        "contact",
        "Contact",
        "mobile_phone",
        "google",
        "+14155550100",
        {"phoneNumbers": [{"type": "mobile", "value": "+1 415-555-0100"}]},
    ),
    ("contact", "Contact", "title", "google", "CTO", {"organizations": [{"title": "CTO"}]}),
    ("contact", "Contact", "department", "google", "R&D", {"organizations": [{"department": "R&D"}]}),
    ("contact", "Contact", "company", "google", "Engines Ltd", {"organizations": [{"name": "Engines Ltd"}]}),
    ("contact", "Contact", "mailing_address", "google", ADDRESS, {"addresses": [GOOGLE_ADDRESS]}),
    (
        "contact",
        "Contact",
        "birthday",
        "google",
        "1990-02-03",
        {"birthdays": [{"date": {"year": 1990, "month": 2, "day": 3}}]},
    ),
    # a birthday whose year nobody knows (read from Google as 1604): People's Date without a year
    ("contact", "Contact", "birthday", "google", "1604-02-29", {"birthdays": [{"date": {"month": 2, "day": 29}}]}),
    # events, Graph
    ("event", "Event", "subject", "graph", "Review", {"subject": "Review"}),
    ("event", "Event", "all_day", "graph", True, {"isAllDay": True}),
    (
        "event",
        "Event",
        "start",
        "graph",
        "2026-03-10T16:00:00Z",
        {"start": {"dateTime": "2026-03-10T16:00:00.0000000", "timeZone": "UTC"}},
    ),
    (
        "event",
        "Event",
        "start",
        "graph",
        "2026-03-10",
        {"start": {"dateTime": "2026-03-10T00:00:00.0000000", "timeZone": "UTC"}},
    ),
    (
        "event",
        "Event",
        "end",
        "graph",
        "2026-03-11",
        {"end": {"dateTime": "2026-03-11T00:00:00.0000000", "timeZone": "UTC"}},
    ),
    ("event", "Event", "location", "graph", "Room 4", {"location": {"displayName": "Room 4"}}),
    (
        "event",
        "Event",
        "description",
        "graph",
        "Agenda\nNumbers",
        {"body": {"contentType": "text", "content": "Agenda\nNumbers"}},
    ),
    ("event", "Event", "private", "graph", True, {"sensitivity": "private"}),
    ("event", "Event", "private", "graph", False, {"sensitivity": "normal"}),
    ("event", "Event", "show_as", "graph", "busy", {"showAs": "busy"}),
    ("event", "Event", "show_as", "graph", "free", {"showAs": "free"}),
    ("event", "Event", "show_as", "graph", "tentative", {"showAs": "tentative"}),
    ("event", "Event", "show_as", "graph", "oof", {"showAs": "oof"}),
    ("event", "Event", "show_as", "graph", "workingelsewhere", {"showAs": "workingElsewhere"}),
    (
        "event",
        "Event",
        "attendees",
        "graph",
        ("a@x.com", "b@y.org"),
        {
            "attendees": [
                {"emailAddress": {"address": "a@x.com"}, "type": "required"},
                {"emailAddress": {"address": "b@y.org"}, "type": "required"},
            ]
        },
    ),
    # events, Google Calendar
    ("event", "Event", "subject", "google", "Review", {"summary": "Review"}),
    ("event", "Event", "all_day", "google", True, {}),  # Google has no flag: start.date makes it all-day
    (
        "event",
        "Event",
        "start",
        "google",
        "2026-03-10T16:00:00Z",
        {"start": {"dateTime": "2026-03-10T16:00:00Z", "timeZone": "UTC", "date": None}},
    ),
    ("event", "Event", "start", "google", "2026-03-10", {"start": {"date": "2026-03-10", "dateTime": None}}),
    ("event", "Event", "end", "google", "2026-03-11", {"end": {"date": "2026-03-11", "dateTime": None}}),
    ("event", "Event", "location", "google", "Room 4", {"location": "Room 4"}),
    ("event", "Event", "description", "google", "Agenda\nNumbers", {"description": "Agenda\nNumbers"}),
    ("event", "Event", "private", "google", True, {"visibility": "private"}),
    ("event", "Event", "private", "google", False, {"visibility": "default"}),
    ("event", "Event", "show_as", "google", "busy", {"transparency": "opaque"}),
    ("event", "Event", "show_as", "google", "free", {"transparency": "transparent"}),
    ("event", "Event", "show_as", "google", "tentative", {"transparency": "opaque"}),
    ("event", "Event", "attendees", "google", ("a@x.com",), {"attendees": [{"email": "a@x.com"}]}),
]

# (kind, Salesforce object, field, provider of the context, canonical value, expected Salesforce patch)
SALESFORCE_WIRE: list[tuple[str, str, str, Any, dict[str, Any]]] = [
    ("contact", "Contact", "first_name", "Ada", {"FirstName": "Ada"}),
    ("contact", "Contact", "email", "ada@example.com", {"Email": "ada@example.com"}),
    ("contact", "Contact", "business_phone", "+14155550100", {"Phone": "+1 415-555-0100"}),
    ("contact", "Contact", "home_phone", "call me", {"HomePhone": "call me"}),
    (
        "contact",
        "Contact",
        "mailing_address",
        ADDRESS,
        {
            "MailingStreet": "1 Main St\nSuite 2",
            "MailingCity": "Springfield",
            "MailingState": "IL",
            "MailingPostalCode": "62701",
            "MailingCountry": "USA",
        },
    ),
    ("contact", "Contact", "birthday", "1990-02-03", {"Birthdate": "1990-02-03"}),
    ("contact", "Lead", "company", "Engines Ltd", {"Company": "Engines Ltd"}),
    (
        "contact",
        "Lead",
        "mailing_address",
        ("", "Paris", "", "", "France"),
        {"Street": None, "City": "Paris", "State": None, "PostalCode": None, "Country": "France"},
    ),
    ("event", "Event", "subject", "Review", {"Subject": "Review"}),
    ("event", "Event", "all_day", True, {"IsAllDayEvent": True}),
    ("event", "Event", "start", "2026-03-10T16:00:00Z", {"StartDateTime": "2026-03-10T16:00:00.000Z"}),
    ("event", "Event", "end", "2026-03-10T17:30:00Z", {"EndDateTime": "2026-03-10T17:30:00.000Z"}),
    ("event", "Event", "start", "2026-03-10", {"StartDateTime": "2026-03-10T00:00:00.000Z"}),
    # Salesforce holds an all-day event's last day; the mailboxes the day after it
    ("event", "Event", "end", "2026-03-11", {"EndDateTime": "2026-03-10T00:00:00.000Z"}),
    ("event", "Event", "location", "Room 4", {"Location": "Room 4"}),
    ("event", "Event", "description", "Agenda\nNumbers", {"Description": "Agenda\nNumbers"}),
    ("event", "Event", "private", True, {"IsPrivate": True}),
    ("event", "Event", "private", False, {"IsPrivate": False}),
    ("event", "Event", "show_as", "busy", {"ShowAs": "Busy"}),
    ("event", "Event", "show_as", "free", {"ShowAs": "Free"}),
    ("event", "Event", "show_as", "oof", {"ShowAs": "OutOfOffice"}),
    ("event", "Event", "show_as", "tentative", {"ShowAs": "Busy"}),
    ("event", "Event", "show_as", "workingelsewhere", {"ShowAs": "Busy"}),
    ("event", "Event", "ical_uid", "040000008200E00074C5", {"Concord_ICalUID__c": "040000008200E00074C5"}),
    ("email", "Task", "subject", "Re: terms", {"Subject": "Re: terms"}),
    ("email", "Task", "date", "2026-01-05", {"ActivityDate": "2026-01-05"}),
    ("email", "Task", "snippet", "Hello\nthere", {"Description": "Hello\nthere"}),
]


def _rule(kind: str, sobject: str, field: str, provider: str) -> FieldRule:
    om = default_mapping().compile(kind, sobject, provider)  # type: ignore[arg-type]
    return next(rule for rule in om.fields if rule.name == field)


def _on_the_wire(patch: dict[str, Any]) -> dict[str, Any]:
    """The patch as the HTTP client sends it (JSON), so a tuple or a date object cannot pass for JSON."""
    decoded: dict[str, Any] = json.loads(json.dumps(patch))
    return decoded


@pytest.mark.parametrize(
    ("kind", "sobject", "field", "provider", "value", "expected"),
    MAILBOX_WIRE,
    ids=[f"{row[3]}-{row[2]}-{row[4]}" for row in MAILBOX_WIRE],
)
def test_mailbox_writes_have_the_documented_wire_type(
    kind: str, sobject: str, field: str, provider: str, value: Any, expected: dict[str, Any]
) -> None:
    rule = _rule(kind, sobject, field, provider)
    ctx = Context(provider=provider, sobject=sobject)  # type: ignore[arg-type]
    patch: dict[str, Any] = {}
    rule.transform.write_mb(rule, value, patch, None, ctx)
    assert _on_the_wire(patch) == expected


@pytest.mark.parametrize(
    ("kind", "sobject", "field", "value", "expected"),
    SALESFORCE_WIRE,
    ids=[f"{row[1]}-{row[2]}-{row[3]}" for row in SALESFORCE_WIRE],
)
@pytest.mark.parametrize("provider", ["graph", "google"])
def test_salesforce_writes_have_the_documented_wire_type(
    kind: str, sobject: str, field: str, value: Any, expected: dict[str, Any], provider: str
) -> None:
    rule = _rule(kind, sobject, field, provider)
    assert not rule.relates
    ctx = Context(provider=provider, sobject=sobject)  # type: ignore[arg-type]
    patch: dict[str, Any] = {}
    rule.transform.write_sf(rule, value, patch, None, ctx)
    assert _on_the_wire(patch) == expected


def test_relations_name_what_the_worker_resolves() -> None:
    """Attendees and a Contact's company are not field patches: the ``relate`` body is the wire contract
    with the worker."""
    attendees = _rule("event", "Event", "attendees", "graph")
    ctx = Context(provider="graph", sobject="Event")
    assert attendees.relates
    body = attendees.transform.relation(attendees, ("a@x.com", "b@y.org"), ("b@y.org", "c@z.net"), ctx)
    assert body == {
        "relation": "EventRelations",
        "emails": ["b@y.org", "c@z.net"],
        "add": ["c@z.net"],
        "remove": ["a@x.com"],
    }
    company = _rule("contact", "Contact", "company", "graph")
    assert company.relates
    assert company.transform.relation(company, None, "Engines Ltd", ctx) == {
        "relation": "Account",
        "field": "AccountId",
        "name": "Engines Ltd",
    }


def _plain_rule(transform: str, sf: list[str], mb: str) -> Rule:
    return Rule(transform, tuple(parse_path(path) for path in sf), parse_path(mb), {})


def test_transforms_outside_the_default_mapping_write_documented_types() -> None:
    ctx = Context(provider="graph", sobject="Contact")
    flag = _plain_rule("bool", ["DoNotCall"], "isFlagged")
    patch: dict[str, Any] = {}
    get_transform("bool").write_sf(flag, True, patch, None, ctx)
    get_transform("bool").write_mb(flag, False, patch, None, ctx)
    assert _on_the_wire(patch) == {"DoNotCall": True, "isFlagged": False}

    name = Rule("name_join", (parse_path("FirstName"), parse_path("LastName")), parse_path("displayName"), {})
    patch = {}
    get_transform("name_join").write_sf(name, "Ada King Lovelace", patch, None, ctx)
    get_transform("name_join").write_mb(name, "Ada King Lovelace", patch, None, ctx)
    assert _on_the_wire(patch) == {"FirstName": "Ada King", "LastName": "Lovelace", "displayName": "Ada King Lovelace"}


def test_every_registered_transform_is_in_a_wire_table() -> None:
    """A new transform needs a row above: its output is checked against the API's type, not our reader."""
    covered = {
        _rule(kind, sobject, field, provider).transform.name for kind, sobject, field, provider, *_ in MAILBOX_WIRE
    }
    covered |= {_rule(kind, sobject, field, "graph").transform.name for kind, sobject, field, *_ in SALESFORCE_WIRE}
    covered |= {"bool", "name_join", "name_split"}  # test_transforms_outside_the_default_mapping_…
    covered |= {"participants", "attendees", "account_name"}  # relates: test_relations_name_what_…
    assert set(REGISTRY) <= covered
