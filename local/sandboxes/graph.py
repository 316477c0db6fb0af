"""A Microsoft Graph (v1.0) and Entra ID token endpoint stand-in: mailboxes in memory, delta, $batch,
subscriptions with the validation handshake, change and lifecycle notifications.

One server plays both hosts: the token endpoint at ``/{tenant}/oauth2/v2.0/token`` (login.microsoftonline.com)
and Graph under ``/v1.0/`` (graph.microsoft.com). Point a client's ``login_url`` at ``sandbox.url`` and
its ``graph_url`` at ``sandbox.graph_url``.

Beyond the shared fault switches: :meth:`GraphSandbox.invalidate_delta_tokens` (every delta/skip token
answers 410 from then on), :meth:`GraphSandbox.expire_subscription`, :meth:`GraphSandbox.lifecycle`
(``reauthorizationRequired``, ``subscriptionRemoved``, ``missed``), each also on the admin endpoint:
``POST /_sandbox/delta/invalidate``, ``POST /_sandbox/subscriptions/{id}/expire``,
``POST /_sandbox/subscriptions/{id}/lifecycle {"event": "missed"}``.

Faults after commit: :meth:`GraphSandbox.fail_after_commit` (the next writes commit, then answer a 5xx or
drop the connection; ``POST /_sandbox/faults/after_commit {"calls": 1, "status": 503}`` or ``{"drop": true}``)
and :meth:`GraphSandbox.drop_batch_answers` (``$batch`` sub-requests run but go unanswered;
``POST /_sandbox/faults/batch_missing {"count": 2}``).

Records for tests: :attr:`GraphSandbox.attendee_mails` (one entry per mail an attendee would get from an
organiser's create, update or delete) and :attr:`GraphSandbox.attendee_copy_writes` (writes to meetings the
user does not organise), both also in ``GET /_sandbox/state``. Mail: the ``inbox`` and ``sentitems``
folders, listed and by delta; :meth:`GraphSandbox.put_message` delivers one.

Not modelled: recurrence expansion in calendarView (a series master is one item), attendees' own
mailboxes, sending mail, ``$select``, rich notifications (resource data), encryption certificates.

Run it with seed data: ``PYTHONPATH=. .venv/bin/python -m local.sandboxes.graph --port 8443``
(it needs nothing from ``concord``).
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import random
import re
import secrets
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlencode, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from local.sandboxes import seed
from local.sandboxes.server import HttpError, Pusher, Request, Response, Sandbox, ca_bundle_path, route

#: The Windows time-zone names Graph accepts in ``dateTimeTimeZone.timeZone`` and the IANA zone each means:
#: https://learn.microsoft.com/en-us/graph/api/resources/datetimetimezone lists the names, and CLDR's
#: ``windowsZones.xml`` (territory "001") gives the zone. The sandbox carries its own copy on purpose: a
#: stand-in that borrowed the product's resolver would agree with the product's mistakes.
WINDOWS_ZONES: dict[str, str] = {
    "Dateline Standard Time": "Etc/GMT+12",
    "UTC-11": "Etc/GMT+11",
    "Aleutian Standard Time": "America/Adak",
    "Hawaiian Standard Time": "Pacific/Honolulu",
    "Marquesas Standard Time": "Pacific/Marquesas",
    "Alaskan Standard Time": "America/Anchorage",
    "UTC-09": "Etc/GMT+9",
    "Pacific Standard Time (Mexico)": "America/Tijuana",
    "UTC-08": "Etc/GMT+8",
    "Pacific Standard Time": "America/Los_Angeles",
    "US Mountain Standard Time": "America/Phoenix",
    "Mountain Standard Time (Mexico)": "America/Mazatlan",
    "Mountain Standard Time": "America/Denver",
    "Yukon Standard Time": "America/Whitehorse",
    "Central America Standard Time": "America/Guatemala",
    "Central Standard Time": "America/Chicago",
    "Easter Island Standard Time": "Pacific/Easter",
    "Central Standard Time (Mexico)": "America/Mexico_City",
    "Canada Central Standard Time": "America/Regina",
    "SA Pacific Standard Time": "America/Bogota",
    "Eastern Standard Time (Mexico)": "America/Cancun",
    "Eastern Standard Time": "America/New_York",
    "Haiti Standard Time": "America/Port-au-Prince",
    "Cuba Standard Time": "America/Havana",
    "US Eastern Standard Time": "America/Indianapolis",
    "Turks And Caicos Standard Time": "America/Grand_Turk",
    "Paraguay Standard Time": "America/Asuncion",
    "Atlantic Standard Time": "America/Halifax",
    "Venezuela Standard Time": "America/Caracas",
    "Central Brazilian Standard Time": "America/Cuiaba",
    "SA Western Standard Time": "America/La_Paz",
    "Pacific SA Standard Time": "America/Santiago",
    "Newfoundland Standard Time": "America/St_Johns",
    "Tocantins Standard Time": "America/Araguaina",
    "E. South America Standard Time": "America/Sao_Paulo",
    "SA Eastern Standard Time": "America/Cayenne",
    "Argentina Standard Time": "America/Buenos_Aires",
    "Greenland Standard Time": "America/Godthab",
    "Montevideo Standard Time": "America/Montevideo",
    "Magallanes Standard Time": "America/Punta_Arenas",
    "Saint Pierre Standard Time": "America/Miquelon",
    "Bahia Standard Time": "America/Bahia",
    "UTC-02": "Etc/GMT+2",
    "Mid-Atlantic Standard Time": "Etc/GMT+2",
    "Azores Standard Time": "Atlantic/Azores",
    "Cape Verde Standard Time": "Atlantic/Cape_Verde",
    "UTC": "Etc/UTC",
    "Coordinated Universal Time": "Etc/UTC",
    "GMT Standard Time": "Europe/London",
    "Greenwich Standard Time": "Atlantic/Reykjavik",
    "Sao Tome Standard Time": "Africa/Sao_Tome",
    "Morocco Standard Time": "Africa/Casablanca",
    "W. Europe Standard Time": "Europe/Berlin",
    "Central Europe Standard Time": "Europe/Budapest",
    "Romance Standard Time": "Europe/Paris",
    "Central European Standard Time": "Europe/Warsaw",
    "W. Central Africa Standard Time": "Africa/Lagos",
    "Jordan Standard Time": "Asia/Amman",
    "GTB Standard Time": "Europe/Bucharest",
    "Middle East Standard Time": "Asia/Beirut",
    "Egypt Standard Time": "Africa/Cairo",
    "E. Europe Standard Time": "Europe/Chisinau",
    "Syria Standard Time": "Asia/Damascus",
    "West Bank Standard Time": "Asia/Hebron",
    "South Africa Standard Time": "Africa/Johannesburg",
    "FLE Standard Time": "Europe/Kiev",
    "Israel Standard Time": "Asia/Jerusalem",
    "South Sudan Standard Time": "Africa/Juba",
    "Kaliningrad Standard Time": "Europe/Kaliningrad",
    "Sudan Standard Time": "Africa/Khartoum",
    "Libya Standard Time": "Africa/Tripoli",
    "Namibia Standard Time": "Africa/Windhoek",
    "Arabic Standard Time": "Asia/Baghdad",
    "Turkey Standard Time": "Europe/Istanbul",
    "Arab Standard Time": "Asia/Riyadh",
    "Belarus Standard Time": "Europe/Minsk",
    "Russian Standard Time": "Europe/Moscow",
    "E. Africa Standard Time": "Africa/Nairobi",
    "Volgograd Standard Time": "Europe/Volgograd",
    "Iran Standard Time": "Asia/Tehran",
    "Arabian Standard Time": "Asia/Dubai",
    "Astrakhan Standard Time": "Europe/Astrakhan",
    "Azerbaijan Standard Time": "Asia/Baku",
    "Russia Time Zone 3": "Europe/Samara",
    "Mauritius Standard Time": "Indian/Mauritius",
    "Saratov Standard Time": "Europe/Saratov",
    "Georgian Standard Time": "Asia/Tbilisi",
    "Caucasus Standard Time": "Asia/Yerevan",
    "Afghanistan Standard Time": "Asia/Kabul",
    "West Asia Standard Time": "Asia/Tashkent",
    "Qyzylorda Standard Time": "Asia/Qyzylorda",
    "Ekaterinburg Standard Time": "Asia/Yekaterinburg",
    "Pakistan Standard Time": "Asia/Karachi",
    "India Standard Time": "Asia/Calcutta",
    "Sri Lanka Standard Time": "Asia/Colombo",
    "Nepal Standard Time": "Asia/Katmandu",
    "Central Asia Standard Time": "Asia/Bishkek",
    "Bangladesh Standard Time": "Asia/Dhaka",
    "Omsk Standard Time": "Asia/Omsk",
    "Myanmar Standard Time": "Asia/Rangoon",
    "SE Asia Standard Time": "Asia/Bangkok",
    "Altai Standard Time": "Asia/Barnaul",
    "W. Mongolia Standard Time": "Asia/Hovd",
    "North Asia Standard Time": "Asia/Krasnoyarsk",
    "N. Central Asia Standard Time": "Asia/Novosibirsk",
    "Tomsk Standard Time": "Asia/Tomsk",
    "China Standard Time": "Asia/Shanghai",
    "North Asia East Standard Time": "Asia/Irkutsk",
    "Singapore Standard Time": "Asia/Singapore",
    "W. Australia Standard Time": "Australia/Perth",
    "Taipei Standard Time": "Asia/Taipei",
    "Ulaanbaatar Standard Time": "Asia/Ulaanbaatar",
    "Aus Central W. Standard Time": "Australia/Eucla",
    "Transbaikal Standard Time": "Asia/Chita",
    "Tokyo Standard Time": "Asia/Tokyo",
    "North Korea Standard Time": "Asia/Pyongyang",
    "Korea Standard Time": "Asia/Seoul",
    "Yakutsk Standard Time": "Asia/Yakutsk",
    "Cen. Australia Standard Time": "Australia/Adelaide",
    "AUS Central Standard Time": "Australia/Darwin",
    "E. Australia Standard Time": "Australia/Brisbane",
    "AUS Eastern Standard Time": "Australia/Sydney",
    "West Pacific Standard Time": "Pacific/Port_Moresby",
    "Tasmania Standard Time": "Australia/Hobart",
    "Vladivostok Standard Time": "Asia/Vladivostok",
    "Lord Howe Standard Time": "Australia/Lord_Howe",
    "Bougainville Standard Time": "Pacific/Bougainville",
    "Russia Time Zone 10": "Asia/Srednekolymsk",
    "Magadan Standard Time": "Asia/Magadan",
    "Norfolk Standard Time": "Pacific/Norfolk",
    "Sakhalin Standard Time": "Asia/Sakhalin",
    "Central Pacific Standard Time": "Pacific/Guadalcanal",
    "Russia Time Zone 11": "Asia/Kamchatka",
    "New Zealand Standard Time": "Pacific/Auckland",
    "UTC+12": "Etc/GMT-12",
    "Fiji Standard Time": "Pacific/Fiji",
    "Kamchatka Standard Time": "Asia/Kamchatka",
    "Chatham Islands Standard Time": "Pacific/Chatham",
    "UTC+13": "Etc/GMT-13",
    "Tonga Standard Time": "Pacific/Tongatapu",
    "Samoa Standard Time": "Pacific/Apia",
    "Line Islands Standard Time": "Pacific/Kiritimati",
}
_WINDOWS_BY_LOWER = {name.lower(): iana for name, iana in WINDOWS_ZONES.items()}


def _resolve_zone(name: str) -> ZoneInfo:
    """A Windows name from :data:`WINDOWS_ZONES` or an IANA name (Graph accepts both); ``LookupError`` else."""
    key = name.strip()
    iana = _WINDOWS_BY_LOWER.get(key.lower(), key)
    if not iana or "\x00" in iana or iana.startswith(("/", ".")) or ".." in iana:
        raise LookupError(name)
    try:
        return ZoneInfo(iana)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise LookupError(name) from exc


SCOPE = "https://graph.microsoft.com/.default"
DELTA_MAX_PAGE = 200
MAX_SUBSCRIPTION_MINUTES = 10080
BATCH_LIMIT = 20
SEED_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"
SEED_CLIENT_ID = "5a3f0c52-7c1e-4d3a-9c38-0d0f5b8a1e01"
SEED_CLIENT_SECRET = "sandbox~graph~secret~0123456789"  # a throwaway credential for the local sandbox only
SEED_USER_ID = "6e7b768e-07e2-4810-8459-485f84f8f204"

_CONTACT_TYPE = "#microsoft.graph.contact"
_EVENT_TYPE = "#microsoft.graph.event"
_READ_ONLY = {"id", "changeKey", "createdDateTime", "lastModifiedDateTime", "parentFolderId", "@odata.etag", "iCalUId"}


# ------------------------------------------------------------------------------------------ schemas
# What Graph's OData reader accepts in the bodies Concord writes, from the v1.0 resource pages
# (https://learn.microsoft.com/en-us/graph/api/resources/contact, .../event, .../subscription). A type is
# "String", "Boolean", "Int32", "DateTimeOffset", an enum (a frozenset of members), a complex type (a
# :class:`Complex`) or a collection of one of those (a one-element list).


@dataclass(frozen=True)
class Complex:
    name: str  # the OData type name Graph's messages use
    properties: dict[str, Any]
    read_only: frozenset[str] = frozenset()  # refused in a write ("Set action is invalid for property.")
    ignored: frozenset[str] = frozenset()  # accepted and dropped (Graph ignores iCalUId in a write)


_O = "Microsoft.OutlookServices."
_STR = "String"
_EMAIL = Complex(_O + "EmailAddress", {"name": _STR, "address": _STR})
_ADDRESS = Complex(
    _O + "PhysicalAddress", {"street": _STR, "city": _STR, "state": _STR, "countryOrRegion": _STR, "postalCode": _STR}
)
_EXTENDED = Complex(_O + "SingleValueLegacyExtendedProperty", {"id": _STR, "value": _STR})
_MULTI_EXTENDED = Complex(_O + "MultiValueLegacyExtendedProperty", {"id": _STR, "value": [_STR]})
_ZONED = Complex(_O + "DateTimeTimeZone", {"dateTime": _STR, "timeZone": _STR})
_BODY = Complex(_O + "ItemBody", {"contentType": frozenset({"text", "html"}), "content": _STR})
_COORDINATES = Complex(
    _O + "OutlookGeoCoordinates",
    {
        "latitude": "Double",
        "longitude": "Double",
        "altitude": "Double",
        "accuracy": "Double",
        "altitudeAccuracy": "Double",
    },
)
_LOCATION = Complex(
    _O + "Location",
    {
        "displayName": _STR,
        "locationEmailAddress": _STR,
        "locationUri": _STR,
        "locationType": frozenset(
            {
                "default",
                "conferenceRoom",
                "homeAddress",
                "businessAddress",
                "geoCoordinates",
                "streetAddress",
                "hotel",
                "restaurant",
                "localBusiness",
                "postalAddress",
            }
        ),
        "uniqueId": _STR,
        "uniqueIdType": frozenset({"unknown", "locationStore", "directory", "private", "bing"}),
        "address": _ADDRESS,
        "coordinates": _COORDINATES,
    },
)
_RESPONSE = Complex(
    _O + "ResponseStatus",
    {
        "response": frozenset({"none", "organizer", "tentativelyAccepted", "accepted", "declined", "notResponded"}),
        "time": "DateTimeOffset",
    },
)
_ATTENDEE = Complex(
    _O + "Attendee",
    {"emailAddress": _EMAIL, "type": frozenset({"required", "optional", "resource"}), "status": _RESPONSE},
)
_EXTENSIONS: dict[str, Any] = {
    "singleValueExtendedProperties": [_EXTENDED],
    "multiValueExtendedProperties": [_MULTI_EXTENDED],
}
CONTACT_SCHEMA = Complex(
    _O + "Contact",
    {
        **{
            name: _STR
            for name in (
                "assistantName",
                "businessHomePage",
                "companyName",
                "department",
                "displayName",
                "fileAs",
                "generation",
                "givenName",
                "initials",
                "jobTitle",
                "manager",
                "middleName",
                "mobilePhone",
                "nickName",
                "officeLocation",
                "personalNotes",
                "profession",
                "spouseName",
                "surname",
                "title",
                "yomiCompanyName",
                "yomiGivenName",
                "yomiSurname",
            )
        },
        **{name: [_STR] for name in ("businessPhones", "homePhones", "categories", "children", "imAddresses")},
        "birthday": "DateTimeOffset",
        "emailAddresses": [_EMAIL],
        "businessAddress": _ADDRESS,
        "homeAddress": _ADDRESS,
        "otherAddress": _ADDRESS,
        **_EXTENSIONS,
    },
    read_only=frozenset({"id", "changeKey", "createdDateTime", "lastModifiedDateTime", "parentFolderId"}),
)
EVENT_SCHEMA = Complex(
    _O + "Event",
    {
        "subject": _STR,
        "body": _BODY,
        "start": _ZONED,
        "end": _ZONED,
        "location": _LOCATION,
        "locations": [_LOCATION],
        "attendees": [_ATTENDEE],
        "categories": [_STR],
        "importance": frozenset({"low", "normal", "high"}),
        "sensitivity": frozenset({"normal", "personal", "private", "confidential"}),
        "showAs": frozenset({"free", "tentative", "busy", "oof", "workingElsewhere", "unknown"}),
        "onlineMeetingProvider": frozenset({"unknown", "teamsForBusiness", "skypeForBusiness", "skypeForConsumer"}),
        "recurrence": Complex(_O + "PatternedRecurrence", {"pattern": "Object", "range": "Object"}),
        "transactionId": _STR,
        "originalStartTimeZone": _STR,
        "originalEndTimeZone": _STR,
        "reminderMinutesBeforeStart": "Int32",
        **{
            name: "Boolean"
            for name in (
                "allowNewTimeProposals",
                "hideAttendees",
                "isAllDay",
                "isOnlineMeeting",
                "isReminderOn",
                "responseRequested",
            )
        },
        **_EXTENSIONS,
    },
    read_only=frozenset(
        {
            "id",
            "changeKey",
            "createdDateTime",
            "lastModifiedDateTime",
            "isCancelled",
            "responseStatus",
            "seriesMasterId",
            "type",
            "webLink",
            "bodyPreview",
            "hasAttachments",
            "originalStart",
            "onlineMeeting",
            "onlineMeetingUrl",
            "isDraft",
        }
    ),
    # Read-only, yet dropped from a write without an error: a written iCalUId is ignored (microsoft-graph-docs
    # #4547), and an event made through Graph is always organised by the calendar's owner whatever
    # organizer/isOrganizer say (microsoft-graph-docs #17988).
    ignored=frozenset({"iCalUId", "organizer", "isOrganizer"}),
)
SUBSCRIPTION_SCHEMA = Complex(
    "microsoft.graph.subscription",
    {
        "changeType": _STR,
        "notificationUrl": _STR,
        "lifecycleNotificationUrl": _STR,
        "resource": _STR,
        "expirationDateTime": "DateTimeOffset",
        "clientState": _STR,
        "includeResourceData": "Boolean",
        "encryptionCertificate": _STR,
        "encryptionCertificateId": _STR,
        "latestSupportedTlsVersion": _STR,
        "notificationQueryOptions": _STR,
        "notificationUrlAppId": _STR,
    },
    read_only=frozenset({"id", "applicationId", "creatorId"}),
)

_DATE_TIME_OFFSET = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?(Z|[+-]\d{2}:\d{2})\Z")
_PRIMITIVE_NAMES = {"String": "Edm.String", "Boolean": "Edm.Boolean", "Int32": "Edm.Int32", "Double": "Edm.Double"}


def _read_error(message: str) -> HttpError:
    # OData's reader refuses a body this way on every Graph workload: 400 "RequestBodyRead", with the
    # reader's own message (e.g. microsoftgraph/msgraph-sdk-dotnet#450, msgraph-sdk-java#391).
    return HttpError(400, "RequestBodyRead", message)


def _type_name(kind: Any) -> str:
    if isinstance(kind, list):
        return f"Collection({_type_name(kind[0])})"
    if isinstance(kind, Complex):
        return kind.name
    if isinstance(kind, frozenset):
        return "Edm.String"
    return _PRIMITIVE_NAMES.get(kind, f"Edm.{kind}")


def validate(schema: Complex, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` as Graph would read it (ignored properties dropped), or the :class:`HttpError` Graph answers."""
    for name in body:
        if name in schema.read_only:
            raise HttpError(400, "ErrorInvalidPropertySet", "Set action is invalid for property.")
    _check_complex(schema, body)
    return {k: v for k, v in body.items() if k not in schema.ignored}


def _check_complex(schema: Complex, value: dict[str, Any]) -> None:
    for name, item in value.items():
        if name.startswith("@") or "@odata." in name:
            continue  # instance annotations (@odata.type, @odata.etag) are not properties
        if name not in schema.properties and name not in schema.read_only and name not in schema.ignored:
            raise _read_error(
                f"The property '{name}' does not exist on type '{schema.name}'. Make sure to only use property "
                "names that are defined by the type or mark the type as open type."
            )
        if name in schema.properties:
            _check_value(name, schema.properties[name], item)


def _check_value(name: str, kind: Any, value: Any) -> None:
    if value is None:
        if isinstance(kind, list):
            expected = f"{_type_name(kind)}[Nullable=False]"
            raise _read_error(
                f"A null value was found for the property named '{name}', which has the expected type "
                f"'{expected}'. The expected type '{expected}' does not allow null values."
            )
        return
    if isinstance(kind, list):
        if not isinstance(value, list):
            raise _read_error(
                f"A node of type '{_node(value)}' was read from the JSON reader when trying to read the contents "
                f"of the property '{name}'; however, a 'StartArray' node was expected."
            )
        for element in value:
            _check_value(name, kind[0], element)
        return
    if isinstance(kind, Complex) or kind == "Object":
        if not isinstance(value, dict):
            raise _read_error(
                f"A node of type '{_node(value)}' was read from the JSON reader when trying to read the contents "
                f"of the property '{name}'; however, a 'StartObject' node was expected."
            )
        if isinstance(kind, Complex):
            _check_complex(kind, value)
        return
    if isinstance(value, (dict, list)):
        raise _read_error(
            f"A node of type '{_node(value)}' was read from the JSON reader when trying to read the contents of "
            f"the property '{name}'; however, a 'PrimitiveValue' node was expected."
        )
    _check_primitive(name, kind, value)


def _check_primitive(name: str, kind: Any, value: Any) -> None:
    if isinstance(kind, frozenset):
        if value not in kind:
            raise _read_error(f"Cannot convert the literal '{value}' to the expected type '{_enum_name(name)}'.")
        return
    ok = {
        "String": isinstance(value, str),
        "Boolean": isinstance(value, bool),
        "Int32": isinstance(value, int) and not isinstance(value, bool) and -(2**31) <= value < 2**31,
        "Double": isinstance(value, (int, float)) and not isinstance(value, bool),
        "DateTimeOffset": isinstance(value, str) and bool(_DATE_TIME_OFFSET.match(value)),
    }[kind]
    if not ok:
        if isinstance(value, str):
            raise _read_error(f"Cannot convert the literal '{value}' to the expected type '{_type_name(kind)}'.")
        raise _read_error(
            f"Cannot convert a primitive value to the expected type '{_type_name(kind)}'. See the inner exception "
            "for more details."
        )


def _node(value: Any) -> str:
    return "StartObject" if isinstance(value, dict) else "StartArray" if isinstance(value, list) else "PrimitiveValue"


def _enum_name(name: str) -> str:
    return _O + name[:1].upper() + name[1:]


_EXTENDED_KEY = "_singleValueExtendedProperties"  # stored apart: Graph never returns them unasked
_PROPERTY_ID = re.compile(
    r"(?:Binary|Boolean|Currency|CLSID|Double|Integer|Long|Object|Short|String|SystemTime|ApplicationTime)"
    r"\s+\{[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}\s+(?:Name\s+\S.*|Id\s+0x[0-9a-f]+)"
    r"|(?:Binary|Boolean|Integer|String|SystemTime)\s+0x[0-9a-f]{4}",
    re.IGNORECASE,
)
_ANY_FILTER = re.compile(
    r"\s*singleValueExtendedProperties/any\(\s*(\w+)\s*:\s*\1/id\s+eq\s+'((?:[^']|'')*)'\s+and\s+"
    r"\1/value\s+eq\s+'((?:[^']|'')*)'\s*\)\s*",
    re.IGNORECASE,
)
_EXPAND = re.compile(
    r"\s*singleValueExtendedProperties\(\s*\$filter\s*=\s*id\s+eq\s+'((?:[^']|'')*)'\s*\)\s*", re.IGNORECASE
)


def _extended_properties(values: Any, current: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Extended properties by lower-cased id (Graph matches ids without regard to case)."""
    merged = dict(current)
    for prop in values or []:
        if not _PROPERTY_ID.fullmatch(str(prop.get("id") or "").strip()):
            # The message Exchange gives (microsoftgraph/msgraph-sdk-dotnet#1807).
            raise HttpError(
                400,
                "ErrorInvalidProperty",
                "PropertyId values may only be in one of the following formats: 'MapiPropertyType namespaceGuid "
                "Name propertyName', 'MapiPropertyType namespaceGuid Id propertyId' or 'MapiPropertyType "
                "propertyTag'.",
            )
        merged[str(prop["id"]).strip().lower()] = {"id": str(prop["id"]).strip(), "value": str(prop.get("value"))}
    return merged


def _extended_filter(flt: str | None) -> Any:
    """The one ``$filter`` form the sandbox reads on item lists: an extended property with a value,
    ``singleValueExtendedProperties/Any(ep: ep/id eq '...' and ep/value eq '...')``
    (https://learn.microsoft.com/en-us/graph/api/singlevaluelegacyextendedproperty-get, "filter")."""
    if not flt:
        return lambda item: True
    match = _ANY_FILTER.fullmatch(flt)
    if not match:
        raise HttpError(400, "ErrorInvalidUrlQueryFilter", "The query filter contains one or more invalid nodes.")
    key, value = match.group(2).replace("''", "'").strip().lower(), match.group(3).replace("''", "'")

    def matches(item: dict[str, Any]) -> bool:
        prop = item.get(_EXTENDED_KEY, {}).get(key)
        return prop is not None and prop["value"] == value

    return matches


def _expanded_property(expand: str | None) -> str | None:
    if not expand:
        return None
    match = _EXPAND.fullmatch(expand)
    if not match:
        raise HttpError(400, "BadRequest", f"Parsing OData Select and Expand failed: could not read '{expand}'.")
    return match.group(1).replace("''", "'").strip()


class DroppedConnection(Exception):
    """Raised out of :meth:`GraphSandbox.dispatch` so the HTTP server closes the connection unanswered."""


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(moment: datetime | None = None) -> str:
    return (moment or _now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def _stamp7(moment: datetime) -> str:
    """Graph's 7-fractional-digit timestamps (``2026-11-20T18:23:45.9356913+00:00``)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0+00:00"


def _parse_time(value: str) -> datetime:
    """An ISO 8601 instant; Graph writes 7 fractional digits, Python reads at most 6."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", value.strip().replace("Z", "+00:00"))
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _new_id(prefix: str = "AAMkAGI2") -> str:
    return prefix + base64.urlsafe_b64encode(secrets.token_bytes(30)).decode().rstrip("=")


def _change_key() -> str:
    return "EQAAABYAAAA" + base64.b64encode(secrets.token_bytes(12)).decode()


def _prefer(request: Request) -> tuple[str | None, int | None]:
    """``(outlook.timezone, odata.maxpagesize)`` from the ``Prefer`` header(s)."""
    header = request.headers.get("prefer", "")
    zone = re.search(r'outlook\.timezone\s*=\s*"([^"]+)"', header)
    size = re.search(r"odata\.maxpagesize\s*=\s*(\d+)", header)
    return (zone.group(1) if zone else None), (int(size.group(1)) if size else None)


def _wall_to_utc(value: dict[str, Any]) -> datetime:
    """A Graph ``dateTimeTimeZone`` (wall time + zone name, Windows or IANA) as a UTC instant."""
    naive = datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", str(value["dateTime"])).replace("Z", ""))
    return naive.replace(tzinfo=_resolve_zone(str(value.get("timeZone") or "UTC"))).astimezone(UTC)


def _wall_in(value: dict[str, Any], zone_name: str) -> dict[str, Any]:
    moment = _wall_to_utc(value).astimezone(_resolve_zone(zone_name))
    return {"dateTime": moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0", "timeZone": zone_name}


@dataclass
class Collection:
    """A contact folder or the default calendar, with what delta needs: a change sequence and tombstones."""

    id: str
    display_name: str
    kind: str  # "contacts" | "events"
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    seq_of: dict[str, int] = field(default_factory=dict)
    tombstones: dict[str, int] = field(default_factory=dict)


@dataclass
class Mailbox:
    user_id: str  # a GUID, as Graph's notifications name users
    upn: str
    tenant: str
    contacts: Collection  # the default Contacts folder
    folders: dict[str, Collection]  # child contact folders
    calendar: Collection
    mail: dict[str, Collection] = field(default_factory=dict)  # well-known mail folders: inbox, sentitems

    def mail_folder(self, name: str) -> Collection:
        key = name.strip("'").lower()
        for folder in self.mail.values():
            if key in (folder.id.lower(), folder.display_name.lower()):
                return folder
        raise HttpError(404, "ErrorItemNotFound", "The specified object was not found in the store.")

    def folder(self, folder_id: str) -> Collection:
        if folder_id == self.contacts.id:
            return self.contacts
        if folder_id not in self.folders:
            raise HttpError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        return self.folders[folder_id]

    def find_contact(self, contact_id: str) -> tuple[Collection, dict[str, Any]]:
        for folder in (self.contacts, *self.folders.values()):
            if contact_id in folder.items:
                return folder, folder.items[contact_id]
        raise HttpError(404, "ErrorItemNotFound", "The specified object was not found in the store.")


@dataclass
class DeltaState:
    user_id: str
    collection_id: str
    kind: str
    window: tuple[datetime, datetime] | None
    page_size: int
    since: int = 0  # for a delta token: changes after this sequence number
    pending: list[str] = field(default_factory=list)  # for a skip token: ids still to send this round
    upto: int = 0


@dataclass
class Subscription:
    id: str
    tenant: str
    app_id: str
    resource: str
    user_id: str
    kind: str  # "contacts" | "events" | "messages"
    collection_id: str | None
    change_types: set[str]
    change_type: str
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expiration: datetime
    needs_reauthorization: bool = False

    def live(self) -> bool:
        return self.expiration > _now()


class GraphSandbox(Sandbox):
    """Microsoft Graph and its token endpoint on 127.0.0.1; see the module docstring."""

    name: ClassVar[str] = "graph"
    USER = r"/v1\.0/users/(?P<user>[^/]+)"
    # Graph reads the delta function in each of these forms: ``delta``, ``delta()`` and the namespaced
    # ``microsoft.graph.delta()`` (what msgraph-sdk and other generated clients send).
    DELTA = r"/(?:microsoft\.graph\.)?delta(?:\(\))?"

    def __init__(
        self,
        *,
        tls: bool = True,
        port: int = 0,
        validation_timeout_s: float = 10.0,
        notification_window_s: float = 0.05,
        webhook_verify: bool | str = True,
        rng: random.Random | None = None,
    ):
        super().__init__(tls=tls, port=port)
        self.validation_timeout_s = validation_timeout_s
        self.notification_window_s = notification_window_s
        self.webhook_verify = webhook_verify
        self._random = rng or random.Random()  # shuffles $batch answers; not security-relevant
        self._lock = threading.RLock()
        self._clear()

    def _clear(self) -> None:
        self.apps: dict[str, dict[str, str]] = {}  # tenant → client id → secret
        self.mailboxes: dict[str, Mailbox] = {}  # user GUID → mailbox
        self.subscriptions: dict[str, Subscription] = {}
        self._delta_tokens: dict[str, DeltaState] = {}
        self._seq = 0
        self._outbox: dict[str, list[dict[str, Any]]] = {}
        self._timers: dict[str, threading.Timer] = {}
        self.batch_item_throttle = 0
        self.batch_answers_missing = 0
        self.attendee_mails: list[dict[str, Any]] = []  # one entry per mail an attendee would receive
        self.attendee_copy_writes: list[dict[str, Any]] = []  # writes to meetings the user does not organise
        self._after_commit: list[int | None] = []  # one entry per armed fault: a 5xx status, or None to drop
        self.batch_item_retry_after = 1.0
        self.pusher = Pusher(self.faults)

    # ------------------------------------------------------------------------------ python controls

    def reset(self) -> None:
        """Forget tenants, mailboxes, subscriptions and delta tokens; clear faults (then ``seed()`` again)."""
        super().reset()
        with self._lock:
            for timer in self._timers.values():
                timer.cancel()
            self.pusher.close()
            self._clear()

    def stop(self) -> None:
        super().stop()
        self.pusher.close()

    @property
    def graph_url(self) -> str:
        return self.url + "/v1.0"

    def add_app(self, tenant: str, client_id: str, client_secret: str) -> None:
        """Register an app (client id + secret) in a tenant; the token endpoint accepts it from then on."""
        with self._lock:
            self.apps.setdefault(tenant, {})[client_id] = client_secret

    def add_user(self, tenant: str, upn: str, user_id: str | None = None) -> Mailbox:
        with self._lock:
            self.apps.setdefault(tenant, {})
            mailbox = Mailbox(
                user_id=user_id or str(uuid.uuid4()),
                upn=upn.lower(),
                tenant=tenant,
                contacts=Collection(_new_id("AQMkAD"), "Contacts", "contacts"),
                folders={},
                calendar=Collection(_new_id("AQMkAD"), "Calendar", "events"),
                mail={name: Collection(_new_id("AQMkAD"), name, "messages") for name in ("inbox", "sentitems")},
            )
            self.mailboxes[mailbox.user_id] = mailbox
            return mailbox

    def mailbox(self, user: str) -> Mailbox:
        key = unquote(user).lower()
        for mailbox in self.mailboxes.values():
            if key in (mailbox.user_id, mailbox.upn):
                return mailbox
        raise HttpError(404, "ErrorInvalidUser", f"The requested user '{unquote(user)}' is invalid.")

    def add_contact_folder(self, user: str, name: str) -> str:
        with self._lock:
            mailbox = self.mailbox(user)
            folder = Collection(_new_id("AAMkAGI2AAEO"), name, "contacts")
            mailbox.folders[folder.id] = folder
            return folder.id

    def put_contact(self, user: str, fields: dict[str, Any], folder_id: str | None = None) -> dict[str, Any]:
        """Create a contact as if the user had added it in Outlook (notifies subscribers)."""
        mailbox = self.mailbox(user)
        return self._create(mailbox, mailbox.folder(folder_id or mailbox.contacts.id), fields)

    def put_message(self, user: str, folder: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Deliver (``folder="inbox"``) or file as sent (``"sentitems"``) a message, as if mail had flowed."""
        mailbox = self.mailbox(user)
        collection = mailbox.mail_folder(folder)
        now = _stamp()
        message = {
            "internetMessageId": f"<{uuid.uuid4().hex}@{mailbox.upn.partition('@')[2] or 'example.com'}>",
            "subject": "",
            "from": {"emailAddress": {"name": mailbox.upn, "address": mailbox.upn}},
            "toRecipients": [],
            "ccRecipients": [],
            "receivedDateTime": now,
            "sentDateTime": now,
            "bodyPreview": str((fields.get("body") or {}).get("content") or "")[:255],
            "conversationId": _new_id("AAQkAGI2"),
            "isDraft": False,
            **fields,
        }
        with self._lock:
            message.update(id=_new_id(), changeKey=_change_key(), createdDateTime=now, lastModifiedDateTime=now)
            collection.items[message["id"]] = message
            self._bump(collection, message["id"])
        return self._render(collection, message, None)

    def put_event(self, user: str, fields: dict[str, Any]) -> dict[str, Any]:
        mailbox = self.mailbox(user)
        return self._create(mailbox, mailbox.calendar, fields)

    def edit(self, user: str, item_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change a contact or event as the user would in Outlook: new changeKey, notifications."""
        mailbox = self.mailbox(user)
        collection = self._collection_of(mailbox, item_id)
        return self._update(mailbox, collection, item_id, changes, None)

    def remove(self, user: str, item_id: str) -> None:
        mailbox = self.mailbox(user)
        self._delete(mailbox, self._collection_of(mailbox, item_id), item_id)

    def invalidate_delta_tokens(self) -> None:
        """Every delta and skip token issued so far answers 410 from now on (a full resync is needed)."""
        with self._lock:
            self._delta_tokens.clear()

    def expire_subscription(self, subscription_id: str) -> None:
        with self._lock:
            self.subscriptions[subscription_id].expiration = _now() - timedelta(seconds=1)

    def lifecycle(self, subscription_id: str, event: str) -> None:
        """Send a lifecycle notification: ``reauthorizationRequired``, ``subscriptionRemoved`` (the
        subscription is gone afterwards) or ``missed``."""
        if event not in ("reauthorizationRequired", "subscriptionRemoved", "missed"):
            raise ValueError(f"unknown lifecycle event {event!r}")
        with self._lock:
            sub = self.subscriptions[subscription_id]
            if event == "reauthorizationRequired":
                sub.needs_reauthorization = True
            if event == "subscriptionRemoved":
                del self.subscriptions[subscription_id]
        item = {
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": _stamp7(sub.expiration),
            "tenantId": sub.tenant,
            "clientState": sub.client_state,
            "lifecycleEvent": event,
        }
        if sub.lifecycle_url:
            self._push(sub.lifecycle_url, [item])

    def throttle_batch_items(self, calls: int, retry_after: float = 1.0) -> None:
        """The next ``calls`` $batch sub-requests answer 429 inside an otherwise successful batch."""
        with self._lock:
            self.batch_item_throttle, self.batch_item_retry_after = calls, retry_after

    def fail_after_commit(self, calls: int = 1, status: int | None = 503) -> None:
        """The next ``calls`` successful writes (POST, PATCH, DELETE, ``$batch`` included) are committed, then
        answered with ``status`` (a 5xx) or, with ``status=None``, by closing the connection with no answer:
        the ambiguous failures after which a blind retry of a create makes a duplicate."""
        with self._lock:
            self._after_commit = [status] * calls

    def drop_batch_answers(self, count: int) -> None:
        """The next ``count`` ``$batch`` sub-requests run (and commit) but their answers are left out of the
        batch response, as a batch cut short by the service would."""
        with self._lock:
            self.batch_answers_missing = count

    def flush_notifications(self) -> None:
        """Send every notification still waiting for its batching window now."""
        with self._lock:
            urls = list(self._outbox)
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
        for url in urls:
            self._flush(url)

    def wait_notifications(self, timeout: float = 10.0) -> bool:
        """Flush, then wait until the pusher has delivered (or abandoned) everything queued."""
        self.flush_notifications()
        return self.pusher.wait_idle(timeout)

    def seed(self) -> None:
        """One tenant, app and mailbox (``seed.M365_USER``) with a "Salesforce Sync" folder holding the people
        flagged ``in_m365``, two private contacts in the default folder (never synced), and a calendar with
        the seed meetings flagged ``in_m365`` plus a private event and one organized by someone else."""
        self.add_app(SEED_TENANT, SEED_CLIENT_ID, SEED_CLIENT_SECRET)
        mailbox = self.add_user(SEED_TENANT, seed.M365_USER, SEED_USER_ID)
        folder_id = self.add_contact_folder(mailbox.upn, "Salesforce Sync")
        names = {p.email: f"{p.first} {p.last}" for p in seed.PEOPLE}
        for person in seed.PEOPLE:
            if person.in_m365:
                self.put_contact(
                    mailbox.upn,
                    {
                        "givenName": person.first,
                        "surname": person.last,
                        "emailAddresses": [{"name": f"{person.first} {person.last}", "address": person.email}],
                        "businessPhones": [person.phone],
                        "jobTitle": person.title,
                        "companyName": person.company,
                    },
                    folder_id,
                )
        for first, last, email in (("Pat", "Plumber", "pat@plumbing.example"), ("Mum", "", "mum@family.example")):
            self.put_contact(
                mailbox.upn,
                {"givenName": first, "surname": last, "emailAddresses": [{"name": first, "address": email}]},
            )
        organizer = {"emailAddress": {"name": "Alex Wilber", "address": seed.M365_USER}}
        for meeting in seed.MEETINGS:
            if meeting.in_m365:
                self.put_event(
                    mailbox.upn,
                    {
                        "subject": meeting.subject,
                        "iCalUId": meeting.ical_uid,
                        "start": {"dateTime": meeting.start.removesuffix("Z"), "timeZone": "UTC"},
                        "end": {"dateTime": meeting.end.removesuffix("Z"), "timeZone": "UTC"},
                        "location": {"displayName": meeting.location},
                        "organizer": organizer,
                        "attendees": [
                            {
                                "emailAddress": {"name": names.get(a, a), "address": a},
                                "type": "required",
                                "status": {"response": "none", "time": "0001-01-01T00:00:00Z"},
                            }
                            for a in meeting.attendees
                        ],
                    },
                )
        people = [p for p in seed.PEOPLE if p.in_m365][:2]
        for person in people:
            sender = {"emailAddress": {"name": f"{person.first} {person.last}", "address": person.email}}
            me = {"emailAddress": {"name": "Alex Wilber", "address": seed.M365_USER}}
            self.put_message(
                mailbox.upn,
                "inbox",
                {
                    "subject": f"Question from {person.first}",
                    "from": sender,
                    "toRecipients": [me],
                    "body": {"contentType": "text", "content": f"Hello Alex, {person.first} here."},
                },
            )
            self.put_message(
                mailbox.upn,
                "sentitems",
                {
                    "subject": f"Re: Question from {person.first}",
                    "from": me,
                    "toRecipients": [sender],
                    "body": {"contentType": "text", "content": f"Hi {person.first}, thanks."},
                },
            )
        self.put_event(
            mailbox.upn,
            {
                "subject": "Dentist",
                "sensitivity": "private",
                "start": {"dateTime": "2026-12-02T08:00:00", "timeZone": "Pacific Standard Time"},
                "end": {"dateTime": "2026-12-02T09:00:00", "timeZone": "Pacific Standard Time"},
                "organizer": organizer,
            },
        )
        self.put_event(
            mailbox.upn,
            {
                "subject": "Navy briefing",
                "start": {"dateTime": "2026-12-04T14:00:00", "timeZone": "UTC"},
                "end": {"dateTime": "2026-12-04T15:00:00", "timeZone": "UTC"},
                "organizer": {"emailAddress": {"name": "Grace Hopper", "address": "grace@navy.example"}},
                "isOrganizer": False,
                "responseStatus": {"response": "accepted", "time": "2026-11-01T10:00:00Z"},
                "attendees": [
                    {
                        "emailAddress": {"name": "Alex Wilber", "address": seed.M365_USER},
                        "type": "required",
                        "status": {"response": "accepted", "time": "2026-11-01T10:00:00Z"},
                    }
                ],
            },
        )

    # ------------------------------------------------------------------------------ sandbox hooks

    def error(self, status: int, code: str, message: str, **extra: Any) -> Response:
        request_id = str(uuid.uuid4())
        body = {
            "error": {
                "code": code,
                "message": message,
                "innerError": {"date": _stamp(), "request-id": request_id, "client-request-id": request_id},
                **extra,
            }
        }
        headers = {"request-id": request_id, "client-request-id": request_id}
        if status == 401:
            headers["WWW-Authenticate"] = (
                'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
                'client_id="00000003-0000-0000-c000-000000000000"'
            )
        return Response(status, body, headers)

    def throttled(self, retry_after: float) -> Response:
        # Outlook resources name mailbox throttling this way: https://learn.microsoft.com/en-us/graph/throttling-limits
        response = self.error(429, "ApplicationThrottled", "Application is over its MailboxConcurrency limit.")
        response.headers["Retry-After"] = str(int(retry_after) if retry_after == int(retry_after) else retry_after)
        return response

    def public_paths(self) -> tuple[str, ...]:
        return ("/_sandbox/", "/{tenant}/oauth2/v2.0/token")

    def start(self) -> GraphSandbox:
        super().start()
        server = self._server
        assert server is not None
        report = server.handle_error

        def handle_error(request: Any, client_address: Any) -> None:
            if not isinstance(sys.exc_info()[1], DroppedConnection):  # a dropped connection is on purpose
                report(request, client_address)

        server.handle_error = handle_error  # type: ignore[method-assign]  # the server's own hook, per instance
        return self

    def dispatch(self, request: Request) -> Response:
        response = super().dispatch(request)
        write = request.method in ("POST", "PATCH", "DELETE") and request.path.startswith("/v1.0/")
        if not write or not 200 <= response.status < 300:
            return response
        with self._lock:
            if not self._after_commit:
                return response
            status = self._after_commit.pop(0)
        if status is None:
            raise DroppedConnection  # the server closes the socket without an answer
        return self.error(status, "ServiceUnavailable", "The service is temporarily unavailable.")

    def state(self) -> dict[str, Any]:
        state = super().state()
        with self._lock:
            state.update(
                tenants=sorted(self.apps),
                mailboxes={
                    m.upn: {
                        "user_id": m.user_id,
                        "contacts": len(m.contacts.items) + sum(len(f.items) for f in m.folders.values()),
                        "folders": {f.display_name: f.id for f in m.folders.values()},
                        "events": len(m.calendar.items),
                    }
                    for m in self.mailboxes.values()
                },
                subscriptions=[
                    {"id": s.id, "resource": s.resource, "expires": _stamp(s.expiration), "live": s.live()}
                    for s in self.subscriptions.values()
                ],
                delta_tokens=len(self._delta_tokens),
                attendee_mails=list(self.attendee_mails),
                attendee_copy_writes=list(self.attendee_copy_writes),
                pushes_delivered=len(self.pusher.delivered),
                pushes_abandoned=len(self.pusher.abandoned),
            )
        return state

    def _admin(self, request: Request) -> Response:
        action = request.path.removeprefix("/_sandbox/")
        if request.method == "POST" and action == "faults/after_commit":
            spec = request.json() or {}
            status = None if spec.get("drop") else int(spec.get("status", 503))
            self.fail_after_commit(int(spec.get("calls", 1)), status)
            return Response(200, {"armed": int(spec.get("calls", 1))})
        if request.method == "POST" and action == "faults/batch_missing":
            self.drop_batch_answers(int((request.json() or {}).get("count", 1)))
            return Response(200, {"armed": True})
        if request.method == "POST" and action == "delta/invalidate":
            self.invalidate_delta_tokens()
            return Response(200, {"invalidated": True})
        match = re.fullmatch(r"subscriptions/([^/]+)/(expire|lifecycle)", action)
        if request.method == "POST" and match:
            if match.group(1) not in self.subscriptions:
                return Response(404, {"error": f"no subscription {match.group(1)}"})
            if match.group(2) == "expire":
                self.expire_subscription(match.group(1))
            else:
                try:
                    self.lifecycle(match.group(1), str((request.json() or {}).get("event")))
                except ValueError as exc:
                    return Response(400, {"error": str(exc)})
            return Response(200, {"ok": True})
        return super()._admin(request)

    # ------------------------------------------------------------------------------ token endpoint

    @staticmethod
    def _aad_error(status: int, error: str, code: int, description: str) -> Response:
        """The Entra ID (AADSTS) error shape:
        https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes"""
        trace, correlation, stamp = str(uuid.uuid4()), str(uuid.uuid4()), _now().strftime("%Y-%m-%d %H:%M:%SZ")
        return Response(
            status,
            {
                "error": error,
                "error_description": f"AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {correlation} "
                f"Timestamp: {stamp}",
                "error_codes": [code],
                "timestamp": stamp,
                "trace_id": trace,
                "correlation_id": correlation,
                "error_uri": f"https://login.microsoftonline.com/error?code={code}",
            },
        )

    @route("POST", r"/(?P<tenant>[^/_][^/]*)/oauth2/v2\.0/token")
    def token(self, request: Request) -> Response:
        form = request.form()
        tenant = request.params["tenant"]
        if form.get("grant_type") != "client_credentials":
            return self._aad_error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        if tenant not in self.apps:
            return self._aad_error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        client_id = form.get("client_id", "")
        if client_id not in self.apps[tenant]:
            return self._aad_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory '{tenant}'.",
            )
        if form.get("scope") != SCOPE:
            return self._aad_error(400, "invalid_scope", 1002012, "The provided value for scope is not valid.")
        if not secrets.compare_digest(form.get("client_secret", ""), self.apps[tenant][client_id]):
            return self._aad_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
                f"value, not the client secret ID, for a secret added to app '{client_id}'.",
            )
        token, lifetime = self.tokens.issue(tid=tenant, appid=client_id)
        return Response(
            200,
            {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token},
        )

    # ------------------------------------------------------------------------------ helpers

    def _claims(self, request: Request) -> dict[str, Any]:
        token = request.bearer()
        if not token:
            raise HttpError(401, "InvalidAuthenticationToken", "Access token is empty.")
        claims = self.tokens.check(token)
        if claims is None:
            raise HttpError(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")
        return claims

    def _user(self, request: Request) -> Mailbox:
        claims = self._claims(request)
        mailbox = self.mailbox(request.params["user"])
        if mailbox.tenant != claims["tid"]:  # another tenant's user does not exist for this token
            raise HttpError(
                404, "ErrorInvalidUser", f"The requested user '{unquote(request.params['user'])}' is invalid."
            )
        return mailbox

    def _collection_of(self, mailbox: Mailbox, item_id: str) -> Collection:
        if item_id in mailbox.calendar.items:
            return mailbox.calendar
        return mailbox.find_contact(item_id)[0]

    def _render(
        self, collection: Collection, item: dict[str, Any], zone: str | None, expand: str | None = None
    ) -> dict[str, Any]:
        out = {"@odata.etag": f'W/"{item["changeKey"]}"', **copy.deepcopy(item)}
        # Extended properties come back only when asked for, one by id: $expand=singleValueExtendedProperties(
        # $filter=id eq '...') (https://learn.microsoft.com/en-us/graph/api/singlevaluelegacyextendedproperty-get)
        extended = out.pop(_EXTENDED_KEY, {})
        wanted = _expanded_property(expand)
        if wanted is not None:
            out["singleValueExtendedProperties"] = [p for k, p in extended.items() if k == wanted.lower()]
        if collection.kind == "events":
            target = zone or "UTC"  # Graph answers in UTC unless Prefer: outlook.timezone says otherwise
            for key in ("start", "end"):
                if isinstance(out.get(key), dict) and out[key].get("dateTime"):
                    out[key] = _wall_in(out[key], target)
        return out

    def _bump(self, collection: Collection, item_id: str) -> int:
        self._seq += 1
        collection.seq_of[item_id] = self._seq
        return self._seq

    def _create(self, mailbox: Mailbox, collection: Collection, fields: dict[str, Any]) -> dict[str, Any]:
        with self._lock:  # the transactionId check and the insert are one step, as two racing POSTs need
            return self._create_locked(mailbox, collection, fields)

    def _create_locked(self, mailbox: Mailbox, collection: Collection, fields: dict[str, Any]) -> dict[str, Any]:
        now = _stamp()
        fields = {k: v for k, v in fields.items() if k not in _READ_ONLY or k == "iCalUId"}
        extended = _extended_properties(fields.pop("singleValueExtendedProperties", None), {})
        transaction = fields.get("transactionId")
        if collection.kind == "events" and transaction:
            # A second POST with the same transactionId creates nothing and answers with the event the first
            # made (https://learn.microsoft.com/en-us/graph/api/resources/event, "transactionId").
            for existing in collection.items.values():
                if existing.get("transactionId") == transaction:
                    return self._render(collection, existing, None)
        base: dict[str, Any] = {"id": _new_id(), "createdDateTime": now, "lastModifiedDateTime": now}
        if collection.kind == "contacts":
            item = {**base, **self._contact_defaults(), "parentFolderId": collection.id, **fields}
            if not item.get("displayName"):
                item["displayName"] = " ".join(p for p in (item.get("givenName"), item.get("surname")) if p)
        else:
            for key in ("start", "end"):
                if key in fields:
                    self._check_time(fields[key])
            item = {**base, **self._event_defaults(mailbox), **fields}
            item["bodyPreview"] = str((item.get("body") or {}).get("content") or "")[:255]
        item["changeKey"] = _change_key()
        if extended:
            item[_EXTENDED_KEY] = extended
        collection.items[item["id"]] = item
        self._bump(collection, item["id"])
        self._notify(mailbox, collection, item, "created")
        return self._render(collection, item, None)

    def _update(
        self, mailbox: Mailbox, collection: Collection, item_id: str, changes: dict[str, Any], if_match: str | None
    ) -> dict[str, Any]:
        with self._lock:
            item = collection.items.get(item_id)
            if item is None:
                raise HttpError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
            if if_match and if_match.strip() != "*" and if_match.strip() != f'W/"{item["changeKey"]}"':
                # https://learn.microsoft.com/en-us/graph/api/event-update ; the code and message Exchange sends
                raise HttpError(
                    412,
                    "ErrorIrresolvableConflict",
                    "The send or update operation could not be performed because the change key passed in the "
                    "request does not match the current change key for the item.",
                )
            for key in ("start", "end"):
                if key in changes:
                    self._check_time(changes[key])
            if "transactionId" in changes and changes["transactionId"] != item.get("transactionId"):
                # "After you set transactionId when creating an event, you can't change transactionId in a
                # subsequent update." (the event resource page)
                raise HttpError(400, "ErrorInvalidPropertySet", "Set action is invalid for property.")
            changes = dict(changes)
            if "singleValueExtendedProperties" in changes:
                merged = _extended_properties(changes.pop("singleValueExtendedProperties"), item.get(_EXTENDED_KEY, {}))
                item[_EXTENDED_KEY] = merged
            item.update({k: v for k, v in changes.items() if k not in _READ_ONLY})
            renamed = "givenName" in changes or "surname" in changes
            if collection.kind == "contacts" and renamed and "displayName" not in changes:
                item["displayName"] = " ".join(p for p in (item.get("givenName"), item.get("surname")) if p)
            if collection.kind == "events" and "body" in changes:
                item["bodyPreview"] = str((item.get("body") or {}).get("content") or "")[:255]
            item["changeKey"] = _change_key()
            item["lastModifiedDateTime"] = _stamp()
            self._bump(collection, item_id)
        self._notify(mailbox, collection, item, "updated")
        return self._render(collection, item, None)

    def _delete(self, mailbox: Mailbox, collection: Collection, item_id: str) -> None:
        with self._lock:
            item = collection.items.pop(item_id, None)
            if item is None:
                raise HttpError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
            self._seq += 1
            collection.seq_of.pop(item_id, None)
            collection.tombstones[item_id] = self._seq
        self._notify(mailbox, collection, item, "deleted")

    @staticmethod
    def _check_time(value: Any) -> None:
        if not isinstance(value, dict) or not value.get("dateTime"):
            raise HttpError(400, "ErrorInvalidRequest", "Your request can't be completed. A dateTime is required.")
        zone = str(value.get("timeZone") or "UTC")
        try:
            _wall_to_utc(value)
        except (ValueError, KeyError, LookupError) as exc:
            raise HttpError(
                400,
                "TimeZoneNotSupportedException",
                f"A valid TimeZone value must be specified. The following TimeZone value is not supported: '{zone}'.",
            ) from exc

    @staticmethod
    def _contact_defaults() -> dict[str, Any]:
        return {
            "categories": [],
            "birthday": None,
            "fileAs": "",
            "displayName": "",
            "givenName": None,
            "initials": None,
            "middleName": None,
            "nickName": None,
            "surname": None,
            "title": None,
            "jobTitle": None,
            "companyName": None,
            "department": None,
            "officeLocation": None,
            "businessHomePage": None,
            "homePhones": [],
            "mobilePhone": None,
            "businessPhones": [],
            "personalNotes": "",
            "emailAddresses": [],
            "homeAddress": {},
            "businessAddress": {},
            "otherAddress": {},
        }

    def _event_defaults(self, mailbox: Mailbox) -> dict[str, Any]:
        return {
            "categories": [],
            "originalStartTimeZone": "UTC",
            "originalEndTimeZone": "UTC",
            "iCalUId": "040000008200E00074C5B7101A82E00800000000" + secrets.token_hex(16).upper(),
            "reminderMinutesBeforeStart": 15,
            "isReminderOn": True,
            "hasAttachments": False,
            "subject": "",
            "bodyPreview": "",
            "importance": "normal",
            "sensitivity": "normal",
            "isAllDay": False,
            "isCancelled": False,
            "isOrganizer": True,
            "responseRequested": True,
            "seriesMasterId": None,
            "showAs": "busy",
            "type": "singleInstance",
            "webLink": f"https://outlook.office365.com/owa/?itemid={secrets.token_hex(8)}&exvsurl=1&path=/calendar/item",
            "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
            "body": {"contentType": "html", "content": ""},
            "start": {"dateTime": _now().strftime("%Y-%m-%dT%H:00:00.0000000"), "timeZone": "UTC"},
            "end": {
                "dateTime": (_now() + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:00.0000000"),
                "timeZone": "UTC",
            },
            "location": {"displayName": "", "locationType": "default", "uniqueIdType": "unknown"},
            "locations": [],
            "recurrence": None,
            "attendees": [],
            "organizer": {"emailAddress": {"name": mailbox.upn, "address": mailbox.upn}},
        }

    def _in_window(self, item: dict[str, Any], window: tuple[datetime, datetime] | None) -> bool:
        if window is None:
            return True
        try:
            start, end = _wall_to_utc(item["start"]), _wall_to_utc(item["end"])
        except (KeyError, ValueError, LookupError):
            return False
        return start < window[1] and end > window[0]

    def _collection_page(
        self, request: Request, collection: Collection, window: tuple[datetime, datetime] | None
    ) -> Response:
        """A plain (non-delta) list, paged with ``$top``/``$skip`` and ``@odata.nextLink``."""
        zone, max_page = _prefer(request)
        size = int(request.arg("$top") or max_page or 10)
        skip = int(request.arg("$skip") or 0)
        matches = _extended_filter(request.arg("$filter"))
        expand = request.arg("$expand")
        with self._lock:
            items = [i for i in collection.items.values() if self._in_window(i, window) and matches(i)]
            if collection.kind == "events":
                items.sort(key=lambda i: _wall_to_utc(i["start"]))
            page = [self._render(collection, i, zone, expand) for i in items[skip : skip + size]]
        body: dict[str, Any] = {"@odata.context": f"{self.graph_url}/$metadata#{collection.kind}", "value": page}
        if skip + size < len(items):
            query = {k: v[-1] for k, v in request.query.items()}
            query.update({"$top": str(size), "$skip": str(skip + size)})
            body["@odata.nextLink"] = f"{self.url}{request.path}?{urlencode(query)}"
        return self._ok(body, zone)

    @staticmethod
    def _ok(body: Any, zone: str | None = None, status: int = 200) -> Response:
        headers = {"Preference-Applied": f'outlook.timezone="{zone}"'} if zone else {}
        return Response(status, body, headers)

    # ------------------------------------------------------------------------------ delta

    def _delta(self, request: Request, mailbox: Mailbox, collection: Collection, window_required: bool) -> Response:
        """One page of a delta round: https://learn.microsoft.com/en-us/graph/delta-query-overview"""
        zone, max_page = _prefer(request)
        query = {k.lower(): v[-1] for k, v in request.query.items()}
        skip_token, delta_token = query.get("$skiptoken"), query.get("$deltatoken")
        with self._lock:
            if skip_token or delta_token:
                state = self._delta_tokens.get(skip_token or delta_token or "")
                if state is None or state.collection_id != collection.id:
                    raise HttpError(
                        410,
                        "syncStateNotFound",
                        "The sync state generation is not found. The delta token is expired and data must be "
                        "synchronized again.",
                    )
                window, size = state.window, state.page_size
                if skip_token:
                    pending, upto = list(state.pending), state.upto
                else:
                    pending, upto = self._changed_since(collection, state.since), self._seq
            else:
                window = self._window(request) if window_required else None
                # Graph pages a delta round by 10 unless asked, and caps what is asked at 200 for
                # contacts and the like (Microsoft Q&A 2052165; the delta-query-events examples).
                size = min(max_page or 10, DELTA_MAX_PAGE)
                pending = [
                    i
                    for i, item in sorted(collection.items.items(), key=lambda kv: collection.seq_of.get(kv[0], 0))
                    if self._in_window(item, window)
                ]
                upto = self._seq
            page, rest = pending[:size], pending[size:]
            values = [self._delta_entry(collection, item_id, window, zone) for item_id in page]
            token = secrets.token_urlsafe(24)
            state = DeltaState(mailbox.user_id, collection.id, collection.kind, window, size, upto=upto)
            if rest:
                state.pending = rest
                link_key, param = "@odata.nextLink", "$skiptoken"
            else:
                state.since = upto
                link_key, param = "@odata.deltaLink", "$deltatoken"
            self._delta_tokens[token] = state
        body = {
            "@odata.context": f"{self.graph_url}/$metadata#Collection({collection.kind})",
            "value": values,
            link_key: f"{self.url}{request.path}?{urlencode({param: token})}",
        }
        return self._ok(body, zone)

    def _changed_since(self, collection: Collection, since: int) -> list[str]:
        changes = [(seq, i) for i, seq in collection.seq_of.items() if seq > since]
        changes += [(seq, i) for i, seq in collection.tombstones.items() if seq > since]
        return [i for _, i in sorted(changes)]

    def _delta_entry(
        self, collection: Collection, item_id: str, window: tuple[datetime, datetime] | None, zone: str | None
    ) -> dict[str, Any]:
        item = collection.items.get(item_id)
        if item is not None and self._in_window(item, window):
            return self._render(collection, item, zone)
        kind = {"contacts": _CONTACT_TYPE, "events": _EVENT_TYPE}.get(collection.kind, "#microsoft.graph.message")
        return {"@odata.type": kind, "id": item_id, "@removed": {"reason": "deleted"}}

    @staticmethod
    def _window(request: Request) -> tuple[datetime, datetime]:
        start, end = request.arg("startDateTime"), request.arg("endDateTime")
        if not start or not end:
            raise HttpError(
                400,
                "ErrorInvalidParameter",
                "This request requires a time window specified by the query string parameters StartDateTime and "
                "EndDateTime.",
            )
        try:
            return _parse_time(start), _parse_time(end)
        except ValueError as exc:
            raise HttpError(
                400, "ErrorInvalidParameter", "The value of the StartDateTime or EndDateTime is invalid."
            ) from exc

    # ------------------------------------------------------------------------------ contact routes

    @route("GET", USER + r"/contactFolders")
    def list_folders(self, request: Request) -> Response:
        mailbox = self._user(request)
        wanted: str | None = None
        flt = request.arg("$filter")
        if flt:
            match = re.fullmatch(r"\s*displayName\s+eq\s+'((?:[^']|'')*)'\s*", flt)
            if not match:
                raise HttpError(
                    400, "ErrorInvalidUrlQueryFilter", "The query filter contains one or more invalid nodes."
                )
            wanted = match.group(1).replace("''", "'")
        folders = [
            {"id": f.id, "displayName": f.display_name, "parentFolderId": mailbox.contacts.id}
            for f in mailbox.folders.values()
            if wanted is None or f.display_name == wanted
        ]
        return self._ok({"@odata.context": f"{self.graph_url}/$metadata#contactFolders", "value": folders})

    @route("POST", USER + r"/contactFolders")
    def create_folder(self, request: Request) -> Response:
        mailbox = self._user(request)
        name = str((request.json() or {}).get("displayName") or "")
        if not name:
            raise HttpError(400, "ErrorInvalidRequest", "The folder display name is required.")
        if any(f.display_name.lower() == name.lower() for f in mailbox.folders.values()):
            raise HttpError(409, "ErrorFolderExists", "A folder with the specified name already exists.")
        folder_id = self.add_contact_folder(mailbox.user_id, name)
        return self._ok({"id": folder_id, "displayName": name, "parentFolderId": mailbox.contacts.id}, status=201)

    @route("GET", USER + r"/contactFolders/(?P<folder>[^/]+)")
    def get_folder(self, request: Request) -> Response:
        mailbox = self._user(request)
        folder = mailbox.folder(request.params["folder"])
        return self._ok({"id": folder.id, "displayName": folder.display_name, "parentFolderId": mailbox.contacts.id})

    @route("GET", USER + r"/contactFolders/(?P<folder>[^/]+)/contacts" + DELTA)
    def contacts_delta(self, request: Request) -> Response:
        mailbox = self._user(request)
        return self._delta(request, mailbox, mailbox.folder(request.params["folder"]), window_required=False)

    @route("GET", USER + r"/contacts" + DELTA)
    def default_contacts_delta(self, request: Request) -> Response:
        mailbox = self._user(request)
        return self._delta(request, mailbox, mailbox.contacts, window_required=False)

    @route("GET", USER + r"/contactFolders/(?P<folder>[^/]+)/contacts")
    def list_folder_contacts(self, request: Request) -> Response:
        mailbox = self._user(request)
        return self._collection_page(request, mailbox.folder(request.params["folder"]), None)

    @route("POST", USER + r"/contactFolders/(?P<folder>[^/]+)/contacts")
    def create_folder_contact(self, request: Request) -> Response:
        mailbox = self._user(request)
        folder = mailbox.folder(request.params["folder"])
        return self._ok(self._create(mailbox, folder, self._body(request, CONTACT_SCHEMA)), status=201)

    @route("GET", USER + r"/contacts")
    def list_default_contacts(self, request: Request) -> Response:
        return self._collection_page(request, self._user(request).contacts, None)

    @route("POST", USER + r"/contacts")
    def create_default_contact(self, request: Request) -> Response:
        mailbox = self._user(request)
        return self._ok(self._create(mailbox, mailbox.contacts, self._body(request, CONTACT_SCHEMA)), status=201)

    @route(
        "GET",
        USER + r"/(?:contactFolders/[^/]+/)?contacts/(?P<contact>(?!(?:microsoft\.graph\.)?delta(?:\(\))?\Z)[^/]+)",
    )
    def get_contact(self, request: Request) -> Response:
        mailbox = self._user(request)
        folder, item = mailbox.find_contact(request.params["contact"])
        return self._ok(self._render(folder, item, None, request.arg("$expand")))

    @route("PATCH", USER + r"/(?:contactFolders/[^/]+/)?contacts/(?P<contact>[^/]+)")
    def update_contact(self, request: Request) -> Response:
        mailbox = self._user(request)
        folder, _ = mailbox.find_contact(request.params["contact"])
        changes = self._body(request, CONTACT_SCHEMA)
        return self._ok(
            self._update(mailbox, folder, request.params["contact"], changes, request.headers.get("if-match"))
        )

    @route("DELETE", USER + r"/(?:contactFolders/[^/]+/)?contacts/(?P<contact>[^/]+)")
    def delete_contact(self, request: Request) -> Response:
        mailbox = self._user(request)
        folder, _ = mailbox.find_contact(request.params["contact"])
        self._delete(mailbox, folder, request.params["contact"])
        return Response(204)

    @staticmethod
    def _body(request: Request, schema: Complex | None = None) -> dict[str, Any]:
        try:
            body = request.json()
        except ValueError as exc:
            raise HttpError(400, "BadRequest", "Unable to read JSON request payload.") from exc
        if not isinstance(body, dict):
            raise HttpError(400, "BadRequest", "Empty Payload. JSON content expected.")
        return body if schema is None else validate(schema, body)

    # ------------------------------------------------------------------------------ event routes

    MAIL_FOLDER = r"/mailFolders(?:/(?P<folder>[^/()]+)|\('(?P<quoted>[^']+)'\))/messages"

    def _mail_folder(self, request: Request) -> tuple[Mailbox, Collection]:
        mailbox = self._user(request)
        return mailbox, mailbox.mail_folder(request.params.get("folder") or request.params.get("quoted") or "")

    @route("GET", USER + MAIL_FOLDER)
    def list_messages(self, request: Request) -> Response:
        return self._collection_page(request, self._mail_folder(request)[1], None)

    @route("GET", USER + MAIL_FOLDER + DELTA)
    def messages_delta(self, request: Request) -> Response:
        mailbox, folder = self._mail_folder(request)
        return self._delta(request, mailbox, folder, window_required=False)

    @route("GET", USER + r"/messages/(?P<message>[^/]+)")
    def get_message(self, request: Request) -> Response:
        """``GET /users/{id}/messages/{id}``: a message from any of the user's mail folders."""
        mailbox = self._user(request)
        for folder in mailbox.mail.values():
            item = folder.items.get(request.params["message"])
            if item is not None:
                return self._ok(self._render(folder, item, None, request.arg("$expand")), None)
        raise HttpError(404, "ErrorItemNotFound", "The specified object was not found in the store.")

    @route("GET", USER + r"/(?:calendar/)?events")
    def list_events(self, request: Request) -> Response:
        return self._collection_page(request, self._user(request).calendar, None)

    @route("POST", USER + r"/(?:calendar/)?events")
    def create_event(self, request: Request) -> Response:
        mailbox = self._user(request)
        body = self._body(request, EVENT_SCHEMA)
        with self._lock:
            known = set(mailbox.calendar.items)
            created = self._create(mailbox, mailbox.calendar, body)
            if created["id"] not in known:  # not a repeated transactionId
                self._mail_attendees(mailbox, mailbox.calendar.items[created["id"]], None)
        zone, _ = _prefer(request)
        return self._ok(self._render(mailbox.calendar, mailbox.calendar.items[created["id"]], zone), zone, 201)

    @route("GET", USER + r"/(?:calendar/)?events/(?P<event>[^/]+)")
    def get_event(self, request: Request) -> Response:
        mailbox = self._user(request)
        item = mailbox.calendar.items.get(request.params["event"])
        if item is None:
            raise HttpError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        zone, _ = _prefer(request)
        return self._ok(self._render(mailbox.calendar, item, zone, request.arg("$expand")), zone)

    @route("PATCH", USER + r"/(?:calendar/)?events/(?P<event>[^/]+)")
    def update_event(self, request: Request) -> Response:
        mailbox = self._user(request)
        event_id = request.params["event"]
        changes = self._body(request, EVENT_SCHEMA)
        with self._lock:
            before = copy.deepcopy(mailbox.calendar.items.get(event_id))
            self._update(mailbox, mailbox.calendar, event_id, changes, request.headers.get("if-match"))
            self._mail_attendees(mailbox, mailbox.calendar.items[event_id], before)
        zone, _ = _prefer(request)
        return self._ok(self._render(mailbox.calendar, mailbox.calendar.items[event_id], zone), zone)

    @route("DELETE", USER + r"/(?:calendar/)?events/(?P<event>[^/]+)")
    def delete_event(self, request: Request) -> Response:
        mailbox = self._user(request)
        with self._lock:
            before = copy.deepcopy(mailbox.calendar.items.get(request.params["event"]))
            self._delete(mailbox, mailbox.calendar, request.params["event"])
            if before is not None:
                self._mail_attendees(mailbox, None, before)
        return Response(204)

    def _mail_attendees(self, mailbox: Mailbox, after: dict[str, Any] | None, before: dict[str, Any] | None) -> None:
        """Record the mail Exchange sends when a meeting is written through Graph: the organiser's create
        invites every attendee, each update mails them all again (new ones an invitation, dropped ones a
        cancellation), a delete cancels; see https://learn.microsoft.com/en-us/graph/api/event-update and
        .../event-delete. A write to an attendee's copy (``isOrganizer`` false) changes that copy only and
        mails nobody; it is recorded in :attr:`attendee_copy_writes` so a test can tell it happened."""
        event = after or before
        assert event is not None
        if not event.get("isOrganizer", True):
            action = "updated" if after is not None else "deleted"
            self.attendee_copy_writes.append({"user": mailbox.upn, "event_id": event["id"], "action": action})
            return

        def guests(item: dict[str, Any] | None) -> list[str]:
            addresses = [
                str((a.get("emailAddress") or {}).get("address") or "").lower()
                for a in (item or {}).get("attendees") or []
            ]
            return [a for a in dict.fromkeys(addresses) if a and a != mailbox.upn]

        old, new = guests(before), guests(after)
        mails = [(g, "cancellation") for g in old if g not in new]
        if after is not None:
            mails += [(g, "update" if g in old else "invitation") for g in new]
        subject = str(event.get("subject") or "")
        for recipient, kind in mails:
            self.attendee_mails.append(
                {"user": mailbox.upn, "event_id": event["id"], "kind": kind, "recipient": recipient, "subject": subject}
            )

    @route("GET", USER + r"/(?:calendar/)?calendarView")
    def calendar_view(self, request: Request) -> Response:
        mailbox = self._user(request)
        return self._collection_page(request, mailbox.calendar, self._window(request))

    @route("GET", USER + r"/(?:calendar/)?calendarView" + DELTA)
    def calendar_view_delta(self, request: Request) -> Response:
        mailbox = self._user(request)
        return self._delta(request, mailbox, mailbox.calendar, window_required=True)

    # ------------------------------------------------------------------------------ $batch

    @route("POST", r"/v1\.0/(?:\$|%24)batch")
    def batch(self, request: Request) -> Response:
        """https://learn.microsoft.com/en-us/graph/json-batching: at most 20 requests, unique ids, optional
        ``dependsOn``; answers come back in any order (shuffled here on purpose)."""
        self._claims(request)
        body = self._body(request)
        items = body.get("requests")
        if not isinstance(items, list) or not items:
            raise HttpError(400, "BadRequest", "Invalid batch payload format.")
        if len(items) > BATCH_LIMIT:
            raise HttpError(
                400, "BadRequest", f"Unable to deserialize content. Batch requests are limited to {BATCH_LIMIT}."
            )
        ids = [str(item.get("id")) for item in items if isinstance(item, dict)]
        if len(ids) != len(items) or len({i.lower() for i in ids}) != len(ids):
            raise HttpError(400, "BadRequest", "Batch request ids must be unique.")
        statuses: dict[str, int] = {}
        responses = []
        for item in items:
            item_id = str(item["id"])
            deps = [str(d) for d in item.get("dependsOn") or []]
            if any(not 200 <= statuses.get(d, 0) < 300 for d in deps):
                answer = self.error(424, "FailedDependency", "Request failed because one of its dependencies failed.")
            else:
                answer = self._batch_one(item, request)
            statuses[item_id] = answer.status
            entry: dict[str, Any] = {"id": item_id, "status": answer.status, "headers": dict(answer.headers)}
            if answer.body is not None:
                entry["headers"]["Content-Type"] = answer.content_type
                entry["body"] = answer.body
            with self._lock:
                missing = self.batch_answers_missing > 0
                self.batch_answers_missing -= missing
            if not missing:
                responses.append(entry)
        self._random.shuffle(responses)
        return Response(200, {"responses": responses})

    def _batch_one(self, item: dict[str, Any], outer: Request) -> Response:
        url = str(item.get("url") or "")
        if "://" in url:
            return self.error(400, "BadRequest", "Batch request URLs must be relative.")
        parts = urlsplit("/" + url.lstrip("/"))
        if parts.path.endswith("batch"):
            return self.error(400, "BadRequest", "Nested batch requests are not supported.")
        with self._lock:
            if self.batch_item_throttle > 0:
                self.batch_item_throttle -= 1
                return self.throttled(self.batch_item_retry_after)
        headers = {str(k).lower(): str(v) for k, v in (item.get("headers") or {}).items()}
        if "authorization" in outer.headers:
            headers["authorization"] = outer.headers["authorization"]
        sub = Request(
            method=str(item.get("method") or "GET").upper(),
            path="/v1.0" + parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers=headers,
            body=json.dumps(item["body"]).encode() if item.get("body") is not None else b"",
        )
        for method, pattern, handler in self._routes:
            match = pattern.match(sub.path)
            if match and method == sub.method:
                sub.params = match.groupdict()
                try:
                    return handler(self, sub)
                except HttpError as exc:
                    return self.error(exc.status, exc.code, exc.message, **exc.extra)
        return self.error(400, "BadRequest", f"Resource not found for the segment '{parts.path.rsplit('/', 1)[-1]}'.")

    # ------------------------------------------------------------------------------ subscriptions

    def _resolve_resource(self, tenant: str, resource: str) -> tuple[Mailbox, str, str | None]:
        path = resource.strip().lstrip("/")
        patterns = (
            (r"users/([^/]+)/(?:calendar/)?events", "events"),
            (r"users/([^/]+)/contactFolders/([^/]+)/contacts", "contacts"),
            (r"users/([^/]+)/contacts", "contacts"),
            (r"users/([^/]+)/(?:mailFolders\('?(?:inbox|sentitems)'?\)/)?messages", "messages"),
        )
        for pattern, kind in patterns:
            match = re.fullmatch(pattern, path, re.IGNORECASE)
            if match:
                mailbox = self.mailbox(match.group(1))
                if mailbox.tenant != tenant:
                    raise HttpError(
                        404,
                        "ExtensionError",
                        "Operation: Create; Exception: [Status Code: NotFound; Reason: The mailbox was not found.]",
                    )
                if kind == "events":
                    return mailbox, kind, mailbox.calendar.id
                if kind == "contacts":
                    folder_id = match.group(2) if match.lastindex and match.lastindex >= 2 else mailbox.contacts.id
                    return mailbox, kind, mailbox.folder(folder_id).id
                return mailbox, kind, None
        raise HttpError(400, "InvalidRequest", f"Resource '{resource}' is not supported.")

    def _check_expiration(self, value: Any) -> datetime:
        try:
            expiration = _parse_time(str(value))
        except ValueError as exc:
            raise HttpError(400, "InvalidRequest", "expirationDateTime is not a valid date and time.") from exc
        if expiration > _now() + timedelta(minutes=MAX_SUBSCRIPTION_MINUTES):
            raise HttpError(
                400,
                "ExtensionError",
                f"Subscription expiration can only be {MAX_SUBSCRIPTION_MINUTES} minutes in the future.",
            )
        if expiration <= _now():
            raise HttpError(400, "ExtensionError", "Subscription expiration must be in the future.")
        return expiration

    def _handshake(self, url: str) -> None:
        """The validation request: https://learn.microsoft.com/en-us/graph/change-notifications-delivery-webhooks
        (POST ``?validationToken=`` form-encoded, ``text/plain``, empty body; 200 ``text/plain`` echo within 10 s)."""
        if not url.startswith("https://") and not re.match(r"http://(127\.0\.0\.1|localhost)[:/]", url):
            raise HttpError(
                400, "ValidationError", "Subscription validation request failed. NotificationUrl must be https."
            )
        token = f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
        target = url + ("&" if "?" in url else "?") + urlencode({"validationToken": token})
        try:
            with httpx.Client(timeout=self.validation_timeout_s, verify=self.webhook_verify) as client:
                answer = client.post(target, content=b"", headers={"Content-Type": "text/plain; charset=utf-8"})
        except httpx.TimeoutException as exc:
            raise HttpError(400, "InvalidRequest", "Subscription validation request timed out.") from exc
        except httpx.HTTPError as exc:
            raise HttpError(
                400,
                "ValidationError",
                "Subscription validation request failed. Notification endpoint must respond with 200 OK to "
                "validation request.",
            ) from exc
        if answer.status_code != 200:
            raise HttpError(
                400,
                "ValidationError",
                "Subscription validation request failed. Notification endpoint must respond with 200 OK to "
                "validation request.",
            )
        if not answer.headers.get("content-type", "").startswith("text/plain") or answer.text != token:
            raise HttpError(
                400,
                "ValidationError",
                "Subscription validation request failed. Response must exactly match validationToken query parameter.",
            )

    def _render_subscription(self, sub: Subscription) -> dict[str, Any]:
        return {
            "@odata.context": f"{self.graph_url}/$metadata#subscriptions/$entity",
            "id": sub.id,
            "resource": sub.resource,
            "applicationId": sub.app_id,
            "changeType": sub.change_type,
            "clientState": sub.client_state,
            "notificationUrl": sub.notification_url,
            "notificationQueryOptions": None,
            "lifecycleNotificationUrl": sub.lifecycle_url,
            "expirationDateTime": _stamp7(sub.expiration).replace("+00:00", "Z"),
            "creatorId": sub.app_id,
            "includeResourceData": False,
            "latestSupportedTlsVersion": "v1_2",
            "encryptionCertificate": None,
            "encryptionCertificateId": None,
            "notificationUrlAppId": None,
        }

    def _own_subscription(self, request: Request) -> Subscription:
        claims = self._claims(request)
        sub = self.subscriptions.get(request.params["sub"])
        if sub is None or sub.app_id != claims["appid"] or not sub.live():
            raise HttpError(404, "ResourceNotFound", f"The object '{request.params['sub']}' doesn't exist.")
        return sub

    @route("POST", r"/v1\.0/subscriptions")
    def create_subscription(self, request: Request) -> Response:
        claims = self._claims(request)
        body = self._body(request, SUBSCRIPTION_SCHEMA)
        for key in ("changeType", "notificationUrl", "resource", "expirationDateTime"):
            if not body.get(key):
                raise HttpError(400, "InvalidRequest", f"{key} is a required property for subscription creation.")
        change_types = {c.strip() for c in str(body["changeType"]).split(",")}
        if not change_types <= {"created", "updated", "deleted"}:
            raise HttpError(400, "InvalidRequest", f"Invalid changeType '{body['changeType']}'.")
        client_state = body.get("clientState")
        if client_state is not None and len(str(client_state)) > 128:
            raise HttpError(400, "InvalidRequest", "clientState must not be longer than 128 characters.")
        expiration = self._check_expiration(body["expirationDateTime"])
        mailbox, kind, collection_id = self._resolve_resource(claims["tid"], str(body["resource"]))
        self._handshake(str(body["notificationUrl"]))
        if body.get("lifecycleNotificationUrl"):
            self._handshake(str(body["lifecycleNotificationUrl"]))
        sub = Subscription(
            id=str(uuid.uuid4()),
            tenant=claims["tid"],
            app_id=claims["appid"],
            resource=str(body["resource"]),
            user_id=mailbox.user_id,
            kind=kind,
            collection_id=collection_id,
            change_types=change_types,
            change_type=str(body["changeType"]),
            notification_url=str(body["notificationUrl"]),
            lifecycle_url=body.get("lifecycleNotificationUrl"),
            client_state=None if client_state is None else str(client_state),
            expiration=expiration,
        )
        with self._lock:
            self.subscriptions[sub.id] = sub
        return Response(201, self._render_subscription(sub))

    @route("GET", r"/v1\.0/subscriptions")
    def list_subscriptions(self, request: Request) -> Response:
        claims = self._claims(request)
        subs = [s for s in self.subscriptions.values() if s.app_id == claims["appid"] and s.live()]
        return Response(200, {"value": [self._render_subscription(s) for s in subs]})

    @route("GET", r"/v1\.0/subscriptions/(?P<sub>[^/]+)")
    def get_subscription(self, request: Request) -> Response:
        return Response(200, self._render_subscription(self._own_subscription(request)))

    @route("PATCH", r"/v1\.0/subscriptions/(?P<sub>[^/]+)")
    def renew_subscription(self, request: Request) -> Response:
        sub = self._own_subscription(request)
        body = self._body(request, SUBSCRIPTION_SCHEMA)
        if "expirationDateTime" in body:
            sub.expiration = self._check_expiration(body["expirationDateTime"])
            sub.needs_reauthorization = False  # renewing also reauthorizes
        return Response(200, self._render_subscription(sub))

    @route("DELETE", r"/v1\.0/subscriptions/(?P<sub>[^/]+)")
    def delete_subscription(self, request: Request) -> Response:
        sub = self._own_subscription(request)
        with self._lock:
            self.subscriptions.pop(sub.id, None)
        return Response(204)

    @route("POST", r"/v1\.0/subscriptions/(?P<sub>[^/]+)/reauthorize")
    def reauthorize_subscription(self, request: Request) -> Response:
        sub = self._own_subscription(request)
        sub.needs_reauthorization = False
        return Response(200)

    # ------------------------------------------------------------------------------ notifications

    def _notify(self, mailbox: Mailbox, collection: Collection, item: dict[str, Any], change: str) -> None:
        """Queue a change notification for every live subscription on the item's collection; notifications
        to one URL within ``notification_window_s`` travel in one POST, as Graph batches them."""
        segment, odata_type = ("Contacts", "#Microsoft.Graph.Contact")
        if collection.kind == "events":
            segment, odata_type = ("Events", "#Microsoft.Graph.Event")
        resource = f"Users/{mailbox.user_id}/{segment}/{item['id']}"
        with self._lock:
            subs = [
                s
                for s in self.subscriptions.values()
                if s.live()
                and s.user_id == mailbox.user_id
                and s.collection_id == collection.id
                and change in s.change_types
            ]
        for sub in subs:
            data: dict[str, Any] = {"@odata.type": odata_type, "@odata.id": resource, "id": item["id"]}
            if change != "deleted":
                data["@odata.etag"] = f'W/"{item["changeKey"]}"'
            notification = {
                "subscriptionId": sub.id,
                "subscriptionExpirationDateTime": _stamp7(sub.expiration),
                "changeType": change,
                "resource": resource,
                "resourceData": data,
                "clientState": sub.client_state,
                "tenantId": sub.tenant,
            }
            self._enqueue(sub.notification_url, notification)

    def _enqueue(self, url: str, notification: dict[str, Any]) -> None:
        with self._lock:
            self._outbox.setdefault(url, []).append(notification)
            if url not in self._timers:
                timer = threading.Timer(self.notification_window_s, self._flush, [url])
                timer.daemon = True
                self._timers[url] = timer
                timer.start()

    def _flush(self, url: str) -> None:
        with self._lock:
            self._timers.pop(url, None)
            items = self._outbox.pop(url, [])
        if items:
            self._push(url, items)

    def _push(self, url: str, items: list[dict[str, Any]]) -> None:
        body = json.dumps({"value": items}).encode("utf-8")
        self.pusher.send(url, body, {"Content-Type": "application/json; charset=utf-8"})


def main(argv: list[str] | None = None) -> None:
    """Serve the sandbox with seed data until Ctrl-C."""
    parser = argparse.ArgumentParser(description="Microsoft Graph sandbox with seed data")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = a free one)")
    args = parser.parse_args(argv)
    sandbox = GraphSandbox(port=args.port)
    sandbox.start()
    sandbox.seed()
    print(f"Graph sandbox: login_url={sandbox.url} graph_url={sandbox.graph_url}", flush=True)
    print(f"CA bundle: {ca_bundle_path()}", flush=True)
    print(f"tenant={SEED_TENANT} client_id={SEED_CLIENT_ID} client_secret={SEED_CLIENT_SECRET}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping", flush=True)
    finally:
        sandbox.stop()


if __name__ == "__main__":
    main()
