"""Data a transform cannot read or write raises ``UnsyncableValue`` (and nothing else), naming the field and
the transform but never quoting the value; ``plan()`` relies on it to plan a ``skip`` with the reason."""

from __future__ import annotations

from typing import Any

import pytest

from concord.core import default_mapping
from concord.core.timezones import WINDOWS_TO_IANA, UnknownTimeZone, resolve_zone
from concord.core.transforms import Context, UnsyncableValue
from tests.unit.core.fixtures import GRAPH_CONTACT, GRAPH_EVENT, SF_CONTACT, SF_EVENT

GOOGLE_EVENT: dict[str, Any] = {
    "id": "evt1",
    "summary": "Review",
    "start": {"dateTime": "2026-03-10T09:00:00-07:00", "timeZone": "America/Los_Angeles"},
    "end": {"dateTime": "2026-03-10T10:00:00-07:00"},
}
GOOGLE_CONTACT: dict[str, Any] = {
    "resourceName": "people/c1",
    "names": [{"givenName": "Ada", "familyName": "Lovelace"}],
    "birthdays": [{"date": {"year": 1815, "month": 12, "day": 10}}],
}


def _rule(kind: str, sobject: str, field: str, provider: str) -> Any:
    om = default_mapping().compile(kind, sobject, provider)  # type: ignore[arg-type]
    return next(rule for rule in om.fields if rule.name == field)


def _read_mb(kind: str, sobject: str, field: str, provider: str, doc: dict[str, Any]) -> Any:
    """Read through both ways the plan reads: the bound reader and ``read_mb``; both must agree."""
    rule = _rule(kind, sobject, field, provider)
    ctx = Context(provider=provider, sobject=sobject)  # type: ignore[arg-type]
    errors: list[UnsyncableValue] = []
    for read in (rule.transform.mb_reader(rule, ctx), lambda doc: rule.transform.read_mb(rule, doc, ctx)):
        with pytest.raises(UnsyncableValue) as caught:
            read(doc)
        errors.append(caught.value)
    assert str(errors[0]) == str(errors[1])
    return errors[0]


def _read_sf(kind: str, sobject: str, field: str, doc: dict[str, Any]) -> UnsyncableValue:
    rule = _rule(kind, sobject, field, "graph")
    ctx = Context(provider="graph", sobject=sobject)
    errors: list[UnsyncableValue] = []
    for read in (rule.transform.sf_reader(rule, ctx), lambda doc: rule.transform.read_sf(rule, doc, ctx)):
        with pytest.raises(UnsyncableValue) as caught:
            read(doc)
        errors.append(caught.value)
    assert str(errors[0]) == str(errors[1])
    return errors[0]


def test_unknown_windows_time_zone_names_the_field_and_the_zone() -> None:
    doc = {**GRAPH_EVENT, "start": {"dateTime": "2026-03-10T09:00:00.0000000", "timeZone": "Atlantis Standard Time"}}
    error = _read_mb("event", "Event", "start", "graph", doc)
    assert isinstance(error, ValueError)  # what plan() catches
    assert (error.field, error.transform) == ("start", "datetime_tz")
    assert "Atlantis Standard Time" in str(error)
    assert "'start'" in str(error)
    assert isinstance(error.__cause__, UnknownTimeZone)


def test_unknown_iana_time_zone() -> None:
    doc = {**GRAPH_EVENT, "end": {"dateTime": "2026-03-10T10:00:00.0000000", "timeZone": "Mars/Olympus_Mons"}}
    error = _read_mb("event", "Event", "end", "graph", doc)
    assert error.field == "end"
    assert "Mars/Olympus_Mons" in error.reason
    google = {**GOOGLE_EVENT, "start": {"dateTime": "2026-03-10T09:00:00", "timeZone": "Mars/Olympus_Mons"}}
    assert _read_mb("event", "Event", "start", "google", google).field == "start"


@pytest.mark.parametrize("zone", ["Z" * 5000, "Europe/" + "x" * 300, "../../etc/passwd", "Europe/Paris\x00"])
def test_a_strange_time_zone_name_is_unknown_and_not_quoted_whole(zone: str) -> None:
    doc = {**GRAPH_EVENT, "start": {"dateTime": "2026-03-10T09:00:00.0000000", "timeZone": zone}}
    assert len(str(_read_mb("event", "Event", "start", "graph", doc))) < 300


@pytest.mark.parametrize(
    ("provider", "field", "doc"),
    [
        ("graph", "start", {**GRAPH_EVENT, "start": {"dateTime": "next tuesday 9am", "timeZone": "UTC"}}),
        ("graph", "end", {**GRAPH_EVENT, "end": {"dateTime": "2026-02-30T09:00:00.0000000", "timeZone": "UTC"}}),
        ("google", "start", {**GOOGLE_EVENT, "start": {"dateTime": "next tuesday 9am"}}),
        ("google", "start", {**GOOGLE_EVENT, "start": {"date": "03/10/2026"}}),
        ("graph", "start", {**GRAPH_EVENT, "isAllDay": True, "start": {"dateTime": "Tuesday", "timeZone": "UTC"}}),
    ],
)
def test_unparsable_mailbox_datetimes(provider: str, field: str, doc: dict[str, Any]) -> None:
    error = _read_mb("event", "Event", field, provider, doc)
    assert error.field == field
    assert "tuesday" not in str(error).lower() and "2026" not in str(error)  # the value is never quoted


def test_unparsable_salesforce_datetime_and_date() -> None:
    error = _read_sf("event", "Event", "start", {**SF_EVENT, "StartDateTime": "2026-13-45T25:00:00.000+0000"})
    assert (error.field, error.transform) == ("start", "datetime_tz")
    assert "2026-13" not in str(error)
    error = _read_sf("contact", "Contact", "birthday", {**SF_CONTACT, "Birthdate": "1990-02-30"})
    assert (error.field, error.transform) == ("birthday", "date")
    assert "1990" not in str(error)


@pytest.mark.parametrize(
    ("provider", "doc"),
    [
        ("graph", {**GRAPH_CONTACT, "birthday": "1990-02-30T00:00:00Z"}),
        ("graph", {**GRAPH_CONTACT, "birthday": "3 Feb 1990"}),
        ("google", {**GOOGLE_CONTACT, "birthdays": [{"date": {"year": 1990, "month": 13, "day": 1}}]}),
        ("google", {**GOOGLE_CONTACT, "birthdays": [{"date": {"year": 1990, "month": 2, "day": 30}}]}),
    ],
)
def test_malformed_dates(provider: str, doc: dict[str, Any]) -> None:
    error = _read_mb("contact", "Contact", "birthday", provider, doc)
    assert (error.field, error.transform) == ("birthday", "date")


@pytest.mark.parametrize(
    ("kind", "sobject", "field", "provider", "doc"),
    [
        # a Google Date's parts are integers; a string is not silently taken as "no year"
        ("contact", "Contact", "birthday", "google", {"birthdays": [{"date": {"year": "1990", "month": 2, "day": 3}}]}),
        ("contact", "Contact", "birthday", "google", {"birthdays": [{"date": {"month": "2", "day": 3}}]}),
        ("contact", "Contact", "birthday", "graph", {"birthday": ["1990-02-03"]}),
        ("contact", "Contact", "birthday", "graph", {"birthday": {"year": 1990, "month": 2, "day": 3.5}}),
        ("event", "Event", "start", "graph", {"start": {"dateTime": "2026-03-10T09:00:00", "timeZone": 5}}),
        ("event", "Event", "start", "graph", {"start": {"dateTime": ["2026-03-10T09:00:00"], "timeZone": "UTC"}}),
        ("event", "Event", "start", "graph", {"isAllDay": True, "start": {"dateTime": 20260310, "timeZone": "UTC"}}),
        ("event", "Event", "start", "google", {"start": {"date": {"year": 2026, "month": 3, "day": 10}}}),
        ("event", "Event", "end", "google", {"end": {"dateTime": "2026-03-10T10:00:00", "timeZone": ["UTC"]}}),
        ("email", "Task", "date", "google", {"internalDate": "9" * 30}),  # epoch milliseconds out of range
        ("email", "Task", "date", "graph", {"receivedDateTime": 10**30}),
    ],
)
def test_wrong_types_from_a_provider(kind: str, sobject: str, field: str, provider: str, doc: dict[str, Any]) -> None:
    error = _read_mb(kind, sobject, field, provider, doc)
    assert error.field == field


def test_wrong_type_from_salesforce() -> None:
    assert _read_sf("event", "Event", "end", {**SF_EVENT, "EndDateTime": {"x": 1}}).field == "end"
    assert _read_sf("contact", "Contact", "birthday", {**SF_CONTACT, "Birthdate": [1990, 2, 3]}).field == "birthday"


ODD_VALUES: list[Any] = [
    0,
    -1,
    10**30,
    1.5,
    True,
    "",
    " ",
    "garbage",
    "9" * 40,
    [],
    ["x"],
    [{"x": 1}],
    {},
    {"x": [1]},
    {"date": 5, "dateTime": 5, "timeZone": 5},
    {"year": 1990, "month": "2", "day": 3},
    None,
]


@pytest.mark.parametrize("odd", ODD_VALUES, ids=[repr(value)[:20] for value in ODD_VALUES])
def test_no_provider_value_escapes_as_another_exception(odd: Any) -> None:
    """Whatever a provider puts at any mapped property, a read returns a value or raises UnsyncableValue."""
    mapping = default_mapping()
    for kind, sobject in (("contact", "Contact"), ("contact", "Lead"), ("event", "Event"), ("email", "Task")):
        for provider in ("graph", "google"):
            ctx = Context(provider=provider, sobject=sobject)  # type: ignore[arg-type]
            for rule in mapping.compile(kind, sobject, provider).fields:  # type: ignore[arg-type]
                docs: list[dict[str, Any]] = []
                if rule.mb_path is not None:
                    top = rule.mb_path.top
                    docs += [{top: odd}, {top: {rule.mb_path.steps[-1].key: odd}}, {top: [odd]}, {top: [{"x": odd}]}]
                    docs += [{**doc, "isAllDay": True} for doc in docs]
                for doc in docs:
                    for read in _readers(rule, ctx, "mailbox"):
                        _value_or_unsyncable(read, doc, rule.name)
                for path in rule.sf_paths:
                    for doc in ({path.top: odd}, {path.top: odd, "IsAllDayEvent": True}, {path.top: {"records": odd}}):
                        for read in _readers(rule, ctx, "salesforce"):
                            _value_or_unsyncable(read, doc, rule.name)


def _readers(rule: Any, ctx: Context, side: str) -> tuple[Any, Any]:
    """The plan's bound reader and the plain ``read_*`` method of one side."""
    if side == "salesforce":
        return rule.transform.sf_reader(rule, ctx), lambda doc: rule.transform.read_sf(rule, doc, ctx)
    return rule.transform.mb_reader(rule, ctx), lambda doc: rule.transform.read_mb(rule, doc, ctx)


def _value_or_unsyncable(read: Any, doc: dict[str, Any], field: str) -> None:
    try:
        read(doc)
    except UnsyncableValue as error:
        assert error.field == field


@pytest.mark.parametrize(
    ("kind", "sobject", "field", "value"),
    [
        ("contact", "Contact", "birthday", "not a date"),
        ("contact", "Contact", "birthday", "1990-02-30"),
        ("event", "Event", "start", "2026-03-10 16:00"),
        ("event", "Event", "end", "2026-02-30"),
    ],
)
@pytest.mark.parametrize("provider", ["graph", "google"])
def test_a_corrupt_canonical_value_is_refused_on_write(
    kind: str, sobject: str, field: str, value: str, provider: str
) -> None:
    """A value from a stored snapshot that is not canonical is never sent to an API as it is."""
    rule = _rule(kind, sobject, field, provider)
    ctx = Context(provider=provider, sobject=sobject)  # type: ignore[arg-type]
    for write in (rule.transform.write_mb, rule.transform.write_sf):
        with pytest.raises(UnsyncableValue) as caught:
            write(rule, value, {}, None, ctx)
        assert caught.value.field == field
        assert value not in str(caught.value)


def test_windows_time_zone_names_still_map_to_iana_zones() -> None:
    """Graph sends Windows names ("Pacific Standard Time"); each maps to a zone the layer's tzdata has."""
    for windows, iana in WINDOWS_TO_IANA.items():
        assert resolve_zone(windows).key == iana
    rule = _rule("event", "Event", "start", "graph")
    ctx = Context(provider="graph", sobject="Event")
    summer = {"start": {"dateTime": "2026-07-01T09:00:00.0000000", "timeZone": "Pacific Standard Time"}}
    assert rule.transform.mb_reader(rule, ctx)(summer) == "2026-07-01T16:00:00Z"
    assert rule.transform.read_mb(rule, {**summer, "start": {**summer["start"], "timeZone": "UTC"}}, ctx) == (
        "2026-07-01T09:00:00Z"
    )
