"""plan() where data meets the real services: organisers that cannot be established, events that turn
private, attendees Salesforce cannot hold, required fields, deliberate clears, unreadable fields,
cancelled and recurring events, and data no transform can read (issue 13, "The core")."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from concord.core import (
    ConnectionOptions,
    LinkState,
    MailboxRecord,
    MappingError,
    Plan,
    SalesforceRecord,
    load_mapping,
    plan,
)
from tests.unit.core.fixtures import GRAPH_CONTACT, GRAPH_EVENT, SF_CONTACT, SF_EVENT, contact_pair, event_pair, linked

NOW = datetime(2026, 1, 6, tzinfo=UTC)
OPTS = ConnectionOptions()
GUESTS = tuple(f"guest{i}@example.com" for i in range(5))
EXTERNAL = "partner@outside.example"


def _esf(**changes: Any) -> SalesforceRecord:
    return SalesforceRecord(id=SF_EVENT["Id"], sobject="Event", data={**SF_EVENT, **changes}, version="v2")


def _emb(**changes: Any) -> MailboxRecord:
    return MailboxRecord(id=GRAPH_EVENT["id"], data={**GRAPH_EVENT, **changes}, version="v2")


def _event_link(options: ConnectionOptions = OPTS, mailbox: MailboxRecord | None = None) -> LinkState:
    sf, mb = event_pair()
    return linked(plan("event", None, sf, mailbox or mb, options, now=NOW).new_link)


def _contact_link(options: ConnectionOptions = OPTS) -> LinkState:
    sf, mb = contact_pair()
    return linked(plan("contact", None, sf, mb, options, now=NOW).new_link)


def _sf(**changes: Any) -> SalesforceRecord:
    return SalesforceRecord(id=SF_CONTACT["Id"], sobject="Contact", data={**SF_CONTACT, **changes}, version="v2")


def _mb(**changes: Any) -> MailboxRecord:
    return MailboxRecord(id=GRAPH_CONTACT["id"], data={**GRAPH_CONTACT, **changes}, version="v2")


def _sides(result: Plan) -> list[tuple[str, str]]:
    return [(op.side, op.action) for op in result.writes]


# ---------------------------------------------------------------- 1. organiser


def _graph_event_without_organiser_flag(**changes: Any) -> dict[str, Any]:
    data = {key: value for key, value in GRAPH_EVENT.items() if key != "isOrganizer"}
    return {**data, "organizer": {"emailAddress": {"address": "boss@example.com"}}, **changes}


def test_a_meeting_whose_organiser_is_unknown_is_never_deleted() -> None:
    # GIVEN a linked meeting whose record does not say who organises it (no isOrganizer, no user email)
    options = ConnectionOptions(propagate_deletes=True)
    mailbox = MailboxRecord(id=GRAPH_EVENT["id"], data=_graph_event_without_organiser_flag())
    link = _event_link(options, mailbox)
    # WHEN the Salesforce event is deleted
    gone = SalesforceRecord(id=SF_EVENT["Id"], sobject="Event", deleted=True)
    result = plan("event", link, gone, mailbox, options, now=NOW)
    # THEN the meeting is treated as someone else's: unlinked, not deleted
    assert [op.action for op in result.operations] == ["unlink"]
    assert "organiser cannot be established" in result.notes[0]
    # ...while a user email that matches the organiser makes it the user's own
    mine = replace(options, user_email="Boss@Example.com")
    assert [op.action for op in plan("event", link, gone, mailbox, mine, now=NOW).operations] == ["delete", "unlink"]


def test_a_meeting_whose_organiser_is_unknown_is_never_written() -> None:
    options = ConnectionOptions(invitation_mode=True)
    mailbox = MailboxRecord(id=GRAPH_EVENT["id"], data=_graph_event_without_organiser_flag(), version="v2")
    link = _event_link(options, mailbox)
    result = plan("event", link, _esf(Subject="Moved"), mailbox, options, now=NOW)
    assert result.is_noop and result.decisions[0].kind == "held"
    assert "organiser cannot be established" in result.decisions[0].reason


def test_google_leaving_out_organizer_self_is_not_read_as_mine() -> None:
    # Google omits organizer.self when it is false: without a user email nothing says the event is ours.
    google = ConnectionOptions(provider="google", propagate_deletes=True)
    event = {
        "id": "gev1",
        "etag": '"1"',
        "iCalUID": "uid-1@google.com",
        "summary": "Call",
        "start": {"dateTime": "2026-03-10T09:00:00-08:00"},
        "end": {"dateTime": "2026-03-10T10:00:00-08:00"},
        "organizer": {"email": "someone@example.com"},
        "attendees": [{"email": "someone@example.com", "organizer": True}, {"email": "me@example.com", "self": True}],
    }
    mailbox = MailboxRecord(id="gev1", data=event)
    link = linked(plan("event", None, None, mailbox, google, now=NOW).new_link).with_ids(salesforce_id="00U1")
    gone = SalesforceRecord(id="00U1", sobject="Event", deleted=True)
    assert [op.action for op in plan("event", link, gone, mailbox, google, now=NOW).operations] == ["unlink"]


# ---------------------------------------------------------------- 2. private after linking


def test_a_linked_event_that_turns_private_sends_is_private_and_stops_exposing_its_content() -> None:
    # GIVEN a linked event, private events off (the default)
    link = _event_link()
    # WHEN the mailbox makes it private and changes its subject in the same edit
    result = plan("event", link, _esf(), _emb(sensitivity="private", subject="Layoffs"), OPTS, now=NOW)
    # THEN Salesforce learns it is private, but not the new subject
    assert [(op.side, dict(op.body)) for op in result.writes] == [("salesforce", {"IsPrivate": True})]
    assert any("private event" in note and "Subject" in note for note in result.notes)
    # ...and while it stays private, content edits on either side are no longer synced
    stored = linked(result.new_link).with_ids(salesforce_version="v3", mailbox_version="v3")
    later = plan(
        "event",
        stored,
        _esf(IsPrivate=True, Description="Internal notes"),
        _emb(sensitivity="private", subject="Layoffs v2"),
        OPTS,
        now=NOW,
    )
    assert later.is_noop


def test_with_private_events_on_a_private_event_syncs_as_usual() -> None:
    options = ConnectionOptions(sync_private_events=True)
    result = plan(
        "event", _event_link(options), _esf(), _emb(sensitivity="private", subject="Offsite"), options, now=NOW
    )
    assert [(op.side, dict(op.body)) for op in result.writes] == [
        ("salesforce", {"Subject": "Offsite", "IsPrivate": True})
    ]


def test_a_new_private_event_still_does_not_sync_with_the_option_off() -> None:
    private = MailboxRecord(id="new", data={**GRAPH_EVENT, "sensitivity": "private"})
    result = plan("event", None, None, private, OPTS, now=NOW)
    assert result.is_noop and result.new_link is None and "private" in result.notes[0]


# ---------------------------------------------------------------- 3. attendees Salesforce cannot hold


def _meeting_with_external(**changes: Any) -> MailboxRecord:
    attendees = [*GRAPH_EVENT["attendees"], {"emailAddress": {"address": EXTERNAL}, "type": "required"}]
    return _emb(attendees=attendees, **changes)


def _relations(emails: tuple[str, ...]) -> dict[str, Any]:
    return {
        "totalSize": len(emails),
        "done": True,
        "records": [{"RelationId": f"003{i}", "Relation": {"Email": email}} for i, email in enumerate(emails)],
    }


def test_attendees_salesforce_cannot_hold_are_never_removed_from_the_meeting() -> None:
    # GIVEN a new mailbox meeting with five known guests and one external attendee, invitation mode on
    options = ConnectionOptions(invitation_mode=True)
    created = plan("event", None, None, _meeting_with_external(), options, now=NOW)
    relate = next(op for op in created.operations if op.action == "relate")
    assert EXTERNAL in relate.body["add"]
    link = linked(created.new_link).with_ids(salesforce_id=SF_EVENT["Id"])
    # WHEN Salesforce could relate only the five guests (the worker did not settle anything)
    result = plan("event", link, _esf(EventRelations=_relations(GUESTS)), _meeting_with_external(), options, now=NOW)
    # THEN nothing is planned: no mailbox removal, no "held" decision
    assert result.is_noop and not result.decisions
    # ...and the next sync, with the same records, is quiet too
    again = linked(result.new_link).with_ids(salesforce_version="v3", mailbox_version="v3")
    assert plan("event", again, _esf(EventRelations=_relations(GUESTS)), _meeting_with_external(), options).is_noop


def test_the_worker_settles_what_salesforce_holds_after_a_relate() -> None:
    options = ConnectionOptions(invitation_mode=True)
    created = plan("event", None, None, _meeting_with_external(), options, now=NOW)
    link = linked(created.new_link).with_ids(salesforce_id=SF_EVENT["Id"]).settle_relation("attendees", GUESTS)
    assert link.salesforce_values["attendees"] == GUESTS and "attendees" not in link.unconfirmed
    result = plan("event", link, _esf(EventRelations=_relations(GUESTS)), _meeting_with_external(), options, now=NOW)
    assert result.is_noop and not result.decisions


def test_a_salesforce_removal_reaches_the_meeting_without_dropping_external_attendees() -> None:
    options = ConnectionOptions(invitation_mode=True)
    created = plan("event", None, None, _meeting_with_external(), options, now=NOW)
    link = linked(created.new_link).with_ids(salesforce_id=SF_EVENT["Id"]).settle_relation("attendees", GUESTS)
    # WHEN a Salesforce user removes guest1 from the event
    remaining = tuple(g for g in GUESTS if g != "guest1@example.com")
    result = plan("event", link, _esf(EventRelations=_relations(remaining)), _meeting_with_external(), options, now=NOW)
    # THEN the meeting loses guest1 and keeps the external attendee
    (update,) = result.writes
    written = {item["emailAddress"]["address"].lower() for item in update.body["attendees"]}
    assert written == {*remaining, EXTERNAL}


def test_a_first_sync_of_a_matched_meeting_keeps_every_attendee() -> None:
    options = ConnectionOptions(invitation_mode=True)
    sf = SalesforceRecord(
        id=SF_EVENT["Id"], sobject="Event", data={**SF_EVENT, "LastModifiedDate": "2026-01-06T00:00Z"}
    )
    result = plan("event", None, None, _meeting_with_external(), options, candidates=[sf], now=NOW)
    # Salesforce is newer, yet the external attendee is not removed from the meeting: it is related instead
    assert [(op.side, op.action) for op in result.writes] == [("salesforce", "relate")]
    assert result.writes[0].body["add"] == [EXTERNAL]


def test_matching_a_salesforce_meeting_to_its_attendee_less_mailbox_copy_invites_nobody() -> None:
    # GIVEN the mailbox copy Concord made of a Salesforce meeting, without its attendees (as creates are),
    # and the links lost (a reset): Salesforce newer, invitation mode off
    sf = SalesforceRecord(
        id=SF_EVENT["Id"], sobject="Event", data={**SF_EVENT, "LastModifiedDate": "2026-01-06T00:00Z"}
    )
    bare = _emb(attendees=[])
    matched = plan("event", None, None, bare, OPTS, candidates=[sf], now=NOW)
    # THEN matching links them and writes no attendee to the mailbox, now or on the next sync
    assert not [op for op in matched.writes if op.side == "mailbox" and "attendees" in op.body]
    assert any("adding them would invite them" in note for note in matched.notes)
    again = plan("event", linked(matched.new_link), sf, bare, OPTS, now=NOW)
    assert not [op for op in again.writes if op.side == "mailbox"]
    # but with invitation mode on, Salesforce's attendees are added
    invites = ConnectionOptions(invitation_mode=True)
    inviting = plan("event", None, None, bare, invites, candidates=[sf], now=NOW)
    assert [op for op in inviting.writes if op.side == "mailbox"]


def test_the_icalendar_uid_salesforce_holds_is_filled_once_and_never_swapped() -> None:
    # GIVEN a linked meeting whose mailbox copy now carries another UID (a copy Concord made, to which
    # the provider gave its own), Salesforce unchanged
    sf, mb = event_pair()
    link = linked(plan("event", None, sf, mb, OPTS, now=NOW).new_link)
    other_copy = replace(mb, data={**mb.data, "iCalUId": "another-copy-uid"}, version="v8")
    result = plan("event", link, replace(sf, version="v7"), other_copy, OPTS, now=NOW)
    # THEN Salesforce keeps the UID it holds
    assert not [op for op in result.writes if op.side == "salesforce" and "Concord_ICalUID__c" in op.body]
    # and a Salesforce meeting with no UID gets the mailbox's at its first sync
    blank = replace(sf, data={**sf.data, "Concord_ICalUID__c": None})
    filled = plan("event", None, None, other_copy, OPTS, candidates=[blank], now=NOW)
    assert [op.body["Concord_ICalUID__c"] for op in filled.writes if "Concord_ICalUID__c" in op.body] == [
        "another-copy-uid"
    ]


# ---------------------------------------------------------------- 4. required fields on a create


def test_a_mailbox_contact_without_surname_gets_a_last_name() -> None:
    _, mb = contact_pair()
    data = {**mb.data, "surname": None, "displayName": "Ada King"}
    created = plan("contact", None, None, replace(mb, data=data), OPTS, now=NOW)
    assert created.operations[0].body["LastName"] == "King"
    assert linked(created.new_link).salesforce_values["last_name"] == "King"
    no_name = {**data, "displayName": "Ada", "givenName": "Ada"}
    assert plan("contact", None, None, replace(mb, data=no_name), OPTS, now=NOW).operations[0].body["LastName"] == (
        "ada.lovelace"
    )
    nothing = {"id": "c2", "givenName": "Ada"}
    body = plan("contact", None, None, MailboxRecord(id="c2", data=nothing), OPTS, now=NOW).operations[0].body
    assert body["LastName"] == "(unknown)"


def test_a_lead_is_created_with_a_company() -> None:
    leads = ConnectionOptions(new_contact_object="Lead")
    _, mb = contact_pair()
    data = {**mb.data, "companyName": None}
    created = plan("contact", None, None, replace(mb, data=data), leads, now=NOW)
    assert created.operations[0].object_type == "Lead"
    assert created.operations[0].body["Company"] == "[not provided]" and created.operations[0].body["LastName"]
    # the placeholder is remembered as what Salesforce holds: the next sync writes nothing back
    link = linked(created.new_link).with_ids(salesforce_id="00Q1")
    lead = SalesforceRecord(id="00Q1", sobject="Lead", data={**created.operations[0].body, "Email": "x"})
    lead = replace(lead, data={**lead.data, "Email": "ada.lovelace@example.com"})
    assert plan("contact", link, lead, replace(mb, data=data), leads, now=NOW).is_noop


def test_a_required_field_is_never_cleared_in_salesforce() -> None:
    result = plan("contact", _contact_link(), _sf(), _mb(surname=""), OPTS, now=NOW)
    assert result.is_noop and result.decisions[0].kind == "required"


def test_required_defaults_are_validated() -> None:
    text = """\
version: 1
contacts:
  salesforce_objects: [Contact]
  required_defaults:
    Contact:
      LastNom: {value: x}
      LastName: {sources: [nickname], value: x}
    Lead:
      Company: {value: x}
  fields:
    - name: last_name
      salesforce: LastName
      graph: surname
"""
    with pytest.raises(MappingError) as error:
        load_mapping(text, "m.yaml")
    problems = "\n".join(error.value.problems)
    assert "unknown Salesforce field 'LastNom'" in problems
    assert "unknown source 'nickname'" in problems
    assert "'Lead' is not in this section" in problems


# ---------------------------------------------------------------- 5. deliberate clears and unreadable fields


def test_a_deliberate_clear_reaches_the_other_side() -> None:
    # GIVEN a linked contact WHEN the mailbox user removes the old mobile number
    link = _contact_link()
    result = plan("contact", link, _sf(), _mb(mobilePhone=None), OPTS, now=NOW)
    # THEN Salesforce's number is cleared too
    assert [(op.side, dict(op.body)) for op in result.writes] == [("salesforce", {"MobilePhone": None})]
    assert result.decisions[0].kind == "clear" and "deliberate clear" in result.decisions[0].reason
    # ...and the echo of that write plans nothing
    echoed = plan("contact", result.new_link, _sf(MobilePhone=None), _mb(mobilePhone=None), OPTS, now=NOW)
    assert echoed.is_noop and not echoed.decisions


def test_clears_keep_restores_the_value() -> None:
    text = """\
version: 1
contacts:
  salesforce_objects: [Contact]
  fields:
    - name: title
      salesforce: Title
      graph: jobTitle
      clears: keep
"""
    mapping = load_mapping(text, "m.yaml")
    sf, mb = contact_pair()
    link = linked(plan("contact", None, sf, mb, OPTS, mapping=mapping, now=NOW).new_link)
    result = plan("contact", link, _sf(), _mb(jobTitle=""), OPTS, mapping=mapping, now=NOW)
    assert result.decisions[0].kind == "blank" and result.decisions[0].overridden == "mailbox"
    assert [(op.side, dict(op.body)) for op in result.writes] == [("mailbox", {"jobTitle": "CTO"})]


def test_a_field_salesforce_does_not_let_us_read_is_left_alone() -> None:
    # GIVEN field-level security hides Title from the integration user (the key is absent)
    link = _contact_link()
    hidden = {key: value for key, value in SF_CONTACT.items() if key != "Title"}
    salesforce = SalesforceRecord(id=SF_CONTACT["Id"], sobject="Contact", data=hidden, version="v2")
    # WHEN the mailbox changes the title
    result = plan("contact", link, salesforce, _mb(jobTitle="CEO"), OPTS, now=NOW)
    # THEN nothing is written either way, the snapshot keeps its title, and the plan says why
    assert result.is_noop
    new_link = linked(result.new_link)
    assert new_link.salesforce_values["title"] == "CTO" and new_link.mailbox_values["title"] == "CTO"
    assert any("field-level security" in note for note in result.notes)
    # ...whereas a readable empty field (present with null) is a blank like any other
    present = plan("contact", link, _sf(Title=None), _mb(), OPTS, now=NOW)
    assert [(op.side, dict(op.body)) for op in present.writes] == [("mailbox", {"jobTitle": None})]


# ---------------------------------------------------------------- 6. cancelled and recurring events


@pytest.mark.parametrize(
    "series",
    [{"type": "seriesMaster"}, {"type": "occurrence", "seriesMasterId": "M"}, {"type": "exception"}],
)
def test_graph_recurring_events_are_never_written_as_stand_alone_events(series: dict[str, Any]) -> None:
    created = plan("event", None, None, _emb(**series), OPTS, now=NOW)
    assert created.is_noop and created.new_link is None and "recurring" in created.notes[0]
    linked_series = plan("event", _event_link(), _esf(Subject="New"), _emb(**series), OPTS, now=NOW)
    assert linked_series.is_noop and "recurring" in linked_series.notes[0]


@pytest.mark.parametrize("series", [{"recurrence": ["RRULE:FREQ=WEEKLY"]}, {"recurringEventId": "abc"}])
def test_google_recurring_events_are_skipped(series: dict[str, Any]) -> None:
    google = ConnectionOptions(provider="google")
    event = {"id": "g1", "summary": "Standup", "start": {"dateTime": "2026-03-10T09:00:00Z"}, **series}
    result = plan("event", None, None, MailboxRecord(id="g1", data=event), google, now=NOW)
    assert result.is_noop and "recurring" in result.notes[0]


def test_salesforce_recurring_events_are_skipped() -> None:
    series = SalesforceRecord(id="00U9", sobject="Event", data={**SF_EVENT, "IsRecurrence2": True})
    result = plan("event", None, series, None, OPTS, now=NOW)
    assert result.is_noop and "recurring" in result.notes[0]


def test_a_cancelled_meeting_is_handled_as_a_delete() -> None:
    options = ConnectionOptions(propagate_deletes=True)
    link = _event_link(options)
    result = plan("event", link, _esf(), _emb(isCancelled=True), options, now=NOW)
    assert [(op.side, op.action) for op in result.operations] == [("salesforce", "delete"), ("link", "unlink")]
    assert linked(result.new_link).is_tombstone and "cancelled" in result.operations[0].reason
    # off: only unlinked
    off = plan("event", _event_link(), _esf(), _emb(isCancelled=True), OPTS, now=NOW)
    assert [op.action for op in off.operations] == ["unlink"]
    # never created anywhere
    assert plan("event", None, None, _emb(isCancelled=True), OPTS, now=NOW).new_link is None


def test_a_google_cancelled_event_is_handled_as_a_delete() -> None:
    google = ConnectionOptions(provider="google", propagate_deletes=True)
    event = {
        "id": "g2",
        "summary": "Call",
        "start": {"dateTime": "2026-03-10T09:00:00Z"},
        "end": {"dateTime": "2026-03-10T10:00:00Z"},
        "organizer": {"email": "me@example.com", "self": True},
    }
    link = linked(plan("event", None, None, MailboxRecord(id="g2", data=event), google, now=NOW).new_link)
    link = link.with_ids(salesforce_id="00U2")
    sf = SalesforceRecord(id="00U2", sobject="Event", data=dict(SF_EVENT))
    cancelled = MailboxRecord(id="g2", data={"id": "g2", "status": "cancelled"})
    result = plan("event", link, sf, cancelled, google, now=NOW)
    assert [(op.side, op.action) for op in result.operations] == [("salesforce", "delete"), ("link", "unlink")]


# ---------------------------------------------------------------- 7. plan() never raises


def test_an_unknown_time_zone_is_a_skip_with_a_reason() -> None:
    start = {"dateTime": "2026-03-10T09:00:00.0000000", "timeZone": "Atlantis Standard Time"}
    result = plan("event", None, None, _emb(start=start), OPTS, now=NOW)
    assert result.is_noop and result.notes[0].startswith("cannot sync") and "Atlantis" in result.notes[0]
    linked_result = plan("event", _event_link(), _esf(), _emb(start=start), OPTS, now=NOW)
    assert linked_result.is_noop and linked_result.new_link == _event_link()


def test_a_malformed_date_time_is_a_skip_with_a_reason() -> None:
    result = plan("event", _event_link(), _esf(StartDateTime="2026-13-45T99:00:00.000+0000"), _emb(), OPTS, now=NOW)
    assert result.is_noop and result.notes[0].startswith("cannot sync")


@pytest.mark.parametrize(
    ("now", "kept"),
    [
        (datetime(2026, 1, 5, 10, 0, 0, 900_000, tzinfo=UTC), False),  # read in the version's own second
        (datetime(2026, 1, 5, 10, 0, 1, tzinfo=UTC), True),  # read a second later: later edits move it
    ],
)
def test_a_salesforce_version_from_the_second_of_the_read_is_not_trusted_by_the_next_sync(
    now: datetime, kept: bool
) -> None:
    # SystemModstamp holds whole seconds: an edit later in the same second leaves it as it was.
    salesforce, mailbox = contact_pair()
    assert salesforce.current_version == "2026-01-05T10:00:00.000+0000"

    first = plan("contact", None, salesforce, mailbox, ConnectionOptions(), candidates=(), now=now)

    assert first.new_link is not None
    assert (first.new_link.salesforce_version == salesforce.current_version) is kept
    if not kept:
        edited = replace(salesforce, data={**salesforce.data, "Department": "Research"})
        again = plan("contact", first.new_link, edited, mailbox, ConnectionOptions(), now=now)
        assert any(op.side == "mailbox" and op.action == "update" for op in again.operations)
