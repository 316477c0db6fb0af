"""Named scenarios for plan(): policies, directions, filters, matching, deletes, guards, meetings."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from concord.core import (
    ConnectionOptions,
    LinkState,
    MailboxRecord,
    SalesforceRecord,
    check_mass_delete,
    hold_deletes,
    plan,
)
from tests.unit.core.fixtures import GRAPH_CONTACT, GRAPH_EVENT, SF_CONTACT, SF_EVENT, contact_pair, event_pair, linked

NOW = datetime(2026, 1, 6, tzinfo=UTC)
OPTS = ConnectionOptions()


def _contact_link(options: ConnectionOptions = OPTS) -> LinkState:
    sf, mb = contact_pair()
    return linked(plan("contact", None, sf, mb, options, now=NOW).new_link)


def _sf(**changes: Any) -> SalesforceRecord:
    return SalesforceRecord(id=SF_CONTACT["Id"], sobject="Contact", data={**SF_CONTACT, **changes}, version="v2")


def _mb(**changes: Any) -> MailboxRecord:
    return MailboxRecord(id=GRAPH_CONTACT["id"], data={**GRAPH_CONTACT, **changes}, version="v2")


def test_mailbox_change_flows_to_salesforce_with_a_readable_reason() -> None:
    # GIVEN a linked contact WHEN the mailbox title changes
    result = plan("contact", _contact_link(), _sf(), _mb(jobTitle="CEO"), OPTS, now=NOW)
    # THEN only Title is written to Salesforce, with the reason
    assert [(op.side, op.action, dict(op.body)) for op in result.writes] == [("salesforce", "update", {"Title": "CEO"})]
    assert result.decisions[0].reason == (
        "Title: mailbox changed 'CTO' → 'CEO', Salesforce unchanged since last sync → write to Salesforce"
    )


def test_echo_of_our_own_write_plans_nothing() -> None:
    first = plan("contact", _contact_link(), _sf(), _mb(jobTitle="CEO"), OPTS, now=NOW)
    echoed = plan("contact", first.new_link, _sf(Title="CEO"), _mb(jobTitle="CEO"), OPTS, now=NOW)
    assert echoed.is_noop and not echoed.decisions


def test_version_bump_without_content_change_writes_nothing() -> None:
    assert plan("contact", _contact_link(), _sf(), _mb(), OPTS, now=NOW).is_noop


def test_phone_formatting_difference_is_not_a_change() -> None:
    assert plan("contact", _contact_link(), _sf(Phone="+1 415-555-0100"), _mb(), OPTS, now=NOW).is_noop


@pytest.mark.parametrize(
    ("policy", "sf_newer", "winner"),
    [
        ("most_recent", True, "salesforce"),
        ("most_recent", False, "mailbox"),
        ("salesforce_wins_unless_blank", False, "salesforce"),
        ("mailbox_wins_unless_blank", True, "mailbox"),
        ("salesforce_always", False, "salesforce"),
        ("mailbox_always", True, "mailbox"),
    ],
)
def test_conflict_policies(policy: str, sf_newer: bool, winner: str) -> None:
    # GIVEN both sides changed Title since the last sync
    from concord.core import load_mapping

    text = _mapping_with_policy(policy)
    mapping = load_mapping(text, "m.yaml")
    sf, mb = contact_pair()
    link = linked(plan("contact", None, sf, mb, OPTS, mapping=mapping, now=NOW).new_link)
    sf_time, mb_time = ("2026-01-06T10:00:00Z", "2026-01-06T09:00:00Z")
    if not sf_newer:
        sf_time, mb_time = mb_time, sf_time
    result = plan(
        "contact",
        link,
        _sf(Title="VP", LastModifiedDate=sf_time),
        _mb(jobTitle="CEO", lastModifiedDateTime=mb_time),
        OPTS,
        mapping=mapping,
        now=NOW,
    )
    # THEN the policy's winner is written to the other side and the decision is recorded
    (decision,) = result.decisions
    assert decision.kind == "conflict" and decision.result == ("VP" if winner == "salesforce" else "CEO")
    assert decision.write_to == ("mailbox" if winner == "salesforce" else "salesforce")
    assert policy in decision.reason


def _mapping_with_policy(policy: str) -> str:
    return f"""\
version: 1
contacts:
  salesforce_objects: [Contact]
  fields:
    - name: title
      salesforce: Title
      graph: jobTitle
      policy: {policy}
"""


def test_always_policy_reverts_a_one_sided_edit_of_the_other_side() -> None:
    from concord.core import load_mapping

    mapping = load_mapping(_mapping_with_policy("salesforce_always"), "m.yaml")
    sf, mb = contact_pair()
    link = linked(plan("contact", None, sf, mb, OPTS, mapping=mapping, now=NOW).new_link)
    result = plan("contact", link, _sf(), _mb(jobTitle="CEO"), OPTS, mapping=mapping, now=NOW)
    assert result.decisions[0].kind == "policy" and result.writes[0].body == {"jobTitle": "CTO"}


def test_first_sync_records_the_value_it_replaces_and_never_lets_a_blank_win() -> None:
    # GIVEN an unlinked pair: titles differ, and only the mailbox has a department
    sf, mb = contact_pair()
    sf = replace(sf, data={**sf.data, "Title": "VP", "Department": None, "LastModifiedDate": "2026-01-06T10:00:00Z"})
    mb = replace(mb, data={**mb.data, "jobTitle": "CEO", "department": "Research"})
    # WHEN the first sync plans them (most_recent: Salesforce was modified last)
    decisions = {d.field: d for d in plan("contact", None, sf, mb, OPTS, now=NOW).decisions}
    # THEN the mailbox's title is replaced and the decision says whose value was lost...
    title = decisions["title"]
    assert (title.kind, title.result, title.write_to, title.overridden) == ("first_sync", "VP", "mailbox", "mailbox")
    # ...and Salesforce's blank department, though newer, does not clear the mailbox's value; with no
    # snapshot the blank is not known to be an edit, so filling it in overrides nobody
    department = decisions["department"]
    assert (department.kind, department.result, department.write_to, department.overridden) == (
        "blank",
        "Research",
        "salesforce",
        None,
    )


def test_a_blank_never_wins_a_conflict() -> None:
    # GIVEN Salesforce changes the title while the mailbox clears it (mailbox modified later)
    result = plan(
        "contact",
        _contact_link(),
        _sf(Title="VP"),
        _mb(jobTitle="", lastModifiedDateTime="2026-01-06T10:00:00Z"),
        OPTS,
        now=NOW,
    )
    # THEN Salesforce's value is restored in the mailbox and the mailbox's clear is recorded as overridden
    (decision,) = result.decisions
    assert (decision.kind, decision.overridden) == ("blank", "mailbox")
    assert [(op.side, dict(op.body)) for op in result.writes] == [("mailbox", {"jobTitle": "VP"})]


@pytest.mark.parametrize("direction", ["to_mailbox", "to_salesforce"])
def test_connection_direction_limits_writes(direction: str) -> None:
    options = ConnectionOptions(directions={"contact": direction})  # type: ignore[dict-item]
    result = plan("contact", _contact_link(options), _sf(), _mb(jobTitle="CEO"), options, now=NOW)
    if direction == "to_mailbox":
        assert result.is_noop and result.decisions[0].kind == "direction"
    else:
        assert result.writes[0].side == "salesforce"


def test_read_only_field_flows_only_to_mailbox() -> None:
    from concord.core import load_mapping

    text = _mapping_with_policy("most_recent").replace(
        "salesforce: Title", "salesforce: Name\n      direction: to_mailbox"
    )
    mapping = load_mapping(text, "m.yaml")
    sf, mb = contact_pair()
    link = linked(plan("contact", None, sf, mb, OPTS, mapping=mapping, now=NOW).new_link)
    result = plan("contact", link, _sf(Name="Ada Lovelace"), _mb(jobTitle="Boss"), OPTS, mapping=mapping, now=NOW)
    assert all(op.side != "salesforce" for op in result.writes)


def test_new_mailbox_contact_matches_contact_before_lead_by_email() -> None:
    _, mb = contact_pair()
    contact = SalesforceRecord(id="003A", sobject="Contact", data={**SF_CONTACT, "Id": "003A"})
    lead = SalesforceRecord(id="00QB", sobject="Lead", data={"Email": SF_CONTACT["Email"], "LastName": "L"})
    result = plan("contact", None, None, mb, OPTS, candidates=[lead, contact], now=NOW)
    assert result.operations[0].action == "link" and linked(result.new_link).salesforce_id == "003A"


def test_two_candidates_are_an_ambiguity_never_a_guess() -> None:
    _, mb = contact_pair()
    twins = [SalesforceRecord(id=f"003{i}", sobject="Contact", data=dict(SF_CONTACT)) for i in range(2)]
    result = plan("contact", None, None, mb, OPTS, candidates=twins, now=NOW)
    assert result.is_noop and result.new_link is None and "ambiguous" in result.notes[0]


def test_match_by_name_and_company_then_create_when_nothing_matches() -> None:
    _, mb = contact_pair()
    other = SalesforceRecord(id="003N", sobject="Contact", data={**SF_CONTACT, "Email": None})
    assert linked(plan("contact", None, None, mb, OPTS, candidates=[other], now=NOW).new_link).salesforce_id == "003N"
    created = plan("contact", None, None, mb, OPTS, now=NOW)
    assert [op.action for op in created.operations] == ["create", "relate", "link"]
    assert created.operations[0].body["Title"] == "CTO"


def test_events_match_by_ical_uid() -> None:
    sf, mb = event_pair()
    result = plan("event", None, None, mb, OPTS, candidates=[sf], now=NOW)
    assert linked(result.new_link).salesforce_id == sf.id


def test_delete_propagation_off_unlinks_and_tombstone_stops_late_notices() -> None:
    link = _contact_link()
    result = plan(
        "contact",
        link,
        SalesforceRecord(id=link.salesforce_id or "", sobject="Contact", deleted=True),
        _mb(),
        OPTS,
        now=NOW,
    )
    assert [op.action for op in result.operations] == ["unlink"]
    late = plan("contact", result.new_link, None, _mb(jobTitle="Late"), OPTS, now=NOW)
    assert late.is_noop and "tombstone" in late.notes[0]


def test_delete_propagation_on_deletes_the_other_side() -> None:
    options = ConnectionOptions(propagate_deletes=True)
    result = plan("contact", _contact_link(options), _sf(), replace(_mb(), deleted=True), options, now=NOW)
    assert [(op.side, op.action) for op in result.operations] == [("salesforce", "delete"), ("link", "unlink")]


def test_mass_delete_guard_holds_deletes() -> None:
    options = ConnectionOptions(propagate_deletes=True)
    link = _contact_link(options)
    plans = [plan("contact", link, _sf(), replace(_mb(), deleted=True), options, now=NOW) for _ in range(30)]
    verdict = check_mass_delete(plans, 100, "contact", options)
    assert verdict.tripped and "25%" in verdict.reason
    assert all(p.deletes == 0 for p in hold_deletes(plans, verdict))
    assert not check_mass_delete(plans, 1000, "contact", options).tripped
    assert not check_mass_delete(plans, 100, "contact", replace(options, mass_delete_approved=True)).tripped


def test_filters_private_events_folder_and_window() -> None:
    sf, mb = event_pair()
    private = MailboxRecord(id=mb.id, data={**GRAPH_EVENT, "sensitivity": "private"})
    assert "private" in plan("event", None, None, private, OPTS, now=NOW).notes[0]
    other_cal = replace(mb, in_default_calendar=False)
    assert "default calendar" in plan("event", None, None, other_cal, OPTS, now=NOW).notes[0]
    far = datetime(2030, 1, 1, tzinfo=UTC)
    assert "window" in plan("event", None, sf, None, OPTS, now=far).notes[0]
    folder_opts = ConnectionOptions(contact_folder_id="folder-other")
    _, cmb = contact_pair()
    assert "folder" in plan("contact", None, None, cmb, folder_opts, now=NOW).notes[0]


def _event_link(options: ConnectionOptions) -> LinkState:
    sf, mb = event_pair()
    return linked(plan("event", None, sf, mb, options, now=NOW).new_link)


def _esf(**changes: Any) -> SalesforceRecord:
    return SalesforceRecord(id=SF_EVENT["Id"], sobject="Event", data={**SF_EVENT, **changes}, version="v2")


def _emb(**changes: Any) -> MailboxRecord:
    return MailboxRecord(id=GRAPH_EVENT["id"], data={**GRAPH_EVENT, **changes}, version="v2")


def test_meeting_updates_from_salesforce_are_held_unless_invitation_mode() -> None:
    held = plan("event", _event_link(OPTS), _esf(Location="Room 5"), _emb(), OPTS, now=NOW)
    assert held.is_noop and held.decisions[0].kind == "held"
    options = ConnectionOptions(invitation_mode=True)
    sent = plan("event", _event_link(options), _esf(Location="Room 5"), _emb(), options, now=NOW)
    assert sent.writes[0].body == {"location": {"displayName": "Room 5"}}


def test_meeting_invisible_field_change_is_not_written_even_in_invitation_mode() -> None:
    options = ConnectionOptions(invitation_mode=True)
    result = plan("event", _event_link(options), _esf(ShowAs="Free"), _emb(), options, now=NOW)
    assert result.is_noop and "would see" in result.decisions[0].reason


def test_meetings_the_user_does_not_organise_are_never_written() -> None:
    options = ConnectionOptions(invitation_mode=True)
    result = plan("event", _event_link(options), _esf(Subject="New"), _emb(isOrganizer=False), options, now=NOW)
    assert result.is_noop and "organise" in result.decisions[0].reason


def test_html_body_kept_when_text_is_the_same_and_replaced_when_it_changed() -> None:
    options = ConnectionOptions(invitation_mode=True)
    link = _event_link(options)
    assert plan("event", link, _esf(Description="Agenda:\nNumbers\nPlans "), _emb(), options, now=NOW).is_noop
    changed = plan("event", link, _esf(Description="New agenda"), _emb(), options, now=NOW)
    assert changed.writes[0].body == {"body": {"contentType": "text", "content": "New agenda"}}


def test_email_is_logged_once_as_a_task_with_participants() -> None:
    message = MailboxRecord(
        id="msg1",
        data={
            "id": "msg1",
            "subject": "Hello",
            "bodyPreview": "Hi there",
            "receivedDateTime": "2026-01-05T10:00:00Z",
            "from": {"emailAddress": {"address": "Ada@Example.com"}},
            "toRecipients": [{"emailAddress": {"address": "bob@example.com"}}],
        },
    )
    result = plan("email", None, None, message, OPTS, now=NOW)
    create, relate, _ = result.operations
    assert create.body == {
        "Status": "Completed",
        "TaskSubtype": "Email",
        "Subject": "Hello",
        "ActivityDate": "2026-01-05",
        "Description": "Hi there",
    }
    assert relate.body["emails"] == ["ada@example.com", "bob@example.com"]
    link = linked(result.new_link).with_ids(salesforce_id="00T1")
    task = SalesforceRecord(
        id="00T1",
        sobject="Task",
        data={**create.body, "TaskWhoRelations": [{"Email": "ada@example.com"}, {"Email": "bob@example.com"}]},
    )
    assert plan("email", link, task, message, OPTS, now=NOW).is_noop


def test_link_state_round_trips_through_json() -> None:
    import json

    link = _contact_link()
    assert LinkState.from_dict(json.loads(json.dumps(link.to_dict()))) == link
