"""Canary secrets: whatever a (badly behaved) server echoes back, no credential reaches a message or a log.

The sandbox here is made worse than Google on purpose: every error it answers repeats the request's
``Authorization`` header, query string and body. Access tokens carry a canary prefix, the channel token
is a canary, and the private key's PEM is checked too. (Sync tokens and page tokens are cursors, not
credentials: httpx's own request log shows them in URLs, as it does any query string.)
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

import pytest

from concord.adapters.google import GoogleClient, GoogleEndpoints, ServiceAccount
from concord.adapters.http import ConnectorError
from local.sandboxes.google import GoogleSandbox
from local.sandboxes.server import Request, Response, TokenIssuer, ca_bundle_path

from .conftest import USER, Sleeps, event_body

if TYPE_CHECKING:
    from collections.abc import Iterator

ACCESS_CANARY = "CANARYACCESS"
CHANNEL_CANARY = "CANARYCHANNEL-" + secrets.token_hex(8)


class _CanaryTokens(TokenIssuer):
    def issue(self, **claims: Any) -> tuple[str, int]:
        token = ACCESS_CANARY + secrets.token_urlsafe(16)
        with self._lock:
            self._tokens[token] = (time.time() + self.lifetime_s, claims)
        return token, int(self.lifetime_s)


class _EchoingSandbox(GoogleSandbox):
    def dispatch(self, request: Request) -> Response:
        response = super().dispatch(request)
        if response.status >= 400 and isinstance(response.body, dict):
            echo = (
                f" [authorization={request.headers.get('authorization')} query={request.query} "
                f"body={request.body.decode(errors='replace')}]"
            )
            error = response.body.get("error")
            if isinstance(error, dict):
                error["message"] = str(error.get("message", "")) + echo
            else:
                response.body["error_description"] = str(response.body.get("error_description", "")) + echo
        return response


@pytest.fixture
def echoing() -> Iterator[_EchoingSandbox]:
    sandbox = _EchoingSandbox()
    sandbox.tokens = _CanaryTokens()
    sandbox.start()
    yield sandbox
    sandbox.stop()


def _client(sandbox: GoogleSandbox, **overrides: Any) -> GoogleClient:
    account = overrides.pop("account", None) or ServiceAccount.from_info(sandbox.service_account_info())
    return GoogleClient(
        account, endpoints=GoogleEndpoints.for_base(sandbox.url), verify=ca_bundle_path(), sleep=Sleeps(), **overrides
    )


def _provoke(sandbox: _EchoingSandbox, client: GoogleClient) -> list[ConnectorError]:
    errors: list[ConnectorError] = []

    def expect(call: Any) -> None:
        with pytest.raises(ConnectorError) as caught:
            call()
        errors.append(caught.value)

    client.list_events(USER)  # a token is now cached
    created = client.insert_event(USER, event_body())
    client.patch_event(USER, created["id"], {"summary": "moved"})
    expect(lambda: client.patch_event(USER, created["id"], {"summary": "x"}, etag=created["etag"]))  # 412
    client.watch_events(USER, channel_id="dup", address="http://127.0.0.1:9/", token=CHANNEL_CANARY)
    expect(lambda: client.watch_events(USER, channel_id="dup", address="http://127.0.0.1:9/", token=CHANNEL_CANARY))
    sandbox.faults.fail(2, status=401)  # refused, refreshed, refused again
    expect(lambda: client.get_contact(USER, "people/c1"))
    sandbox.faults.throttle(5, retry_after=0)
    expect(lambda: client.mailbox_history_id(USER))
    sandbox.faults.clear()
    expect(lambda: client.get_message(USER, "0123456789abcdef"))
    sandbox.expire_sync_tokens()
    expect(lambda: client.list_contacts(USER, sync_token="stale-cursor"))
    return errors


def _assert_clean(texts: list[str], forbidden: list[str]) -> None:
    for text in texts:
        for secret in forbidden:
            assert secret not in text, f"leaked {secret[:16]}… in {text[:200]}"


def test_no_secret_in_errors_or_logs(echoing: _EchoingSandbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = _client(echoing)
    private_key_lines = [line for line in echoing.service_account_private_key.splitlines() if "-----" not in line]

    try:
        errors = _provoke(echoing, client)
    finally:
        client.close()

    assert len(errors) == 6
    issued = [t for t in echoing.tokens._tokens if t.startswith(ACCESS_CANARY)]
    assert len(issued) >= 2
    texts = [str(e) for e in errors] + [repr(e) for e in errors] + [caplog.text]
    _assert_clean(texts, [ACCESS_CANARY, CHANNEL_CANARY, *issued, *private_key_lines])
    assert any("***" in str(e) for e in errors)  # the echo was there, and was scrubbed


def test_refused_assertion_is_not_echoed(echoing: _EchoingSandbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    wrong = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    account = ServiceAccount(echoing.service_account_email, wrong, token_uri=echoing.token_url)
    client = _client(echoing, account=account)

    with pytest.raises(ConnectorError) as caught:
        client.list_events(USER)
    client.close()

    assert "eyJ" not in str(caught.value)  # no part of the signed assertion (a JWT starts with eyJ)
    texts = [str(caught.value), repr(caught.value), caplog.text, repr(account)]
    _assert_clean(texts, [line for line in wrong.splitlines() if "-----" not in line])
