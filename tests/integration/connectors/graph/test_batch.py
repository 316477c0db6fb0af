"""JSON batching: chunks of 20, answers matched by id, per-item statuses through the same classify."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from concord.adapters.graph import BatchRequest
from concord.adapters.http import ConflictError, NotFoundError, TransientError
from local.sandboxes import seed
from local.sandboxes.server import ca_bundle_path

if TYPE_CHECKING:
    from concord.adapters.graph import GraphClient
    from local.sandboxes.graph import GraphSandbox

USER = seed.M365_USER


def test_batch_chunks_and_matches_by_id(graph: GraphClient, graph_sandbox: GraphSandbox) -> None:
    folder = graph.ensure_contact_folder(USER)
    contacts = graph.list_contacts(USER, folder)
    stale = contacts[0]
    graph_sandbox.edit(USER, stale["id"], {"jobTitle": "moved on"})
    requests = [BatchRequest(f"get-{i}", "GET", f"/users/{USER}/contacts/{contacts[i % 6]['id']}") for i in range(21)]
    requests += [
        BatchRequest("missing", "GET", f"/users/{USER}/contacts/AAMkAGI2nope"),
        BatchRequest(
            "stale",
            "PATCH",
            f"/users/{USER}/contacts/{stale['id']}",
            {"jobTitle": "x"},
            {"If-Match": stale["@odata.etag"]},
        ),
        BatchRequest("create", "POST", f"/users/{USER}/contactFolders/{folder}/contacts", {"givenName": "Batch"}),
    ]
    calls = graph.transport.calls
    results = graph.batch(requests)
    assert graph.transport.calls - calls == 2  # 24 requests: 20 + 4
    assert set(results) == {r.id for r in requests}
    for i in range(21):
        assert results[f"get-{i}"].status == 200
        assert results[f"get-{i}"].body["id"] == contacts[i % 6]["id"]
        assert results[f"get-{i}"].error is None
    assert isinstance(results["missing"].error, NotFoundError)
    assert isinstance(results["stale"].error, ConflictError) and results["stale"].status == 412
    assert results["create"].status == 201 and results["create"].body["givenName"] == "Batch"


def test_throttled_item_carries_retry_after(graph: GraphClient, graph_sandbox: GraphSandbox) -> None:
    graph_sandbox.throttle_batch_items(1, retry_after=7)
    results = graph.batch([BatchRequest("a", "GET", f"/users/{USER}/contactFolders")])
    error = results["a"].error
    assert isinstance(error, TransientError) and error.retry_after == 7.0


def _raw_batch(graph: GraphClient, graph_sandbox: GraphSandbox, requests: list[dict[str, object]]) -> httpx.Response:
    return httpx.post(
        f"{graph_sandbox.graph_url}/$batch",
        json={"requests": requests},
        headers={"Authorization": f"Bearer {graph._token()}"},
        verify=ca_bundle_path(),
    )


def test_answers_come_in_any_order(graph: GraphClient, graph_sandbox: GraphSandbox) -> None:
    requests: list[dict[str, object]] = [
        {"id": str(i), "method": "GET", "url": f"/users/{USER}/contactFolders"} for i in range(20)
    ]
    answer = _raw_batch(graph, graph_sandbox, requests)
    ids = [r["id"] for r in answer.json()["responses"]]
    assert sorted(ids, key=int) == [str(i) for i in range(20)]
    assert ids != [str(i) for i in range(20)]  # shuffled (one chance in 20! to fail)
    assert all(r["status"] == 200 and "body" in r and "headers" in r for r in answer.json()["responses"])


def test_more_than_twenty_is_400(graph: GraphClient, graph_sandbox: GraphSandbox) -> None:
    requests: list[dict[str, object]] = [{"id": str(i), "method": "GET", "url": "/subscriptions"} for i in range(21)]
    answer = _raw_batch(graph, graph_sandbox, requests)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "BadRequest"


def test_depends_on_a_failure_is_424(graph: GraphClient, graph_sandbox: GraphSandbox) -> None:
    requests: list[dict[str, object]] = [
        {"id": "1", "method": "GET", "url": f"/users/{USER}/contacts/nope"},
        {"id": "2", "method": "GET", "url": f"/users/{USER}/contactFolders", "dependsOn": ["1"]},
    ]
    statuses = {r["id"]: r["status"] for r in _raw_batch(graph, graph_sandbox, requests).json()["responses"]}
    assert statuses == {"1": 404, "2": 424}


def test_duplicate_ids_are_refused_client_side(graph: GraphClient) -> None:
    with pytest.raises(ValueError, match="unique"):
        graph.batch([BatchRequest("a", "GET", "/subscriptions"), BatchRequest("a", "GET", "/subscriptions")])
