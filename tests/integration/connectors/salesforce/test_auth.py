"""The JWT bearer flow: the sandbox's token endpoint checks assertions as Salesforce does, and the
client logs in once, reuses the session, and renews it once when it is refused."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import jwt
import pytest

from concord.adapters.http import AuthError
from tests.integration.connectors.salesforce.conftest import (
    AUDIENCE,
    CONSUMER_KEY,
    USERNAME,
    KeyPair,
    credentials_for,
    new_key_pair,
    raw_http,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    import httpx

    from concord.adapters.salesforce import SalesforceClient
    from local.sandboxes.salesforce import SalesforceSandbox

GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def _token_request(sandbox: SalesforceSandbox, private_pem: str, **claims: Any) -> httpx.Response:
    payload = {"iss": CONSUMER_KEY, "sub": USERNAME, "aud": AUDIENCE, "exp": int(time.time()) + 120, **claims}
    assertion = jwt.encode(payload, private_pem, algorithm="RS256")
    with raw_http() as http:
        return http.post(f"{sandbox.url}/services/oauth2/token", data={"grant_type": GRANT, "assertion": assertion})


def test_token_endpoint_answers_like_salesforce(salesforce: SalesforceSandbox, key_pair: KeyPair) -> None:
    response = _token_request(salesforce, key_pair.private_pem)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "scope", "instance_url", "id", "token_type", "issued_at", "signature"}
    assert body["token_type"] == "Bearer"
    assert body["instance_url"] == salesforce.url
    assert body["access_token"].startswith(salesforce.org_id[:15] + "!")
    assert body["id"] == f"{AUDIENCE}/id/{salesforce.org_id}/{salesforce.user_id}"


@pytest.mark.parametrize(
    ("claims", "error", "description"),
    [
        ({"iss": "someone-else"}, "invalid_client_id", "client identifier invalid"),
        ({"aud": "https://test.salesforce.com"}, "invalid_grant", "audience is invalid"),
        ({"sub": "intruder@concord.example"}, "invalid_grant", "user hasn't approved this consumer"),
        ({"exp": int(time.time()) + 3600}, "invalid_grant", "invalid assertion"),
        ({"exp": int(time.time()) - 600}, "invalid_grant", "expired authorization code"),
    ],
)
def test_token_endpoint_refuses_bad_assertions(
    salesforce: SalesforceSandbox, key_pair: KeyPair, claims: dict[str, Any], error: str, description: str
) -> None:
    response = _token_request(salesforce, key_pair.private_pem, **claims)

    assert response.status_code == 400
    assert response.json() == {"error": error, "error_description": description}


def test_token_endpoint_refuses_an_assertion_signed_with_another_key(salesforce: SalesforceSandbox) -> None:
    response = _token_request(salesforce, new_key_pair().private_pem)

    assert response.status_code == 400
    assert response.json() == {"error": "invalid_grant", "error_description": "invalid assertion"}


def test_api_without_a_valid_session_answers_invalid_session_id(salesforce: SalesforceSandbox) -> None:
    with raw_http() as http:
        response = http.get(
            f"{salesforce.url}/services/data/v60.0/query",
            params={"q": "SELECT Id FROM Contact"},
            headers={"Authorization": "Bearer 00D5g000004SEED!made-up"},
        )

    assert response.status_code == 401
    assert response.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def test_versions_list_needs_no_session(salesforce: SalesforceSandbox) -> None:
    with raw_http() as http:
        versions = http.get(f"{salesforce.url}/services/data/").json()

    assert {"label": "Spring '24", "url": "/services/data/v60.0", "version": "60.0"} in versions


def test_client_logs_in_once_and_reuses_the_session(client: SalesforceClient, salesforce: SalesforceSandbox) -> None:
    list(client.query("SELECT Id FROM Contact"))
    list(client.query("SELECT Id FROM Lead"))

    assert client.calls == 3  # one token request, two queries


def test_expired_session_is_renewed_once(client: SalesforceClient, salesforce: SalesforceSandbox) -> None:
    list(client.query("SELECT Id FROM Contact"))
    with raw_http() as http:
        http.post(f"{salesforce.url}/_sandbox/faults", json={"expire_tokens": True})

    rows = list(client.query("SELECT Id FROM Contact"))

    assert len(rows) == 5
    assert client.calls == 5  # token, query, refused query, new token, query


def test_a_session_refused_twice_is_an_auth_error(client: SalesforceClient, salesforce: SalesforceSandbox) -> None:
    salesforce.tokens.lifetime_s = -1  # every token is born expired

    with pytest.raises(AuthError) as caught:
        list(client.query("SELECT Id FROM Contact"))

    assert caught.value.code == "INVALID_SESSION_ID"
    assert client.calls == 4  # token, refused query, token, refused query: no loop


def test_refused_login_is_an_auth_error_with_the_oauth_error(
    make_client: Callable[..., SalesforceClient], salesforce: SalesforceSandbox
) -> None:
    client = make_client(credentials_for(salesforce, new_key_pair()))

    with pytest.raises(AuthError) as caught:
        list(client.query("SELECT Id FROM Contact"))

    assert caught.value.code == "invalid_grant"
    assert "invalid assertion" in str(caught.value)


def test_unusable_private_key_is_an_auth_error(
    make_client: Callable[..., SalesforceClient], salesforce: SalesforceSandbox, key_pair: KeyPair
) -> None:
    client = make_client(credentials_for(salesforce, key_pair, private_key_pem="not a key"))

    with pytest.raises(AuthError, match="could not sign"):
        client.get("Contact", "0035g0000000001AAA")
