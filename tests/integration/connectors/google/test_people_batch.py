"""People batch calls the sync worker uses: batchGet, batchCreateContacts, batchUpdateContacts, batchDeleteContacts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from concord.adapters.google import contact_marker
from concord.adapters.http import ConflictError, NotFoundError, PermanentError

from .conftest import USER

if TYPE_CHECKING:
    from concord.adapters.google import GoogleClient
    from local.sandboxes.google import GoogleSandbox


def test_batch_create_get_update_delete(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    people = [{"names": [{"givenName": f"P{i}"}], "emailAddresses": [{"value": f"p{i}@x.example"}]} for i in range(205)]
    markers = [f"003{i:04d}" for i in range(205)]

    created = client.batch_create_contacts(USER, people, markers=markers)

    assert [p["names"][0]["givenName"] for p in created] == [f"P{i}" for i in range(205)]
    assert [contact_marker(p) for p in created] == markers
    names = [p["resourceName"] for p in created]
    got = client.batch_get_contacts(USER, [*names, "people/c1"])
    assert got["people/c1"] is None
    assert [(got[n] or {}).get("resourceName") for n in names] == names

    changes = {p["resourceName"]: {"etag": p["etag"], "names": [{"givenName": "Renamed"}]} for p in created[:3]}
    updated = client.batch_update_contacts(USER, changes, ["names"])
    assert {n: p["names"][0]["givenName"] for n, p in updated.items()} == dict.fromkeys(changes, "Renamed")
    with pytest.raises(ConflictError):  # the etags sent are stale now: nothing of the call is applied
        client.batch_update_contacts(USER, changes, ["names"])

    client.batch_delete_contacts(USER, names)
    assert client.list_contacts(USER).items == []
    with pytest.raises(NotFoundError):
        client.batch_delete_contacts(USER, names[:1])


@pytest.mark.parametrize("status", [503, None], ids=["5xx-after-commit", "dropped-after-commit"])
def test_a_batch_create_that_failed_after_commit_is_not_repeated(
    google_sandbox: GoogleSandbox, client: GoogleClient, status: int | None
) -> None:
    client.list_contacts(USER)
    google_sandbox.fail_after_commit(1, status=status)

    created = client.batch_create_contacts(USER, [{"names": [{"givenName": "A"}]}, {"names": [{"givenName": "B"}]}])

    listed = client.list_contacts(USER).items
    assert sorted(p["resourceName"] for p in listed) == sorted(p["resourceName"] for p in created)
    assert [p["names"][0]["givenName"] for p in created] == ["A", "B"]


def test_sandbox_refuses_oversized_batches(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    client.page_sizes["contacts"] = 10
    with pytest.raises(PermanentError, match="between 1 and 200"):
        client._json(
            "https://www.googleapis.com/auth/contacts",
            USER,
            "GET",
            f"{client.endpoints.people}/people:batchGet",
            params=[("personFields", "names"), *(("resourceNames", f"people/c{i}") for i in range(201))],
        )
