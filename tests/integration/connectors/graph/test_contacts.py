"""Contract tests: contacts and the "Salesforce Sync" folder."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from concord.adapters.http import ConflictError, NotFoundError
from local.sandboxes import seed
from local.sandboxes.server import ca_bundle_path
from tests.integration.connectors.graph.conftest import make_client

if TYPE_CHECKING:
    from concord.adapters.graph import GraphClient
    from local.sandboxes.graph import GraphSandbox
    from tests.integration.connectors.graph.conftest import SleepRecorder

USER = seed.M365_USER
M365_EMAILS = {p.email for p in seed.PEOPLE if p.in_m365}


def test_finds_the_seeded_sync_folder_and_its_people(graph: GraphClient) -> None:
    folder = graph.ensure_contact_folder(USER)
    contacts = graph.list_contacts(USER, folder)
    assert {c["emailAddresses"][0]["address"] for c in contacts} == M365_EMAILS
    assert all(c["parentFolderId"] == folder for c in contacts)
    assert graph.ensure_contact_folder(USER) == folder  # found, not created twice


def test_creates_a_missing_folder_once_with_quotes_escaped(graph: GraphClient) -> None:
    folder = graph.ensure_contact_folder(USER, "Dad's people")
    assert graph.ensure_contact_folder(USER, "Dad's people") == folder
    assert graph.list_contacts(USER, folder) == []


def test_list_follows_next_links(graph_sandbox: GraphSandbox, sleeps: SleepRecorder) -> None:
    client = make_client(graph_sandbox, sleeps, page_size=2)
    folder = client.ensure_contact_folder(USER)
    calls = client.transport.calls
    assert len(client.list_contacts(USER, folder)) == len(M365_EMAILS)
    assert client.transport.calls - calls == 3  # 6 contacts, 2 a page


def test_create_get_update_delete(graph: GraphClient) -> None:
    folder = graph.ensure_contact_folder(USER)
    created = graph.create_contact(
        USER,
        folder,
        {
            "givenName": "Hedy",
            "surname": "Lamarr",
            "emailAddresses": [{"name": "Hedy Lamarr", "address": "hedy@example.com"}],
            "businessPhones": ["+1 555 0100"],
            "businessAddress": {"street": "1 Main St", "city": "Vienna", "countryOrRegion": "Austria"},
            "birthday": "1914-11-09T11:59:00Z",
        },
    )
    assert created["displayName"] == "Hedy Lamarr"
    assert created["@odata.etag"] == f'W/"{created["changeKey"]}"'
    for key in ("id", "createdDateTime", "lastModifiedDateTime", "parentFolderId", "mobilePhone", "homePhones"):
        assert key in created
    assert graph.get_contact(USER, created["id"])["businessAddress"]["city"] == "Vienna"

    updated = graph.update_contact(USER, created["id"], {"jobTitle": "Inventor"}, etag=created["@odata.etag"])
    assert updated["jobTitle"] == "Inventor"
    assert updated["changeKey"] != created["changeKey"]
    assert updated["@odata.etag"] != created["@odata.etag"]

    with pytest.raises(ConflictError) as stale:
        graph.update_contact(USER, created["id"], {"jobTitle": "Actor"}, etag=created["@odata.etag"])
    assert stale.value.status == 412
    assert graph.update_contact(USER, created["id"], {"department": "R&D"})["department"] == "R&D"  # no etag: wins

    graph.delete_contact(USER, created["id"])
    with pytest.raises(NotFoundError):
        graph.get_contact(USER, created["id"])
    with pytest.raises(NotFoundError):
        graph.delete_contact(USER, created["id"])


def test_stale_if_match_answers_the_exchange_412_body(graph: GraphClient, graph_sandbox: GraphSandbox) -> None:
    folder = graph.ensure_contact_folder(USER)
    contact = graph.list_contacts(USER, folder)[0]
    graph_sandbox.edit(USER, contact["id"], {"jobTitle": "Changed in Outlook"})
    token = graph._token()
    answer = httpx.patch(
        f"{graph_sandbox.graph_url}/users/{USER}/contacts/{contact['id']}",
        json={"jobTitle": "x"},
        headers={"Authorization": f"Bearer {token}", "If-Match": contact["@odata.etag"]},
        verify=ca_bundle_path(),
    )
    assert answer.status_code == 412
    assert answer.json()["error"]["code"] == "ErrorIrresolvableConflict"
    assert "change key" in answer.json()["error"]["message"]
