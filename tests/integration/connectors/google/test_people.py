"""Contract tests: the People (contacts) part of GoogleClient against the sandbox."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from concord.adapters.google import SCOPE_CONTACTS
from concord.adapters.http import ConflictError, NotFoundError, PermanentError, ResyncRequired
from local.sandboxes import seed
from local.sandboxes.server import ca_bundle_path

from .conftest import USER

if TYPE_CHECKING:
    from concord.adapters.google import GoogleClient
    from local.sandboxes.google import GoogleSandbox


def _emails(people: list[dict[str, Any]]) -> set[str]:
    return {e["value"] for p in people for e in p.get("emailAddresses", [])}


def _groups(person: dict[str, Any]) -> set[str]:
    return {m["contactGroupMembership"]["contactGroupResourceName"] for m in person.get("memberships", [])}


def test_seeded_salesforce_sync_group_holds_the_google_people(seeded: GoogleSandbox, client: GoogleClient) -> None:
    group = client.ensure_contact_group(USER, "Salesforce Sync")
    contacts = client.list_contacts(USER).items

    in_group = [p for p in contacts if group in _groups(p)]
    assert _emails(in_group) == {p.email for p in seed.PEOPLE if p.in_google}
    outside = [p for p in contacts if group not in _groups(p)]
    assert len(outside) == 1 and "contactGroups/myContacts" in _groups(outside[0])


def test_ensure_contact_group_creates_once(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    first = client.ensure_contact_group(USER, "Salesforce Sync")
    second = client.ensure_contact_group(USER, "Salesforce Sync")

    assert first == second and first.startswith("contactGroups/")
    names = [g["name"] for g in client.list_contact_groups(USER)]
    assert names.count("Salesforce Sync") == 1
    assert "myContacts" in names


def test_create_update_delete_and_sync(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    cursor = client.list_contacts(USER).next_sync_token
    created = client.create_contact(
        USER,
        {
            "names": [{"givenName": "Ada", "familyName": "Lovelace"}],
            "emailAddresses": [{"value": "ada@analytical.example", "type": "work"}],
        },
    )
    assert created["resourceName"].startswith("people/c")
    assert created["names"][0]["displayName"] == "Ada Lovelace"

    updated = client.update_contact(
        USER,
        created["resourceName"],
        {"etag": created["etag"], "phoneNumbers": [{"value": "+44 20 7946 0001"}]},
        ["phoneNumbers"],
    )
    assert updated["etag"] != created["etag"]
    assert updated["phoneNumbers"][0]["value"] == "+44 20 7946 0001"
    assert updated["names"] == created["names"]  # not in updatePersonFields: untouched
    assert client.get_contact(USER, created["resourceName"]) == updated

    delta = client.list_contacts(USER, sync_token=cursor)
    assert [p["resourceName"] for p in delta.items] == [created["resourceName"]]

    client.delete_contact(USER, created["resourceName"])
    deleted = client.list_contacts(USER, sync_token=delta.next_sync_token).items
    assert deleted[0]["resourceName"] == created["resourceName"]
    assert deleted[0]["metadata"]["deleted"] is True
    with pytest.raises(NotFoundError):
        client.get_contact(USER, created["resourceName"])
    assert client.list_contacts(USER).items == []


def test_stale_etag_is_a_conflict(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    created = client.create_contact(USER, {"names": [{"givenName": "Grace"}]})
    client.update_contact(
        USER, created["resourceName"], {"etag": created["etag"], "names": [{"givenName": "G"}]}, ["names"]
    )

    with pytest.raises(ConflictError) as caught:
        client.update_contact(
            USER, created["resourceName"], {"etag": created["etag"], "names": [{"givenName": "X"}]}, ["names"]
        )
    assert caught.value.status == 400 and caught.value.code == "FAILED_PRECONDITION"


def test_group_membership_changes_show_in_the_sync(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    group = client.ensure_contact_group(USER, "Salesforce Sync")
    person = client.create_contact(USER, {"names": [{"givenName": "Alan"}]})
    cursor = client.list_contacts(USER).next_sync_token

    missing = client.modify_group_members(USER, group, add=[person["resourceName"], "people/c404"])

    assert missing == ["people/c404"]
    changed = client.list_contacts(USER, sync_token=cursor).items
    assert group in _groups(changed[0])
    client.modify_group_members(USER, group, remove=[person["resourceName"]])
    assert group not in _groups(client.get_contact(USER, person["resourceName"]))


def test_listing_follows_every_page(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    client.page_sizes["contacts"] = 2
    for i in range(5):
        client.create_contact(USER, {"names": [{"givenName": f"P{i}"}]})

    delta = client.list_contacts(USER)

    assert len(delta.items) == 5 and delta.next_sync_token


def test_expired_sync_token_raises_resync_required(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    cursor = client.list_contacts(USER).next_sync_token
    google_sandbox.expire_sync_tokens()

    with pytest.raises(ResyncRequired) as caught:
        client.list_contacts(USER, sync_token=cursor)
    assert caught.value.code == "EXPIRED_SYNC_TOKEN"


def test_bad_requests_are_permanent(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    with pytest.raises(PermanentError):
        client.update_contact(USER, "people/c1", {"names": []}, ["names"])  # no etag: refused before sending
    with pytest.raises(NotFoundError):
        client.delete_contact(USER, "people/c1")


def test_a_page_token_needs_the_first_calls_parameters(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    for i in range(3):
        client.create_contact(USER, {"names": [{"givenName": f"P{i}"}]})
    token = client._tokens.get(USER, SCOPE_CONTACTS)
    url = f"{google_sandbox.url}/v1/people/me/connections"
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(verify=ssl.create_default_context(cafile=ca_bundle_path()), headers=headers) as http:
        first = http.get(url, params={"personFields": "names", "pageSize": 2, "requestSyncToken": "true"}).json()
        same = {"personFields": "names", "pageSize": 2, "requestSyncToken": "true", "pageToken": first["nextPageToken"]}
        assert http.get(url, params=same).status_code == 200
        assert http.get(url, params=same).status_code == 200  # a page can be asked for again
        changed = http.get(url, params={**same, "personFields": "emailAddresses"})
        assert changed.status_code == 400
        assert changed.json()["error"]["status"] == "INVALID_ARGUMENT"
