"""Token endpoint and bearer checks: client credentials per tenant, caching, refresh once on 401."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from concord.adapters.graph import GraphCredentials
from concord.adapters.http import AuthError
from local.sandboxes import seed
from local.sandboxes.graph import SEED_CLIENT_ID, SEED_TENANT
from local.sandboxes.server import ca_bundle_path
from tests.integration.connectors.graph.conftest import make_client

if TYPE_CHECKING:
    from concord.adapters.graph import GraphClient
    from local.sandboxes.graph import GraphSandbox
    from tests.integration.connectors.graph.conftest import SleepRecorder


def test_token_is_fetched_once_and_cached(graph: GraphClient) -> None:
    graph.ensure_contact_folder(seed.M365_USER)
    assert graph.transport.calls == 2  # token + list
    graph.ensure_contact_folder(seed.M365_USER)
    assert graph.transport.calls == 3


def test_expired_token_is_refreshed_once(graph: GraphClient, graph_sandbox: GraphSandbox) -> None:
    graph.ensure_contact_folder(seed.M365_USER)
    graph_sandbox.tokens.expire_all()
    assert graph.ensure_contact_folder(seed.M365_USER)
    assert graph.transport.calls == 2 + 3  # 401, new token, retry


def test_token_refused_after_refresh_is_auth_error(graph: GraphClient, graph_sandbox: GraphSandbox) -> None:
    graph_sandbox.tokens.lifetime_s = -1  # every token is born expired
    with pytest.raises(AuthError, match="refused again"):
        graph.ensure_contact_folder(seed.M365_USER)
    assert graph.transport.calls == 4  # token, 401, token, 401: one refresh only


def test_admin_switch_expires_tokens(graph: GraphClient, graph_sandbox: GraphSandbox) -> None:
    graph.ensure_contact_folder(seed.M365_USER)
    answer = httpx.post(f"{graph_sandbox.url}/_sandbox/faults", json={"expire_tokens": True}, verify=ca_bundle_path())
    assert answer.status_code == 200
    graph.ensure_contact_folder(seed.M365_USER)
    assert graph.transport.calls == 5


@pytest.mark.parametrize(
    ("tenant", "client_id", "secret", "status", "error", "code"),
    [
        (SEED_TENANT, SEED_CLIENT_ID, "wrong-secret-value", 401, "invalid_client", 7000215),
        ("00000000-0000-0000-0000-000000000000", SEED_CLIENT_ID, "x", 400, "invalid_request", 90002),
        (SEED_TENANT, "11111111-1111-1111-1111-111111111111", "x", 400, "unauthorized_client", 700016),
    ],
)
def test_token_errors_have_the_aadsts_shape(
    graph_sandbox: GraphSandbox, tenant: str, client_id: str, secret: str, status: int, error: str, code: int
) -> None:
    answer = httpx.post(
        f"{graph_sandbox.url}/{tenant}/oauth2/v2.0/token",
        data={
            "client_id": client_id,
            "client_secret": secret,
            "scope": "https://graph.microsoft.com/.default",
            "grant_type": "client_credentials",
        },
        verify=ca_bundle_path(),
    )
    body = answer.json()
    assert answer.status_code == status
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert {"timestamp", "trace_id", "correlation_id", "error_uri"} <= body.keys()
    assert secret not in answer.text


def test_token_success_shape(graph_sandbox: GraphSandbox) -> None:
    from local.sandboxes.graph import SEED_CLIENT_SECRET

    answer = httpx.post(
        f"{graph_sandbox.url}/{SEED_TENANT}/oauth2/v2.0/token",
        data={
            "client_id": SEED_CLIENT_ID,
            "client_secret": SEED_CLIENT_SECRET,
            "scope": "https://graph.microsoft.com/.default",
            "grant_type": "client_credentials",
        },
        verify=ca_bundle_path(),
    )
    assert answer.status_code == 200
    assert set(answer.json()) == {"token_type", "expires_in", "ext_expires_in", "access_token"}
    assert answer.json()["token_type"] == "Bearer"


def test_bad_secret_is_auth_error(graph_sandbox: GraphSandbox, sleeps: SleepRecorder) -> None:
    client = make_client(graph_sandbox, sleeps, credentials=GraphCredentials(SEED_TENANT, SEED_CLIENT_ID, "nope-nope"))
    with pytest.raises(AuthError, match="AADSTS7000215"):
        client.ensure_contact_folder(seed.M365_USER)
    assert sleeps.waits == []  # never retried


def test_graph_without_token_answers_401_body(graph_sandbox: GraphSandbox) -> None:
    answer = httpx.get(f"{graph_sandbox.graph_url}/users/{seed.M365_USER}/contactFolders", verify=ca_bundle_path())
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert {"date", "request-id", "client-request-id"} <= answer.json()["error"]["innerError"].keys()
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_other_tenants_user_is_invisible(graph_sandbox: GraphSandbox, sleeps: SleepRecorder) -> None:
    from concord.adapters.http import NotFoundError

    graph_sandbox.add_app("tenant-b", "app-b", "secret-b-123")
    graph_sandbox.add_user("tenant-b", "bob@b.example")
    client = make_client(graph_sandbox, sleeps, credentials=GraphCredentials("tenant-b", "app-b", "secret-b-123"))
    assert client.ensure_contact_folder("bob@b.example")
    with pytest.raises(NotFoundError, match="ErrorInvalidUser"):
        client.ensure_contact_folder(seed.M365_USER)
