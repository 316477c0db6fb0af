"""Normalisation, time zones, paths, transforms round-trips and mapping validation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from concord.core import MappingError, default_mapping, load_mapping
from concord.core import normalize as norm
from concord.core.paths import parse_path
from concord.core.timezones import UnknownTimeZone, resolve_zone
from concord.core.transforms import Context
from tests.unit.core.fixtures import GRAPH_CONTACT, GRAPH_EVENT, SF_CONTACT, SF_EVENT


def test_emails_trimmed_and_lower_cased() -> None:
    assert norm.email("  Ada@Example.COM ") == "ada@example.com"
    assert norm.email("   ") is None


def test_phones_in_e164_when_they_parse_else_as_entered() -> None:
    assert norm.phone("(415) 555-0100") == "+14155550100"
    assert norm.phone("+44 20 7946 0958") == "+442079460958"
    assert norm.phone("call me maybe") == "call me maybe"
    assert norm.phone("+1 415 555 0100 ext. 12") == "+1 415 555 0100 ext. 12"


def test_windows_and_iana_zones_both_understood() -> None:
    # GIVEN a Graph start in a Windows zone, in summer time
    moment = norm.parse_datetime("2026-07-01T09:00:00.0000000", "Pacific Standard Time")
    # THEN it is the same instant as the IANA zone gives
    assert moment == norm.parse_datetime("2026-07-01T09:00:00", "America/Los_Angeles")
    assert moment is not None and norm.datetime_key(moment) == "2026-07-01T16:00:00Z"
    assert resolve_zone("w. europe standard time").key == "Europe/Berlin"
    with pytest.raises(UnknownTimeZone):
        resolve_zone("Atlantis Standard Time")


def test_salesforce_and_epoch_datetimes_are_aware() -> None:
    assert norm.datetime_key(norm.parse_datetime("2026-01-05T10:00:00.000+0000") or _fail()) == "2026-01-05T10:00:00Z"
    assert norm.datetime_key(norm.parse_datetime(1767607200000) or _fail()) == "2026-01-05T10:00:00Z"


def _fail() -> None:
    raise AssertionError("expected a value")


def test_html_bodies_reduced_to_text_and_whitespace_collapsed() -> None:
    html = "<html><head><style>p{}</style></head><body><p>Agenda:</p><p>Numbers<br>Plans &amp; more</p></body></html>"
    assert norm.html_to_text(html) == "Agenda:\nNumbers\nPlans & more"
    assert norm.text("  a \n  b  ") == "a b"
    assert norm.multiline_text("a  b\n\n\n\nc ") == "a b\n\nc"


def test_paths_read_and_patch_lists_and_selectors() -> None:
    doc = {"phoneNumbers": [{"type": "work", "value": "1"}, {"type": "home", "value": "2"}]}
    path = parse_path("phoneNumbers[type=home].value")
    assert path.get(doc) == "2"
    patch: dict[str, object] = {}
    path.set(patch, doc, "3")
    parse_path("phoneNumbers[type=mobile].value").set(patch, doc, "4")
    assert patch == {
        "phoneNumbers": [
            {"type": "work", "value": "1"},
            {"type": "home", "value": "3"},
            {"type": "mobile", "value": "4"},
        ]
    }
    assert doc["phoneNumbers"][1]["value"] == "2"  # the current record is never modified


VALUES = {
    "text": st.text(alphabet="abc XYZ", min_size=1, max_size=8).map(norm.text),
    "phone": st.sampled_from(["+14155550100", "+442079460958", "not a phone"]),
    "date": st.dates().map(lambda day: day.isoformat()),
}


@settings(max_examples=40, derandomize=True, database=None)
@given(data=st.data())
def test_every_transform_reads_back_what_it_writes(data: st.DataObject) -> None:
    """read(write(v)) == settle(v) on both sides, for every field of the default mapping."""
    mapping = default_mapping()
    for kind, sobject in (("contact", "Contact"), ("contact", "Lead"), ("event", "Event")):
        for provider in ("graph", "google"):
            om = mapping.compile(kind, sobject, provider)  # type: ignore[arg-type]
            ctx = Context(provider=provider, sobject=sobject)  # type: ignore[arg-type]
            for rule in om.fields:
                value = data.draw(_value_for(rule.transform.name, rule.name))
                if value is None or rule.mb_path is None:
                    continue
                mb_patch: dict[str, object] = {}
                rule.transform.write_mb(rule, value, mb_patch, None, ctx)
                if rule.transform.name != "all_day" or provider != "google":
                    assert rule.transform.read_mb(rule, mb_patch, ctx) == rule.transform.settle_mb(value, ctx), (
                        rule.name
                    )
                # the plan's bound readers (cached, inlined) read exactly what read_* reads
                assert rule.transform.mb_reader(rule, ctx)(mb_patch) == rule.transform.read_mb(rule, mb_patch, ctx)
                if rule.relates:
                    continue
                sf_patch: dict[str, object] = {"IsAllDayEvent": isinstance(value, str) and len(value) == 10}
                rule.transform.write_sf(rule, value, sf_patch, None, ctx)
                assert rule.transform.read_sf(rule, sf_patch, ctx) == rule.transform.settle_sf(value, ctx), rule.name
                assert rule.transform.sf_reader(rule, ctx)(sf_patch) == rule.transform.read_sf(rule, sf_patch, ctx)


def _value_for(transform: str, name: str) -> st.SearchStrategy[norm.Value]:
    if transform in ("text", "account_name"):
        return VALUES["text"]
    if transform in ("multiline", "html_text"):
        return st.sampled_from(["one line", "two\nlines", "para\n\nnext"])
    if transform == "email":
        return st.sampled_from(["a@x.com", "b.c@y.org"])
    if transform == "phone":
        return VALUES["phone"]
    if transform == "date":
        return VALUES["date"]
    if transform in ("bool", "private"):
        return st.booleans()
    if transform == "all_day":
        return st.just(False)
    if transform == "datetime_tz":
        return st.sampled_from(["2026-03-10T16:00:00Z", "2026-11-01T08:30:00Z"])
    if transform == "show_as":
        return st.sampled_from(["busy", "free", "tentative", "oof"])
    if transform == "address":
        return st.sampled_from([("1 Main St", "Springfield", "IL", "62701", "USA"), ("", "Paris", "", "", "France")])
    if transform == "attendees":
        return st.sampled_from([("a@x.com",), ("a@x.com", "b@y.com")])
    raise AssertionError(f"no strategy for {transform} ({name})")


GOOD = """\
version: 1
contacts:
  salesforce_objects: [Contact]
  fields:
    - name: first_name
      salesforce: FirstName
      graph: givenName
    - name: title
      salesforce: Title
      graph: jobTitle
"""


def test_default_mapping_loads_and_covers_the_issue_fields() -> None:
    mapping = default_mapping()
    names = {rule.name for rule in mapping.compile("contact", "Contact", "graph").fields}
    assert {
        "first_name",
        "last_name",
        "email",
        "business_phone",
        "mobile_phone",
        "home_phone",
        "title",
        "department",
        "company",
        "mailing_address",
        "birthday",
    } <= names
    events = {rule.name for rule in mapping.compile("event", "Event", "google").fields}
    assert {
        "subject",
        "start",
        "end",
        "all_day",
        "location",
        "description",
        "private",
        "show_as",
        "attendees",
    } <= events
    emails = {rule.name for rule in mapping.compile("email", "Task", "graph").fields}
    assert emails == {"message_id", "subject", "participants", "date", "snippet"}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("salesforce: Title", "salesforce: Titel"),
            "mapping.yaml:9: contacts.fields[1] (Titel): unknown Salesforce field 'Titel' on Contact",
        ),
        (
            ("      graph: jobTitle", "      graph: jobTitle\n      direction: sideways"),
            "mapping.yaml:11: contacts.fields[1] (Title): bad direction 'sideways'",
        ),
        (
            ("salesforce: Title", "salesforce: Name"),
            "mapping.yaml:8: contacts.fields[1] (Name): read-only Salesforce field cannot have direction 'both'",
        ),
        (
            ("salesforce: Title\n      graph: jobTitle", "salesforce: FirstName\n      graph: jobTitle"),
            "mapping.yaml:9: contacts.fields[1] (FirstName): duplicate target: Salesforce field 'FirstName'",
        ),
        (
            ("graph: jobTitle", "graph: jobTitel"),
            "mapping.yaml:10: contacts.fields[1] (Title): unknown graph contacts property 'jobTitel'",
        ),
        (
            ("      graph: jobTitle", "      graph: jobTitle\n      transform: shout"),
            "mapping.yaml:11: contacts.fields[1] (Title): unknown transform 'shout'",
        ),
    ],
)
def test_mapping_mistakes_name_file_line_and_field(change: tuple[str, str], expected: str) -> None:
    # GIVEN a mapping with one mistake
    text = GOOD.replace(*change)
    # WHEN it is loaded THEN the error names the file, the line and the field
    with pytest.raises(MappingError) as caught:
        load_mapping(text, "mapping.yaml")
    assert any(problem.startswith(expected) for problem in caught.value.problems), caught.value.problems


def test_both_ways_policy_on_read_only_field_is_an_error() -> None:
    text = GOOD.replace(
        "salesforce: Title", "salesforce: Name\n      direction: to_mailbox\n      policy: mailbox_always"
    )
    with pytest.raises(MappingError, match="both-ways policy 'mailbox_always'"):
        load_mapping(text, "mapping.yaml")


def test_bound_readers_read_what_read_methods_read() -> None:
    """The plan's per-field readers (bound context, cached normalisers) agree with ``read_sf``/``read_mb``
    on realistic records, including non-string raw values that bypass the string caches."""
    mapping = default_mapping()
    odd = {"Title": 42, "jobTitle": ["x"], "Phone": 4155550100, "birthday": 0, "Birthdate": None}
    cases = [
        ("contact", "Contact", SF_CONTACT, GRAPH_CONTACT),
        ("contact", "Contact", {**SF_CONTACT, **odd}, {**GRAPH_CONTACT, **odd}),
        ("event", "Event", SF_EVENT, GRAPH_EVENT),
        ("event", "Event", {**SF_EVENT, "IsAllDayEvent": True}, {**GRAPH_EVENT, "isAllDay": True}),
    ]
    for kind, sobject, sf_doc, mb_doc in cases:
        for provider in ("graph", "google"):
            om = mapping.compile(kind, sobject, provider)  # type: ignore[arg-type]
            ctx = Context(provider=provider, sobject=sobject, region="GB")  # type: ignore[arg-type]
            for rule in om.fields:
                assert rule.transform.sf_reader(rule, ctx)(sf_doc) == rule.transform.read_sf(rule, sf_doc, ctx)
                expected = rule.transform.read_mb(rule, mb_doc, ctx) if rule.mb_path is not None else None
                assert rule.transform.mb_reader(rule, ctx)(mb_doc) == expected, rule.name
