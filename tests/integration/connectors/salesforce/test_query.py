"""SOQL through the client against the sandbox: paging, queryAll, the supported grammar, errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from concord.adapters.http import PermanentError

if TYPE_CHECKING:
    from concord.adapters.salesforce import SalesforceClient
    from local.sandboxes.salesforce import SalesforceSandbox


def test_query_returns_records_with_attributes_and_parent_fields(client: SalesforceClient) -> None:
    rows = list(client.query("SELECT Id, FirstName, Account.Name FROM Contact WHERE Email = 'ada@analytical.example'"))

    assert len(rows) == 1
    (ada,) = rows
    assert ada["attributes"] == {"type": "Contact", "url": f"/services/data/v60.0/sobjects/Contact/{ada['Id']}"}
    assert ada["FirstName"] == "Ada"
    assert ada["Account"]["Name"] == "Analytical Engines"
    assert ada["Account"]["attributes"]["type"] == "Account"
    assert len(ada["Id"]) == 18
    assert ada["Id"].startswith("003")


def test_query_follows_next_records_url(client: SalesforceClient, salesforce: SalesforceSandbox) -> None:
    salesforce.batch_size = 2
    client.create("Contact", [{"LastName": f"Paged{i:02d}"} for i in range(7)])
    calls = client.calls

    rows = list(client.query("SELECT Id, LastName FROM Contact WHERE LastName LIKE 'Paged%' ORDER BY LastName"))

    assert [r["LastName"] for r in rows] == [f"Paged{i:02d}" for i in range(7)]
    assert client.calls - calls == 4  # pages of 2, 2, 2, 1


def test_query_all_includes_deleted_rows(client: SalesforceClient) -> None:
    (result,) = client.create("Lead", [{"LastName": "Gone", "Company": "Nowhere"}])
    client.delete([result.id or ""])

    live = list(client.query("SELECT Id FROM Lead WHERE LastName = 'Gone'"))
    every = list(client.query_all("SELECT Id, IsDeleted FROM Lead WHERE LastName = 'Gone'"))

    assert live == []
    assert [(r["Id"], r["IsDeleted"]) for r in every] == [(result.id, True)]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("LastName = 'hopper'", {"Hopper"}),  # text compares case-insensitively
        ("LastName != 'Hopper' AND LastName <> 'Turing'", {"Lovelace", "Johnson", "Torvalds"}),
        ("LastName IN ('Turing', 'Johnson')", {"Turing", "Johnson"}),
        ("LastName NOT IN ('Turing', 'Johnson')", {"Lovelace", "Hopper", "Torvalds"}),
        ("Email LIKE '%.example' AND FirstName LIKE 'A_a'", {"Lovelace"}),
        ("(LastName = 'Turing' OR LastName = 'Hopper') AND Title = 'Cryptanalyst'", {"Turing"}),
        ("NOT (LastName = 'Turing')", {"Lovelace", "Hopper", "Johnson", "Torvalds"}),
        ("Department = NULL AND Title != NULL", {"Lovelace", "Hopper", "Turing", "Johnson", "Torvalds"}),
        (
            "CreatedDate > 2020-01-01T00:00:00Z AND CreatedDate < 2100-01-01T00:00:00.000+0000",
            {"Lovelace", "Hopper", "Turing", "Johnson", "Torvalds"},
        ),
        ("SystemModstamp <= 2020-01-01T00:00:00Z", set()),
        ("IsDeleted = FALSE AND Account.Name = 'NASA'", {"Johnson"}),
        ("Birthdate = 1815-12-10", set()),
    ],
)
def test_where_clauses(client: SalesforceClient, where: str, expected: set[str]) -> None:
    rows = client.query(f"SELECT LastName FROM Contact WHERE {where}")

    assert {r["LastName"] for r in rows} == expected


def test_order_by_and_limit(client: SalesforceClient) -> None:
    rows = list(client.query("SELECT LastName FROM Contact ORDER BY LastName DESC LIMIT 3"))

    assert [r["LastName"] for r in rows] == ["Turing", "Torvalds", "Lovelace"]


def test_event_relations_and_custom_field(client: SalesforceClient) -> None:
    (event,) = client.query(
        "SELECT Id, Subject, Who.Name, Concord_ICalUID__c FROM Event WHERE Subject = 'Quarterly review'"
    )
    relations = list(
        client.query(f"SELECT RelationId, Relation.Name FROM EventRelation WHERE EventId = '{event['Id']}'")
    )

    assert event["Concord_ICalUID__c"] == "040000008200E00074C5B7101A82E0080000000001"
    assert event["Who"]["Name"] == "Ada Lovelace"
    assert [r["Relation"]["Name"] for r in relations] == ["Grace Hopper"]


def test_seed_has_leads_and_the_integration_user(client: SalesforceClient, salesforce: SalesforceSandbox) -> None:
    leads = {r["Company"] for r in client.query("SELECT Company FROM Lead")}
    (user,) = client.query("SELECT Id, Username FROM User")

    assert leads == {"Hamilton Technologies", "W3C"}
    assert user == {**user, "Id": salesforce.user_id, "Username": "integration@concord.example"}
    assert user["Id"].startswith("005")


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        ("SELECT Nope FROM Contact", "INVALID_FIELD"),
        ("SELECT Id FROM Nothing__x", "INVALID_TYPE"),
        ("SELECT Id FROM Contact WHERE", "MALFORMED_QUERY"),
        ("SELECT Id Contact", "MALFORMED_QUERY"),
        ("SELECT Id FROM Contact WHERE Nope.Name = 'x'", "INVALID_FIELD"),
    ],
)
def test_bad_queries_are_permanent_errors(client: SalesforceClient, soql: str, code: str) -> None:
    with pytest.raises(PermanentError) as caught:
        list(client.query(soql))

    assert caught.value.code == code
    assert caught.value.status == 400
