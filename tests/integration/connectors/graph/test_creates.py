"""No create is retried blind: a 5xx or a dropped connection after Graph committed a contact or an event
must not make a second one, whether the create went alone or inside a ``$batch``.

The sandbox's after-commit faults (``fail_after_commit``, ``drop_batch_answers``) commit the write and
then lose its answer, as a timeout or a gateway error after the fact does."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest

from concord.adapters.graph import MARKER_PROPERTY, NOT_ANSWERED, BatchRequest, marker_filter
from concord.adapters.http import TransientError
from local.sandboxes import seed
from local.sandboxes.server import ca_bundle_path

if TYPE_CHECKING:
    from concord.adapters.graph import GraphClient
    from local.sandboxes.graph import GraphSandbox
    from tests.integration.connectors.graph.conftest import SleepRecorder

USER = seed.M365_USER
LOST = [503, 504, None]  # a 5xx after the commit, or the connection closed with no answer


def _event(subject: str) -> dict[str, Any]:
    return {
        "subject": subject,
        "start": {"dateTime": "2026-12-11T10:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2026-12-11T11:00:00", "timeZone": "UTC"},
    }


def _count(sandbox: GraphSandbox, kind: str) -> int:
    return int(sandbox.state()["mailboxes"][USER][kind])


def _contacts_named(graph: GraphClient, folder: str, name: str) -> list[dict[str, Any]]:
    return [c for c in graph.list_contacts(USER, folder) if c["givenName"] == name]


@pytest.mark.parametrize("status", LOST)
def test_contact_create_answered_after_commit_is_found_not_repeated(
    graph: GraphClient, graph_sandbox: GraphSandbox, status: int | None
) -> None:
    folder = graph.ensure_contact_folder(USER)
    graph_sandbox.fail_after_commit(1, status)
    created = graph.create_contact(USER, folder, {"givenName": "Once", "surname": "Only"}, key="k-contact-1")
    assert [c["id"] for c in _contacts_named(graph, folder, "Once")] == [created["id"]]
    found = graph.find_contact_by_key(USER, folder, "k-contact-1")
    assert found is not None and found["id"] == created["id"]


@pytest.mark.parametrize("status", LOST)
def test_event_create_answered_after_commit_is_found_not_repeated(
    graph: GraphClient, graph_sandbox: GraphSandbox, status: int | None
) -> None:
    before = _count(graph_sandbox, "events")
    graph_sandbox.fail_after_commit(1, status)
    created = graph.create_event(USER, _event("Once only"), key="k-event-1")
    assert _count(graph_sandbox, "events") == before + 1
    assert created["transactionId"] == "k-event-1" and created["subject"] == "Once only"


def test_a_429_is_retried_without_a_lookup(
    graph: GraphClient, graph_sandbox: GraphSandbox, sleeps: SleepRecorder
) -> None:
    folder = graph.ensure_contact_folder(USER)
    graph_sandbox.faults.throttle(1, retry_after=2)
    served = graph_sandbox.requests_served
    graph.create_contact(USER, folder, {"givenName": "Throttled"})
    assert sleeps.waits == [2.0] and graph_sandbox.requests_served - served == 2  # the 429, then the POST
    assert len(_contacts_named(graph, folder, "Throttled")) == 1


def test_a_create_that_never_lands_is_posted_again(graph: GraphClient, graph_sandbox: GraphSandbox) -> None:
    folder = graph.ensure_contact_folder(USER)
    graph_sandbox.faults.fail(1, 503)  # before the commit: nothing to find, so the client posts again
    graph.create_contact(USER, folder, {"givenName": "Second try"})
    assert len(_contacts_named(graph, folder, "Second try")) == 1


def test_graph_answers_a_repeated_transaction_id_with_the_first_event(
    graph: GraphClient, graph_sandbox: GraphSandbox
) -> None:
    before = _count(graph_sandbox, "events")
    token = graph._token()
    url = f"{graph.graph_url}/users/{USER}/events"
    body = {**_event("Posted twice"), "transactionId": "tx-1"}
    with httpx.Client(verify=ca_bundle_path(), headers={"Authorization": f"Bearer {token}"}) as http:
        first, second = http.post(url, json=body), http.post(url, json=body)
        changed = http.patch(f"{url}/{first.json()['id']}", json={"transactionId": "tx-2"})
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"] and _count(graph_sandbox, "events") == before + 1
    assert changed.status_code == 400  # "you can't change transactionId in a subsequent update"


def test_the_marker_is_hidden_unless_expanded_and_found_by_the_filter(graph: GraphClient) -> None:
    folder = graph.ensure_contact_folder(USER)
    created = graph.create_contact(USER, folder, {"givenName": "Marked"}, key="it's-mine")
    assert "singleValueExtendedProperties" not in created
    url = f"{graph.graph_url}/users/{USER}/contacts/{created['id']}"
    expanded = graph._call(
        "GET", url, params={"$expand": f"singleValueExtendedProperties($filter=id eq '{MARKER_PROPERTY}')"}
    )
    assert expanded.json()["singleValueExtendedProperties"] == [{"id": MARKER_PROPERTY, "value": "it's-mine"}]
    listed = graph._call("GET", f"{graph.graph_url}/users/{USER}/contacts", params={"$filter": marker_filter("other")})
    assert listed.json()["value"] == []


@pytest.mark.parametrize("status", LOST)
def test_batch_of_creates_whose_answer_is_lost_makes_no_duplicates(
    graph: GraphClient, graph_sandbox: GraphSandbox, status: int | None
) -> None:
    folder = graph.ensure_contact_folder(USER)
    contacts = {f"batch-c-{i}": {"givenName": f"Batch{i}"} for i in range(3)}
    graph_sandbox.fail_after_commit(1, status)  # the $batch call commits all three, then its answer is lost
    results = graph.create_contacts(USER, folder, contacts)
    assert all(r.error is None for r in results.values())
    for i in range(3):
        named = _contacts_named(graph, folder, f"Batch{i}")
        assert [c["id"] for c in named] == [results[f"batch-c-{i}"].body["id"]]

    before = _count(graph_sandbox, "events")
    graph_sandbox.fail_after_commit(1, status)
    events = graph.create_events(USER, {f"batch-e-{i}": _event(f"Batch event {i}") for i in range(3)})
    assert all(r.error is None for r in events.values())
    assert _count(graph_sandbox, "events") == before + 3


def test_partial_batch_answer_keeps_successes_and_resolves_the_rest(
    graph: GraphClient, graph_sandbox: GraphSandbox
) -> None:
    folder = graph.ensure_contact_folder(USER)
    graph_sandbox.drop_batch_answers(2)  # two of the four run, but their answers are left out
    results = graph.create_contacts(USER, folder, {f"part-{i}": {"givenName": f"Part{i}"} for i in range(4)})
    assert sorted(results) == [f"part-{i}" for i in range(4)]
    assert all(r.error is None and r.body["id"] for r in results.values())
    for i in range(4):
        assert len(_contacts_named(graph, folder, f"Part{i}")) == 1


def test_plain_batch_marks_missing_answers_instead_of_raising(graph: GraphClient, graph_sandbox: GraphSandbox) -> None:
    folder = graph.ensure_contact_folder(USER)
    url = f"/users/{USER}/contactFolders/{folder}/contacts"
    requests = [BatchRequest(str(i), "POST", url, body={"givenName": f"Plain{i}"}) for i in range(3)]
    graph_sandbox.drop_batch_answers(1)
    results = graph.batch(requests)
    assert sorted(results) == ["0", "1", "2"]
    lost = [r for r in results.values() if r.error is not None]
    assert len(lost) == 1 and lost[0].status == NOT_ANSWERED and isinstance(lost[0].error, TransientError)
    kept = [r for r in results.values() if r.error is None]
    assert len(kept) == 2 and all(r.status == 201 and r.body["id"] for r in kept)


def test_a_failed_chunk_keeps_the_answers_of_the_others(graph: GraphClient, graph_sandbox: GraphSandbox) -> None:
    folder = graph.ensure_contact_folder(USER)
    url = f"/users/{USER}/contactFolders/{folder}/contacts"
    requests = [BatchRequest(str(i), "POST", url, body={"givenName": f"Chunk{i}"}) for i in range(25)]
    graph_sandbox.fail_after_commit(1, 503)  # the first chunk of 20 commits; its answer is lost
    results = graph.batch(requests)
    assert sum(r.status == NOT_ANSWERED for r in results.values()) == 20
    assert sorted(r.id for r in results.values() if r.status == 201) == [str(i) for i in range(20, 25)]
