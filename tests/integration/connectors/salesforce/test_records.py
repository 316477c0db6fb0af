"""sObject reads and writes through the client: sObject Collections, Composite, per-record results."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from concord.adapters.http import NotFoundError
from concord.adapters.salesforce import ApiUsage
from local.sandboxes.salesforce import ValidationRule
from tests.integration.connectors.salesforce.conftest import KeyPair, raw_http, session_token

if TYPE_CHECKING:
    from concord.adapters.salesforce import SalesforceApi, SalesforceClient
    from local.sandboxes.salesforce import SalesforceSandbox


def test_client_implements_the_service_protocol(client: SalesforceClient) -> None:
    api: SalesforceApi = client  # checked by mypy; the runtime check keeps the test honest

    assert callable(api.create_event)


def _contact_ids(client: SalesforceClient) -> list[str]:
    return [r["Id"] for r in client.query("SELECT Id FROM Contact ORDER BY LastName")]


def test_get_one_record(client: SalesforceClient) -> None:
    (contact_id, *_) = _contact_ids(client)

    record = client.get("Contact", contact_id)
    some = client.get("Contact", contact_id, fields=["Email", "LastModifiedDate"])

    assert record["Id"] == contact_id
    assert record["LastName"] == "Hopper"
    assert record["SystemModstamp"].endswith("+0000")
    assert set(some) == {"attributes", "Email", "LastModifiedDate"}


def test_get_missing_and_deleted_records_is_not_found(client: SalesforceClient) -> None:
    (contact_id, *_) = _contact_ids(client)
    client.delete([contact_id])

    with pytest.raises(NotFoundError) as deleted:
        client.get("Contact", contact_id)
    with pytest.raises(NotFoundError) as missing:
        client.get("Contact", "0035g0000000zzzAAA")

    assert (deleted.value.status, deleted.value.code) == (404, "ENTITY_IS_DELETED")
    assert (missing.value.status, missing.value.code) == (404, "NOT_FOUND")


def test_create_chunks_by_200_and_keeps_the_order(client: SalesforceClient, salesforce: SalesforceSandbox) -> None:
    records = [{"LastName": f"Bulk{i:03d}", "Email": f"bulk{i}@example.com"} for i in range(450)]
    records[201]["Email"] = "not-an-address"
    list(client.query("SELECT Id FROM User"))  # log in first: count only the writes
    calls = client.calls

    results = client.create("Contact", records)

    assert client.calls - calls == 3
    assert len(results) == 450
    assert [r.success for r in results].count(False) == 1
    failed = results[201]
    assert failed.id is None
    assert [(e.code, e.fields) for e in failed.errors] == [("INVALID_EMAIL_ADDRESS", ("Email",))]
    assert not failed.transient
    stored = salesforce.record(results[449].id or "")
    assert stored is not None
    assert stored["LastName"] == "Bulk449"


def test_create_reports_missing_and_too_long_fields_per_record(client: SalesforceClient) -> None:
    results = client.create("Contact", [{"FirstName": "No last name"}, {"LastName": "x" * 81}, {"LastName": "Fine"}])

    assert [r.success for r in results] == [False, False, True]
    assert results[0].errors[0].code == "REQUIRED_FIELD_MISSING"
    assert results[0].errors[0].fields == ("LastName",)
    assert results[1].errors[0].code == "STRING_TOO_LONG"
    assert "max length=80" in results[1].errors[0].message


def test_update_and_delete_report_per_record(client: SalesforceClient, salesforce: SalesforceSandbox) -> None:
    first, second, *_ = _contact_ids(client)
    client.delete([second])

    updated = client.update("Contact", [{"Id": first, "Title": "Admiral"}, {"Id": second, "Title": "Ghost"}])
    deleted = client.delete([first, second])

    assert [r.success for r in updated] == [True, False]
    assert updated[1].errors[0].code == "ENTITY_IS_DELETED"
    assert updated[1].id == second
    assert [r.success for r in deleted] == [True, False]
    assert deleted[1].errors[0].code == "ENTITY_IS_DELETED"
    assert salesforce.record(first) == {**(salesforce.record(first) or {}), "Title": "Admiral", "IsDeleted": True}


def test_update_needs_ids(client: SalesforceClient) -> None:
    with pytest.raises(ValueError, match="no Id"):
        client.update("Contact", [{"Title": "x"}])


def test_retrieve_by_ids_get_and_post(client: SalesforceClient) -> None:
    ids = _contact_ids(client)
    created = client.create("Contact", [{"LastName": f"Many{i}"} for i in range(205)])
    many = [r.id or "" for r in created]

    few = client.retrieve("Contact", [ids[0], "0035g0000000zzzAAA", ids[1]], ["LastName"])
    lots = client.retrieve("Contact", many, ["LastName"])

    assert [r and r["LastName"] for r in few] == ["Hopper", None, "Johnson"]
    assert few[0] is not None
    assert set(few[0]) == {"attributes", "Id", "LastName"}
    assert [r and r["LastName"] for r in lots] == [f"Many{i}" for i in range(205)]


def test_validation_rule_rejects_per_record(client: SalesforceClient, salesforce: SalesforceSandbox) -> None:
    salesforce.add_validation_rule(ValidationRule("Contact", "Title", ("Intern",), "Interns are not contacts."))

    results = client.create("Contact", [{"LastName": "A", "Title": "Intern"}, {"LastName": "B", "Title": "Boss"}])

    assert results[0].errors[0].code == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert results[0].errors[0].message == "Interns are not contacts."
    assert not results[0].transient
    assert results[1].success


def test_validation_rule_on_a_single_record_write_has_the_rest_error_shape(
    salesforce: SalesforceSandbox, key_pair: KeyPair
) -> None:
    token = session_token(salesforce, key_pair)
    with raw_http() as http:
        http.post(
            f"{salesforce.url}/_sandbox/validation_rules",
            json={"sobject": "Lead", "field": "Company", "rejected": ["Acme"], "message": "No Acme."},
        )
        response = http.post(
            f"{salesforce.url}/services/data/v60.0/sobjects/Lead/",
            json={"LastName": "Coyote", "Company": "Acme"},
            headers={"Authorization": f"Bearer {token}"},
        )

    assert response.status_code == 400
    assert response.json() == [
        {"message": "No Acme.", "errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "fields": ["Company"]}
    ]


def test_lock_contention_is_a_transient_per_record_failure(
    client: SalesforceClient, salesforce: SalesforceSandbox
) -> None:
    salesforce.fail_next_writes_with_lock(1)

    results = client.create("Contact", [{"LastName": "Locked"}, {"LastName": "Free"}])

    assert results[0].errors[0].code == "UNABLE_TO_LOCK_ROW"
    assert results[0].transient
    assert results[1].success


def test_create_event_with_relations_in_one_call(
    client: SalesforceClient, salesforce: SalesforceSandbox, cdc_events: list[dict[str, Any]]
) -> None:
    people = _contact_ids(client)[:3]
    calls = client.calls
    event = {
        "Subject": "Design review",
        "StartDateTime": "2026-12-10T09:00:00Z",
        "EndDateTime": "2026-12-10T10:00:00Z",
        "WhoId": people[0],
        "Concord_ICalUID__c": "uid-design-review@example",
    }

    result = client.create_event(event, [people[1], people[2], "003000000000000AAA"])

    assert client.calls - calls == 1
    assert result.event.success
    assert result.event.id is not None
    assert result.event.id.startswith("00U")
    assert [r.success for r in result.relations] == [True, True, False]
    assert result.relations[2].errors[0].code == "INVALID_CROSS_REFERENCE_KEY"
    relations = client.query(f"SELECT RelationId FROM EventRelation WHERE EventId = '{result.event.id}'")
    assert {r["RelationId"] for r in relations} == set(people[1:])
    stored = salesforce.record(result.event.id)
    assert stored is not None
    assert stored["DurationInMinutes"] == 60
    origins = {e["detail"]["payload"]["ChangeEventHeader"]["changeOrigin"] for e in cdc_events}
    assert origins == {"com/salesforce/api/rest/60.0;client=concord"}


def test_create_event_failure_halts_its_relations(client: SalesforceClient) -> None:
    people = _contact_ids(client)[:2]

    result = client.create_event({"Subject": "No times"}, people)

    assert not result.event.success
    assert result.event.errors[0].code == "REQUIRED_FIELD_MISSING"
    assert all(r.errors[0].code == "PROCESSING_HALTED" for r in result.relations)
    assert all(r.transient for r in result.relations)


def test_api_usage_is_read_from_sforce_limit_info(client: SalesforceClient, salesforce: SalesforceSandbox) -> None:
    assert client.api_usage is None

    list(client.query("SELECT Id FROM Contact"))
    list(client.query("SELECT Id FROM Lead"))

    assert client.api_usage == ApiUsage(2, salesforce.daily_limit)
