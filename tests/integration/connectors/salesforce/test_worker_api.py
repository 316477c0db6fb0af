"""What the sync worker asks of Salesforce, through the client against the sandbox: escaped values,
child subqueries, Shared Activities relations, creates that never duplicate, guards the real API keeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from concord.adapters.http import ConflictError, PermanentError, TransientError
from concord.adapters.soql import in_list, like, quote

if TYPE_CHECKING:
    from concord.adapters.salesforce import SalesforceClient
    from local.sandboxes.salesforce import SalesforceSandbox
    from tests.integration.connectors.salesforce.conftest import SleepRecorder

HOSTILE = "x' OR Name != '"


def test_a_hostile_value_matches_only_itself(client: SalesforceClient) -> None:
    names = [HOSTILE, "O'Brien", "back\\slash", "two\nlines", "bell\x07", "Zoë 東京", "50% off", "500 items"]
    created = client.create("Contact", [{"LastName": n} for n in names])
    assert all(r.success for r in created)

    for name in names:
        rows = list(client.query(f"SELECT LastName FROM Contact WHERE LastName = {quote(name)}"))
        assert [r["LastName"] for r in rows] == [name]
    listed = client.query(f"SELECT LastName FROM Contact WHERE LastName IN {in_list([HOSTILE, 'Hopper'])}")
    assert sorted(r["LastName"] for r in listed) == sorted([HOSTILE, "Hopper"])


def test_like_wildcards_in_data_match_themselves(client: SalesforceClient) -> None:
    client.create("Contact", [{"LastName": n} for n in ("50% off", "500 items", "a_b", "axb")])

    percent = client.query(f"SELECT LastName FROM Contact WHERE LastName LIKE {like('50%', suffix='%')}")
    underscore = client.query(f"SELECT LastName FROM Contact WHERE LastName LIKE {like('a_b')}")

    assert [r["LastName"] for r in percent] == ["50% off"]
    assert [r["LastName"] for r in underscore] == ["a_b"]


@pytest.mark.parametrize("literal", [r"'\q'", r"'\%'", r"'\u12'"])
def test_escapes_salesforce_does_not_list_are_refused(client: SalesforceClient, literal: str) -> None:
    with pytest.raises(PermanentError) as caught:
        list(client.query(f"SELECT Id FROM Contact WHERE LastName = {literal}"))

    assert caught.value.code == "MALFORMED_QUERY"


def _event(client: SalesforceClient, subject: str = "Quarterly review") -> dict[str, Any]:
    (event,) = client.query(f"SELECT Id, Concord_ICalUID__c FROM Event WHERE Subject = {quote(subject)}")
    return event


def test_event_with_its_relations_as_a_child_subquery(client: SalesforceClient) -> None:
    event = _event(client)
    bare = client.create_event(
        {"Subject": "Alone", "StartDateTime": "2026-12-01T09:00:00Z", "EndDateTime": "2026-12-01T10:00:00Z"}, []
    )
    ids = [event["Id"], bare.event.id or ""]

    rows = list(
        client.query(
            "SELECT Id, Subject, StartDateTime, Owner.Email, "
            "(SELECT RelationId, Relation.Email, IsInvitee FROM EventRelations) "
            f"FROM Event WHERE Id IN {in_list(ids)} ORDER BY Subject"
        )
    )

    alone, review = rows
    assert alone["EventRelations"] is None  # an empty child relationship is null, as Salesforce answers
    relations = review["EventRelations"]
    assert (relations["totalSize"], relations["done"]) == (1, True)
    (relation,) = relations["records"]
    assert relation["attributes"]["type"] == "EventRelation"
    assert relation["Relation"]["Email"] == "grace@navy.example"
    assert relation["IsInvitee"] is True
    assert review["Owner"]["Email"] == "integration@concord.example"


def test_events_by_ical_uid_and_people_by_email(client: SalesforceClient) -> None:
    uid = _event(client)["Concord_ICalUID__c"]

    (event,) = client.query(f"SELECT Id, Subject FROM Event WHERE Concord_ICalUID__c IN {in_list([uid, 'other'])}")
    people = client.query(
        "SELECT Id, Email, Account.Name FROM Contact "
        f"WHERE Email IN {in_list(['ada@analytical.example', 'nobody@x.example'])}"
    )

    assert event["Subject"] == "Quarterly review"
    assert [(p["Email"], p["Account"]["Name"]) for p in people] == [("ada@analytical.example", "Analytical Engines")]


def test_unknown_child_relationship_is_refused(client: SalesforceClient) -> None:
    with pytest.raises(PermanentError) as caught:
        list(client.query("SELECT Id, (SELECT Id FROM Nopes) FROM Event"))

    assert caught.value.code == "INVALID_TYPE"


def test_task_relations_and_task_who_relations(client: SalesforceClient, salesforce: SalesforceSandbox) -> None:
    contacts = [r["Id"] for r in client.query("SELECT Id FROM Contact ORDER BY LastName LIMIT 2")]
    (account,) = client.query("SELECT Id FROM Account WHERE Name = 'NASA'")
    (task,) = client.create(
        "Task",
        [{"Subject": "Email: hello", "Status": "Completed", "TaskSubtype": "Email", "Concord_Message_ID__c": "<m1@x>"}],
    )
    assert task.id is not None

    results = client.relate("TaskRelation", [(task.id, contacts[0]), (task.id, contacts[1]), (task.id, account["Id"])])

    assert all(r.success for r in results)
    (row,) = client.query(
        "SELECT Id, (SELECT RelationId, IsWhat FROM TaskRelations), "
        "(SELECT RelationId, Type FROM TaskWhoRelations) "
        f"FROM Task WHERE Concord_Message_ID__c = {quote('<m1@x>')}"
    )
    assert {(r["RelationId"], r["IsWhat"]) for r in row["TaskRelations"]["records"]} == {
        (contacts[0], False),
        (contacts[1], False),
        (account["Id"], True),
    }
    assert {(r["RelationId"], r["Type"]) for r in row["TaskWhoRelations"]["records"]} == {
        (contacts[0], "Contact"),
        (contacts[1], "Contact"),
    }
    # TaskWhoRelation is read-only; a deleted TaskRelation skips the recycle bin
    (refused,) = client.create("TaskWhoRelation", [{"TaskId": task.id, "RelationId": contacts[0]}])
    assert refused.errors[0].code == "INVALID_TYPE_FOR_OPERATION"
    client.delete([results[0].id or ""])
    assert list(client.query_all(f"SELECT Id FROM TaskRelation WHERE Id = {quote(results[0].id or '')}")) == []
    assert salesforce.record(results[1].id or "") is not None


def test_relate_events_in_bulk_and_unrelate(client: SalesforceClient) -> None:
    event = _event(client)
    people = [r["Id"] for r in client.query("SELECT Id FROM Contact WHERE LastName IN ('Turing', 'Johnson')")]

    added = client.relate("EventRelation", [(event["Id"], p) for p in people])
    removed = client.delete([r.id or "" for r in added])

    assert all(r.success for r in added + removed)
    assert [r.id for r in removed] == [r.id for r in added]


def test_writes_name_concord_in_change_events(
    client: SalesforceClient, salesforce: SalesforceSandbox, cdc_events: list[dict[str, Any]]
) -> None:
    (created,) = client.create("Contact", [{"LastName": "Echo"}])
    client.update("Contact", [{"Id": created.id, "Title": "Heard"}])
    client.delete([created.id or ""])

    headers = [e["detail"]["payload"]["ChangeEventHeader"] for e in cdc_events]
    assert [h["changeType"] for h in headers] == ["CREATE", "UPDATE", "DELETE"]
    assert {h["changeOrigin"] for h in headers} == {"com/salesforce/api/rest/60.0;client=concord"}
    assert client.api_usage is not None
    assert client.api_usage.used == salesforce.api_usage


def test_failed_updates_and_deletes_name_their_record(client: SalesforceClient) -> None:
    (gone,) = client.create("Contact", [{"LastName": "Gone"}])
    client.delete([gone.id or ""])

    (updated,) = client.update("Contact", [{"Id": gone.id, "Title": "x"}])
    (deleted,) = client.delete([gone.id or ""])

    assert (updated.success, updated.id, deleted.success, deleted.id) == (False, gone.id, False, gone.id)


def test_retrieve_many_ids_by_post(client: SalesforceClient, salesforce: SalesforceSandbox) -> None:
    created = client.create("Lead", [{"LastName": f"L{i}", "Company": "C"} for i in range(250)])
    ids = [r.id or "" for r in created] + ["00Q5g0000000zzzAAA"]
    salesforce.faults.fail(1, status=503)  # a read sent as POST is retried like any read

    rows = client.retrieve("Lead", ids, ["LastName"])

    assert [r and r["LastName"] for r in rows] == [f"L{i}" for i in range(250)] + [None]


@pytest.mark.parametrize("status", [500, None], ids=["5xx", "dropped"])
def test_a_create_failing_after_commit_is_found_not_repeated(
    client: SalesforceClient, salesforce: SalesforceSandbox, sleeps: SleepRecorder, status: int | None
) -> None:
    events = [
        {
            "Subject": f"Sync {i}",
            "StartDateTime": "2026-12-02T09:00:00Z",
            "EndDateTime": "2026-12-02T09:30:00Z",
            "Concord_ICalUID__c": f"uid-{i}@example",
        }
        for i in range(3)
    ]
    list(client.query("SELECT Id FROM User"))
    before = len(salesforce.live_records("Event"))
    salesforce.fail_after_commit(1, status=status)

    results = client.create("Event", events, marker="Concord_ICalUID__c")

    assert all(r.success for r in results)
    stored = {r["Concord_ICalUID__c"]: r["Id"] for r in salesforce.live_records("Event")}
    assert [r.id for r in results] == [stored[e["Concord_ICalUID__c"]] for e in events]
    assert len(salesforce.live_records("Event")) == before + 3  # each written once
    assert sleeps.waits == []


def test_an_unresolved_create_is_reported_unknown_not_resent(
    client: SalesforceClient, salesforce: SalesforceSandbox
) -> None:
    list(client.query("SELECT Id FROM User"))
    salesforce.faults.fail(1, status=500)  # before anything is written: the lookup finds nothing

    (result,) = client.create(
        "Task", [{"Subject": "x", "Concord_Message_ID__c": "<m2@x>"}], marker="Concord_Message_ID__c"
    )

    assert not result.success
    assert result.errors[0].code == "UNKNOWN_OUTCOME"
    assert result.transient
    assert salesforce.live_records("Task") == []


def test_a_create_without_a_marker_still_raises(client: SalesforceClient, salesforce: SalesforceSandbox) -> None:
    list(client.query("SELECT Id FROM User"))
    salesforce.fail_after_commit(1, status=None)

    with pytest.raises(TransientError):
        client.create("Contact", [{"LastName": "Maybe"}])

    assert len([c for c in salesforce.live_records("Contact") if c["LastName"] == "Maybe"]) == 1


def test_update_one_honours_if_unmodified_since(client: SalesforceClient, salesforce: SalesforceSandbox) -> None:
    (ada,) = client.query("SELECT Id, LastModifiedDate FROM Contact WHERE LastName = 'Lovelace'")
    seen = datetime.strptime(ada["LastModifiedDate"], "%Y-%m-%dT%H:%M:%S.%f%z")

    client.update_one("Contact", ada["Id"], {"Title": "Countess"}, if_unmodified_since=seen)
    salesforce.records[ada["Id"]]["LastModifiedDate"] = (
        (seen + timedelta(seconds=5)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    )  # someone else's later change
    with pytest.raises(ConflictError):
        client.update_one("Contact", ada["Id"], {"Title": "Stale"}, if_unmodified_since=seen)

    assert (salesforce.record(ada["Id"]) or {})["Title"] == "Countess"


def test_converted_leads_refuse_updates(client: SalesforceClient, salesforce: SalesforceSandbox) -> None:
    (lead,) = client.query("SELECT Id FROM Lead WHERE Company = 'W3C'")
    contact_id = salesforce.convert_lead(lead["Id"])

    (result,) = client.update("Lead", [{"Id": lead["Id"], "Title": "x"}])
    (row,) = client.query(f"SELECT IsConverted, ConvertedContactId FROM Lead WHERE Id = {quote(lead['Id'])}")

    assert result.errors[0].code == "CANNOT_UPDATE_CONVERTED_LEAD"
    assert row == {**row, "IsConverted": True, "ConvertedContactId": contact_id}


def test_required_fields_on_create(client: SalesforceClient) -> None:
    contact, lead, lead_company = client.create("Contact", [{"FirstName": "A"}]) + client.create(
        "Lead", [{"FirstName": "B"}, {"LastName": "C"}]
    )

    assert [(e.code, e.fields) for e in contact.errors] == [("REQUIRED_FIELD_MISSING", ("LastName",))]
    assert lead.errors[0].fields == ("LastName", "Company")
    assert lead.errors[0].message == "Required fields are missing: [LastName, Company]"
    assert lead_company.errors[0].fields == ("Company",)


def test_batch_size_header(client: SalesforceClient, salesforce: SalesforceSandbox) -> None:
    client.create("Lead", [{"LastName": f"Batch{i:03d}", "Company": "C"} for i in range(450)])
    calls = client.calls

    rows = list(client.query("SELECT Id FROM Lead WHERE LastName LIKE 'Batch%'", batch_size=200))

    assert len(rows) == 450
    assert client.calls - calls == 3  # 200, 200, 50
