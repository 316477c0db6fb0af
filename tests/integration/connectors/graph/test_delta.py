"""Delta rounds: paging, delta links, @removed, 410 on a stale token."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx
import pytest

from concord.adapters.http import PermanentError, ResyncRequired
from local.sandboxes import seed
from local.sandboxes.server import ca_bundle_path
from tests.integration.connectors.graph.conftest import make_client

if TYPE_CHECKING:
    from concord.adapters.graph import GraphClient
    from local.sandboxes.graph import GraphSandbox
    from tests.integration.connectors.graph.conftest import SleepRecorder

USER = seed.M365_USER
START, END = datetime(2026, 11, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)


def test_contacts_delta_round_then_changes(graph_sandbox: GraphSandbox, sleeps: SleepRecorder) -> None:
    client = make_client(graph_sandbox, sleeps, page_size=2)
    folder = client.ensure_contact_folder(USER)
    calls = client.transport.calls
    first = client.contacts_delta(USER, folder)
    assert client.transport.calls - calls == 3  # three pages of two
    assert len(first.changed) == sum(p.in_m365 for p in seed.PEOPLE) and first.removed == []
    assert "$deltatoken=" in first.delta_link or "%24deltatoken=" in first.delta_link

    quiet = client.contacts_delta(USER, folder, first.delta_link)
    assert quiet.changed == [] and quiet.removed == []

    new = client.create_contact(USER, folder, {"givenName": "New", "surname": "Person"})
    gone, edited = first.changed[0]["id"], first.changed[1]["id"]
    client.update_contact(USER, edited, {"jobTitle": "Edited"})
    client.delete_contact(USER, gone)
    graph_sandbox.put_contact(USER, {"givenName": "Default", "surname": "Folder"})  # not in the folder
    changes = client.contacts_delta(USER, folder, quiet.delta_link)
    assert {c["id"] for c in changes.changed} == {new["id"], edited}
    assert changes.removed == [gone]


def test_removed_entries_have_the_graph_shape(graph: GraphClient, graph_sandbox: GraphSandbox) -> None:
    folder = graph.ensure_contact_folder(USER)
    round_ = graph.contacts_delta(USER, folder)
    graph.delete_contact(USER, round_.changed[0]["id"])
    page = httpx.get(
        round_.delta_link, headers={"Authorization": f"Bearer {graph._token()}"}, verify=ca_bundle_path()
    ).json()
    assert page["value"] == [
        {"@odata.type": "#microsoft.graph.contact", "id": round_.changed[0]["id"], "@removed": {"reason": "deleted"}}
    ]
    assert "@odata.deltaLink" in page and "@odata.nextLink" not in page


def test_stale_delta_link_is_resync_required(graph: GraphClient, graph_sandbox: GraphSandbox) -> None:
    folder = graph.ensure_contact_folder(USER)
    link = graph.contacts_delta(USER, folder).delta_link
    graph_sandbox.invalidate_delta_tokens()
    with pytest.raises(ResyncRequired) as stale:
        graph.contacts_delta(USER, folder, link)
    assert stale.value.status == 410
    raw = httpx.get(link, headers={"Authorization": f"Bearer {graph._token()}"}, verify=ca_bundle_path())
    assert raw.status_code == 410 and raw.json()["error"]["code"] == "syncStateNotFound"


def test_admin_endpoint_invalidates_delta_tokens(graph: GraphClient, graph_sandbox: GraphSandbox) -> None:
    folder = graph.ensure_contact_folder(USER)
    link = graph.contacts_delta(USER, folder).delta_link
    assert httpx.post(f"{graph_sandbox.url}/_sandbox/delta/invalidate", verify=ca_bundle_path()).status_code == 200
    with pytest.raises(ResyncRequired):
        graph.contacts_delta(USER, folder, link)


def test_events_delta_window_and_moves(graph: GraphClient, graph_sandbox: GraphSandbox) -> None:
    window_end = datetime(2026, 12, 3, 23, 59, tzinfo=UTC)
    first = graph.events_delta(USER, START, window_end)
    subjects = {e["subject"] for e in first.changed}
    assert subjects == {"Quarterly review", "Dentist", "Contract call"}
    assert all(e["start"]["timeZone"] == "UTC" for e in first.changed)
    moved = next(e for e in first.changed if e["subject"] == "Contract call")
    graph.update_event(
        USER,
        moved["id"],
        {
            "start": {"dateTime": "2026-12-20T10:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2026-12-20T11:00:00", "timeZone": "UTC"},
        },
    )
    inside = graph.create_event(
        USER,
        {
            "subject": "New one",
            "start": {"dateTime": "2026-12-02T10:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2026-12-02T11:00:00", "timeZone": "UTC"},
        },
    )
    changes = graph.events_delta(USER, START, window_end, first.delta_link)
    assert [e["id"] for e in changes.changed] == [inside["id"]]
    assert changes.removed == [moved["id"]]  # left the window


def test_links_to_other_hosts_are_not_followed(graph: GraphClient) -> None:
    calls = graph.transport.calls
    with pytest.raises(PermanentError, match="refusing"):
        graph.contacts_delta(USER, "f", "https://attacker.example/v1.0/users/x/contacts/delta?$deltatoken=1")
    assert graph.transport.calls == calls


def test_a_delta_page_is_capped_at_what_graph_grants(graph_sandbox: GraphSandbox, sleeps: SleepRecorder) -> None:
    client = make_client(graph_sandbox, sleeps, page_size=1000)
    folder = client.ensure_contact_folder(USER)
    for n in range(205):
        graph_sandbox.put_contact(USER, {"givenName": "Many", "surname": f"P{n}"}, folder_id=folder)
    calls = client.transport.calls
    round_ = client.contacts_delta(USER, folder)
    assert len(round_.changed) >= 205
    assert client.transport.calls - calls == 2  # 200, then the rest: asking for 1,000 a page gets 200
