"""Faithfulness: Microsoft's own Python SDK (msgraph-sdk, Kiota-generated), which nobody here wrote, against
the sandbox.

The SDK is pointed at the sandbox with a custom base URL and an httpx client trusting the sandbox CA; its
Azure Identity authentication provider gets tokens from a credential that runs the client-credentials grant
against the sandbox's token endpoint (azure-identity itself needs OpenID discovery the sandbox does not serve).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from azure.core.credentials import AccessToken
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_authentication_azure.azure_identity_authentication_provider import AzureIdentityAuthenticationProvider
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.models.contact import Contact
from msgraph.generated.models.date_time_time_zone import DateTimeTimeZone
from msgraph.generated.models.email_address import EmailAddress
from msgraph.generated.models.event import Event
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.single_value_legacy_extended_property import SingleValueLegacyExtendedProperty
from msgraph.generated.users.item.calendar_view.delta.delta_request_builder import DeltaRequestBuilder
from msgraph.generated.users.item.contact_folders.item.contacts.contacts_request_builder import ContactsRequestBuilder
from msgraph_core import GraphClientFactory

from concord.adapters.graph import MARKER_PROPERTY, marker_filter
from local.sandboxes import seed
from local.sandboxes.graph import SCOPE, SEED_CLIENT_ID, SEED_CLIENT_SECRET, SEED_TENANT
from local.sandboxes.server import ca_bundle_path

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from local.sandboxes.graph import GraphSandbox

USER = seed.M365_USER


class SandboxCredential:
    """An async ``TokenCredential``: the client-credentials grant at the sandbox's token endpoint."""

    def __init__(self, login_url: str) -> None:
        self.login_url = login_url

    async def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=ca_bundle_path())) as http:
            answer = await http.post(
                f"{self.login_url}/{SEED_TENANT}/oauth2/v2.0/token",
                data={
                    "client_id": SEED_CLIENT_ID,
                    "client_secret": SEED_CLIENT_SECRET,
                    "scope": " ".join(scopes),
                    "grant_type": "client_credentials",
                },
            )
        answer.raise_for_status()
        body = answer.json()
        return AccessToken(body["access_token"], int(time.time()) + int(body["expires_in"]))

    async def close(self) -> None:
        return None


def run(sandbox: GraphSandbox, scenario: Callable[[GraphServiceClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        auth = AzureIdentityAuthenticationProvider(
            SandboxCredential(sandbox.url), scopes=[SCOPE], allowed_hosts=["127.0.0.1"]
        )
        http = httpx.AsyncClient(verify=ssl.create_default_context(cafile=ca_bundle_path()))
        adapter = GraphRequestAdapter(auth, client=GraphClientFactory.create_with_default_middleware(client=http))
        adapter.base_url = sandbox.graph_url
        try:
            return await scenario(GraphServiceClient(request_adapter=adapter))
        finally:
            await http.aclose()

    return asyncio.run(main())


def test_contacts_list_create_update_and_delta(graph_sandbox: GraphSandbox) -> None:
    async def scenario(client: GraphServiceClient) -> None:
        user = client.users.by_user_id(USER)
        folders = await user.contact_folders.get()
        assert folders is not None and folders.value
        folder = user.contact_folders.by_contact_folder_id(str(folders.value[0].id))
        listed = await folder.contacts.get()
        assert listed is not None and listed.value and len(listed.value) == sum(p.in_m365 for p in seed.PEOPLE)

        first = await folder.contacts.delta.get()
        assert first is not None and first.odata_delta_link

        created = await folder.contacts.post(
            Contact(
                given_name="Sdk",
                surname="Made",
                birthday=datetime(1990, 2, 3, tzinfo=UTC),
                email_addresses=[EmailAddress(address="sdk@example.com", name="Sdk Made")],
                single_value_extended_properties=[SingleValueLegacyExtendedProperty(id=MARKER_PROPERTY, value="k-sdk")],
            )
        )
        assert created is not None and created.id and created.display_name == "Sdk Made"
        assert created.birthday == datetime(1990, 2, 3, tzinfo=UTC)
        patched = await user.contacts.by_contact_id(created.id).patch(Contact(job_title="Tester"))
        assert patched is not None and patched.job_title == "Tester"

        config = RequestConfiguration(
            query_parameters=ContactsRequestBuilder.ContactsRequestBuilderGetQueryParameters()
        )
        config.query_parameters.filter = marker_filter("k-sdk")
        found = await folder.contacts.get(request_configuration=config)
        assert found is not None and [c.id for c in found.value or []] == [created.id]

        changes = await folder.contacts.delta.with_url(first.odata_delta_link).get()
        assert changes is not None and [c.id for c in changes.value or []] == [created.id]

    run(graph_sandbox, scenario)


def test_events_create_update_and_calendar_view_delta(graph_sandbox: GraphSandbox) -> None:
    async def scenario(client: GraphServiceClient) -> None:
        user = client.users.by_user_id(USER)
        params = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
            start_date_time="2026-01-01T00:00:00Z", end_date_time="2027-12-31T00:00:00Z"
        )
        first = await user.calendar_view.delta.get(request_configuration=RequestConfiguration(query_parameters=params))
        assert first is not None and first.value and first.odata_delta_link

        event = Event(
            subject="From msgraph-sdk",
            transaction_id="tx-sdk-1",
            start=DateTimeTimeZone(date_time="2026-12-14T09:00:00", time_zone="Pacific Standard Time"),
            end=DateTimeTimeZone(date_time="2026-12-14T10:00:00", time_zone="Pacific Standard Time"),
        )
        created = await user.events.post(event)
        again = await user.events.post(event)  # the same transactionId: Graph answers with the first event
        assert created is not None and again is not None and created.id and again.id == created.id
        patched = await user.events.by_event_id(created.id).patch(Event(subject="Renamed by msgraph-sdk"))
        assert patched is not None and patched.subject == "Renamed by msgraph-sdk"

        changes = await user.calendar_view.delta.with_url(first.odata_delta_link).get()
        assert changes is not None and [e.subject for e in changes.value or []] == ["Renamed by msgraph-sdk"]

    run(graph_sandbox, scenario)


def test_errors_come_back_as_odata_errors(graph_sandbox: GraphSandbox) -> None:
    async def scenario(client: GraphServiceClient) -> None:
        user = client.users.by_user_id(USER)
        with pytest.raises(ODataError) as refused:
            await user.contacts.post(Contact(given_name="Odd", additional_data={"nickname": "x"}))
        assert refused.value.response_status_code == 400
        assert refused.value.error is not None and refused.value.error.code == "RequestBodyRead"
        with pytest.raises(ODataError) as missing:
            await user.events.by_event_id("AAMkAGI2nope").get()
        assert missing.value.response_status_code == 404
        assert missing.value.error is not None and missing.value.error.code == "ErrorItemNotFound"

    run(graph_sandbox, scenario)
