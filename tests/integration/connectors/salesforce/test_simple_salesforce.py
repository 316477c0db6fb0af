"""Faithfulness: simple-salesforce, a widely used client nobody here wrote, against the sandbox.

If it cannot talk to the sandbox, the sandbox is wrong. (Its JWT login builds
``https://{domain}.salesforce.com`` URLs, so it cannot log in to a loopback server; it is given the
session id the way callers with their own OAuth do.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import pytest
import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from local.sandboxes.server import ca_bundle_path
from tests.integration.connectors.salesforce.conftest import KeyPair, session_token

if TYPE_CHECKING:
    from collections.abc import Iterator

    from simple_salesforce.api import SFType

    from local.sandboxes.salesforce import SalesforceSandbox


def sobject(sf: Salesforce, name: str) -> SFType:
    """``sf.Contact`` is typed as a union with the bulk handlers; these tests use the sObject kind."""
    return cast("SFType", getattr(sf, name))


def rest(sf: Salesforce, path: str, **options: Any) -> Any:
    """``Salesforce.restful``, typed loosely: its answers are whatever JSON the resource returns."""
    return sf.restful(path, **options)


def content(error: Exception) -> Any:
    """The decoded error body simple-salesforce keeps on its exceptions."""
    return getattr(error, "content", None)


@pytest.fixture
def sf(salesforce: SalesforceSandbox, key_pair: KeyPair) -> Iterator[Salesforce]:
    session = requests.Session()
    session.verify = ca_bundle_path()
    # requests lets REQUESTS_CA_BUNDLE (set on this machine) override Session.verify; ignore the environment
    session.trust_env = False
    yield Salesforce(
        instance_url=salesforce.url, session_id=session_token(salesforce, key_pair), version="60.0", session=session
    )
    session.close()


def test_query_and_query_more(sf: Salesforce, salesforce: SalesforceSandbox) -> None:
    salesforce.batch_size = 2

    first = sf.query("SELECT Id, LastName, Account.Name FROM Contact ORDER BY LastName")
    second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    by_locator = sf.query_more(first["nextRecordsUrl"].rsplit("/", 1)[1])
    everything = sf.query_all("SELECT Id, LastName FROM Contact ORDER BY LastName")

    assert first["totalSize"] == 5
    assert first["done"] is False
    assert [r["LastName"] for r in first["records"]] == ["Hopper", "Johnson"]
    assert first["records"][0]["Account"]["Name"] == "US Navy"
    assert [r["LastName"] for r in second["records"]] == ["Lovelace", "Torvalds"]
    assert by_locator["records"] == second["records"]
    assert [r["LastName"] for r in everything["records"]] == ["Hopper", "Johnson", "Lovelace", "Torvalds", "Turing"]


def test_crud(sf: Salesforce) -> None:
    created = sobject(sf, "Contact").create({"FirstName": "Emmy", "LastName": "Noether", "Email": "emmy@math.example"})
    assert created["success"] is True
    record_id = created["id"]

    fetched = sobject(sf, "Contact").get(record_id)
    assert (fetched["Name"], fetched["attributes"]["type"]) == ("Emmy Noether", "Contact")

    assert sobject(sf, "Contact").update(record_id, {"Title": "Professor"}) == 204
    assert sobject(sf, "Contact").get(record_id)["Title"] == "Professor"

    assert sobject(sf, "Contact").delete(record_id) == 204
    with pytest.raises(SalesforceResourceNotFound) as gone:
        sobject(sf, "Contact").get(record_id)
    assert content(gone.value)[0]["errorCode"] == "ENTITY_IS_DELETED"

    deleted = sf.query_all(f"SELECT Id, IsDeleted FROM Contact WHERE Id = '{record_id}'", include_deleted=True)
    assert deleted["records"][0]["IsDeleted"] is True


def test_errors_raise_its_typed_exceptions(sf: Salesforce, salesforce: SalesforceSandbox) -> None:
    with pytest.raises(SalesforceMalformedRequest) as invalid:
        sobject(sf, "Contact").create({"FirstName": "No last name"})
    assert content(invalid.value) == [
        {
            "message": "Required fields are missing: [LastName]",
            "errorCode": "REQUIRED_FIELD_MISSING",
            "fields": ["LastName"],
        }
    ]

    with pytest.raises(SalesforceMalformedRequest) as bad_query:
        sf.query("SELECT Nope FROM Contact")
    assert content(bad_query.value)[0]["errorCode"] == "INVALID_FIELD"

    with pytest.raises(SalesforceResourceNotFound):
        sobject(sf, "Contact").get("0035g0000000zzzAAA")

    salesforce.faults.throttle(1)
    with pytest.raises(SalesforceRefusedRequest) as throttled:
        sf.query("SELECT Id FROM Contact")
    assert content(throttled.value)[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"

    salesforce.tokens.expire_all()
    with pytest.raises(SalesforceExpiredSession) as expired:
        sf.query("SELECT Id FROM Contact")
    assert content(expired.value)[0]["errorCode"] == "INVALID_SESSION_ID"


def test_api_usage_is_parsed(sf: Salesforce, salesforce: SalesforceSandbox) -> None:
    sf.query("SELECT Id FROM Contact")

    usage = sf.api_usage["api-usage"]
    assert (usage.used, usage.total) == (1, salesforce.daily_limit)


def test_collections_and_composite_through_restful(sf: Salesforce) -> None:
    created = rest(
        sf,
        "composite/sobjects",
        method="POST",
        json={
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Lead"}, "LastName": "Curie", "Company": "Sorbonne"},
                {"attributes": {"type": "Lead"}, "LastName": "Nobody"},
            ],
        },
    )
    assert [r["success"] for r in created] == [True, False]
    assert created[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    lead_id = created[0]["id"]

    read = rest(sf, "composite/sobjects/Lead", params={"ids": lead_id, "fields": "Company,LastName"})
    assert read[0]["Company"] == "Sorbonne"

    updated = rest(
        sf,
        "composite/sobjects",
        method="PATCH",
        json={"records": [{"attributes": {"type": "Lead"}, "Id": lead_id, "Company": "Institut Curie"}]},
    )
    assert updated == [{"id": lead_id, "success": True, "errors": []}]

    composite = rest(
        sf,
        "composite",
        method="POST",
        json={
            "allOrNone": True,
            "compositeRequest": [
                {
                    "method": "POST",
                    "url": "/services/data/v60.0/sobjects/Account",
                    "referenceId": "acct",
                    "body": {"Name": "Radium Institute"},
                },
                {
                    "method": "POST",
                    "url": "/services/data/v60.0/sobjects/Contact",
                    "referenceId": "person",
                    "body": {"LastName": "Curie", "AccountId": "@{acct.id}"},
                },
                {
                    "method": "GET",
                    "url": "/services/data/v60.0/sobjects/Contact/@{person.id}?fields=AccountId",
                    "referenceId": "check",
                },
            ],
        },
    )
    answers = composite["compositeResponse"]
    assert [a["httpStatusCode"] for a in answers] == [201, 201, 200]
    assert answers[2]["body"]["AccountId"] == answers[0]["body"]["id"]

    deleted = rest(sf, "composite/sobjects", method="DELETE", params={"ids": lead_id, "allOrNone": "false"})
    assert deleted == [{"id": lead_id, "success": True, "errors": []}]


def test_describe(sf: Salesforce) -> None:
    described = sobject(sf, "Event").describe()
    names = {f["name"] for f in described["fields"]}

    assert described["keyPrefix"] == "00U"
    assert {"StartDateTime", "WhoId", "Concord_ICalUID__c"} <= names
    everything: Any = sf.describe()
    assert {o["name"] for o in everything["sobjects"]} >= {"Account", "Contact", "Lead", "Event", "Task", "User"}
    assert sobject(sf, "Contact").metadata()["objectDescribe"]["name"] == "Contact"


def test_collections_update_as_the_rest_guide_writes_it(sf: Salesforce) -> None:
    """The REST API guide's own sObject Collections update example sends ``"id"``, lower case: field names
    are case-insensitive. A failed record's SaveResult carries no id."""
    (first, *_) = sf.query("SELECT Id FROM Contact ORDER BY LastName")["records"]

    updated = rest(
        sf,
        "composite/sobjects",
        method="PATCH",
        json={
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Contact"}, "id": first["Id"], "Title": "Rear Admiral"},
                {"attributes": {"type": "Contact"}, "id": "0035g0000000zzzAAA", "Title": "Nobody"},
            ],
        },
    )

    assert updated[0] == {"id": first["Id"], "success": True, "errors": []}
    assert "id" not in updated[1]
    assert updated[1]["success"] is False
    assert sobject(sf, "Contact").get(first["Id"])["Title"] == "Rear Admiral"


def test_query_all_paging_with_deleted_rows(sf: Salesforce, salesforce: SalesforceSandbox) -> None:
    """A queryAll's nextRecordsUrl names /query/ ("QueryAll More Results"); the rest still holds deleted rows."""
    created = [sobject(sf, "Lead").create({"LastName": f"Old{i:03d}", "Company": "C"})["id"] for i in range(250)]
    for record_id in created[:5]:
        sobject(sf, "Lead").delete(record_id)

    first = sf.query(
        "SELECT Id, IsDeleted FROM Lead WHERE LastName LIKE 'Old%' ORDER BY LastName",
        include_deleted=True,
        headers={"Sforce-Query-Options": "batchSize=200"},
    )
    rest_of_it = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    by_locator = sf.query_more(first["nextRecordsUrl"].rsplit("/", 1)[1], include_deleted=True)
    everything = sf.query_all("SELECT Id FROM Lead WHERE LastName LIKE 'Old%'", include_deleted=True)

    assert (first["totalSize"], first["done"], len(first["records"])) == (250, False, 200)
    assert first["nextRecordsUrl"].startswith("/services/data/v60.0/query/01g")
    assert first["nextRecordsUrl"].endswith("-200")
    assert [r["IsDeleted"] for r in first["records"][:6]] == [True] * 5 + [False]
    assert (rest_of_it["done"], len(rest_of_it["records"]), "nextRecordsUrl" in rest_of_it) == (True, 50, False)
    assert by_locator["records"] == rest_of_it["records"]
    assert len(everything["records"]) == 250
