"""The sandbox's token endpoint and bearer checks, and how GoogleClient reacts to refused credentials."""

from __future__ import annotations

import ssl
import time
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from concord.adapters.google import SCOPE_CALENDAR, SCOPE_CONTACTS, GoogleClient, ServiceAccount
from concord.adapters.http import AuthError
from local.sandboxes.google import JWT_GRANT, GoogleSandbox
from local.sandboxes.server import ca_bundle_path

from .conftest import USER

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(verify=ssl.create_default_context(cafile=ca_bundle_path())) as client:
        yield client


def _assertion(sandbox: GoogleSandbox, **overrides: object) -> str:
    now = int(time.time())
    claims = {
        "iss": sandbox.service_account_email,
        "sub": USER,
        "scope": SCOPE_CALENDAR,
        "aud": sandbox.token_url,
        "iat": now,
        "exp": now + 3600,
        **overrides,
    }
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, sandbox.service_account_private_key, algorithm="RS256")


def _grant(http: httpx.Client, sandbox: GoogleSandbox, assertion: str) -> httpx.Response:
    return http.post(sandbox.token_url, data={"grant_type": JWT_GRANT, "assertion": assertion})


def test_token_endpoint_answers_googles_shape(google_sandbox: GoogleSandbox, http: httpx.Client) -> None:
    answer = _grant(http, google_sandbox, _assertion(google_sandbox))
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"access_token", "expires_in", "token_type"}
    assert body["token_type"] == "Bearer" and 0 < body["expires_in"] <= 3600


def test_the_real_audience_is_accepted_too(google_sandbox: GoogleSandbox, http: httpx.Client) -> None:
    answer = _grant(http, google_sandbox, _assertion(google_sandbox, aud="https://oauth2.googleapis.com/token"))
    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("overrides", "error", "description"),
    [
        ({"exp": int(time.time()) + 7200}, "invalid_grant", "short-lived"),
        ({"aud": "https://elsewhere.example/token"}, "invalid_grant", "audience"),
        ({"iss": "someone@else.iam.gserviceaccount.com"}, "invalid_grant", "account not found"),
        ({"sub": "not-an-email"}, "invalid_grant", "Invalid email or User ID"),
        ({"scope": None}, "invalid_scope", "scope"),
        ({"scope": "https://www.googleapis.com/auth/drive"}, "unauthorized_client", "not authorized"),
    ],
)
def test_token_endpoint_refuses_bad_assertions(
    google_sandbox: GoogleSandbox, http: httpx.Client, overrides: dict[str, Any], error: str, description: str
) -> None:
    answer = _grant(http, google_sandbox, _assertion(google_sandbox, **overrides))
    assert answer.status_code == 400
    assert answer.json()["error"] == error
    assert description in answer.json()["error_description"]


def test_wrong_grant_type(google_sandbox: GoogleSandbox, http: httpx.Client) -> None:
    answer = http.post(google_sandbox.token_url, data={"grant_type": "client_credentials"})
    assert answer.status_code == 400 and answer.json()["error"] == "unsupported_grant_type"


def test_client_with_the_wrong_key_gets_auth_error(
    google_sandbox: GoogleSandbox, make_client: Callable[..., GoogleClient]
) -> None:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    account = ServiceAccount(
        client_email=google_sandbox.service_account_email,
        private_key=other_key.decode(),
        token_uri=google_sandbox.token_url,
    )
    client: GoogleClient = make_client(account=account)

    with pytest.raises(AuthError) as caught:
        client.list_events(USER)
    assert caught.value.code == "invalid_grant"
    assert "Invalid JWT Signature" in str(caught.value)


def test_api_calls_need_a_valid_bearer_token(google_sandbox: GoogleSandbox, http: httpx.Client) -> None:
    answer = http.get(f"{google_sandbox.url}/calendar/v3/calendars/primary/events")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    error = answer.json()["error"]
    assert error["code"] == 401 and error["status"] == "UNAUTHENTICATED"
    assert error["errors"][0]["reason"] == "authError"


def test_tokens_are_limited_to_their_scope_and_user(google_sandbox: GoogleSandbox, http: httpx.Client) -> None:
    token = _grant(http, google_sandbox, _assertion(google_sandbox, scope=SCOPE_CONTACTS)).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}

    calendar = http.get(f"{google_sandbox.url}/calendar/v3/calendars/primary/events", headers=headers)
    assert calendar.status_code == 403
    assert calendar.json()["error"]["errors"][0]["reason"] == "insufficientPermissions"

    gmail_token = _grant(
        http, google_sandbox, _assertion(google_sandbox, scope="https://www.googleapis.com/auth/gmail.readonly")
    ).json()["access_token"]
    other = http.get(
        f"{google_sandbox.url}/gmail/v1/users/other@fabrikam.example/profile",
        headers={"Authorization": f"Bearer {gmail_token}"},
    )
    assert other.status_code == 403


def test_jwks_serves_the_push_signing_key(google_sandbox: GoogleSandbox, http: httpx.Client) -> None:
    keys = http.get(f"{google_sandbox.url}/oauth2/v3/certs").json()["keys"]
    assert [k["kid"] for k in keys] == [google_sandbox.push_key_id]
    assert keys[0]["kty"] == "RSA" and keys[0]["alg"] == "RS256"


def test_a_key_that_cannot_sign_is_an_auth_error_without_key_material(
    google_sandbox: GoogleSandbox, make_client: Callable[..., GoogleClient]
) -> None:
    secret_body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7notakey"
    broken = ServiceAccount(
        client_email=google_sandbox.service_account_email,
        private_key=f"-----BEGIN PRIVATE KEY-----\n{secret_body}\n-----END PRIVATE KEY-----\n",
        token_uri=google_sandbox.token_url,
    )
    client = make_client(account=broken)

    with pytest.raises(AuthError) as caught:
        client.list_events(USER)

    assert "could not sign" in str(caught.value)
    assert secret_body not in str(caught.value) and "PRIVATE KEY" not in str(caught.value)
