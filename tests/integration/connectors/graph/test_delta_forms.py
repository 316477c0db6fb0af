"""Graph reads a delta request in several URL forms, and generated clients (msgraph-sdk) send the
namespaced, parenthesised one; the sandbox must answer every form the service accepts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from local.sandboxes import seed

if TYPE_CHECKING:
    from concord.adapters.graph import GraphClient

USER = seed.M365_USER
FORMS = ["delta", "delta()", "microsoft.graph.delta", "microsoft.graph.delta()"]
WINDOW = {"startDateTime": "2026-01-01T00:00:00Z", "endDateTime": "2027-12-31T00:00:00Z"}


@pytest.mark.parametrize("form", FORMS)
def test_contact_folder_delta_forms(graph: GraphClient, form: str) -> None:
    folder = graph.ensure_contact_folder(USER)
    page = graph._call("GET", f"{graph.graph_url}/users/{USER}/contactFolders/{folder}/contacts/{form}").json()
    assert page["value"] and "@odata.deltaLink" in page
    again = graph._call("GET", page["@odata.deltaLink"]).json()
    assert again["value"] == []


@pytest.mark.parametrize("form", FORMS)
def test_default_contacts_delta_forms(graph: GraphClient, form: str) -> None:
    page = graph._call("GET", f"{graph.graph_url}/users/{USER}/contacts/{form}").json()
    assert {c["givenName"] for c in page["value"]} >= {"Pat", "Mum"}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("prefix", ["", "calendar/"])
def test_calendar_view_delta_forms(graph: GraphClient, form: str, prefix: str) -> None:
    url = f"{graph.graph_url}/users/{USER}/{prefix}calendarView/{form}"
    page = graph._call("GET", url, params=WINDOW).json()
    assert page["value"] and "@odata.deltaLink" in page


def test_token_parameters_are_read_whatever_their_case(graph: GraphClient) -> None:
    folder = graph.ensure_contact_folder(USER)
    url = f"{graph.graph_url}/users/{USER}/contactFolders/{folder}/contacts/delta()"
    link = graph._call("GET", url).json()["@odata.deltaLink"]
    token = httpx.URL(link).params["$deltatoken"]
    for name in ("$deltatoken", "$deltaToken", "%24deltatoken"):
        page = graph._call("GET", f"{url}?{name}={token}").json()
        assert page["value"] == [] and "@odata.deltaLink" in page
