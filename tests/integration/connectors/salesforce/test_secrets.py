"""Canary secrets: distinctive values planted in the credentials and the access token never reach an
exception's text, its traceback, a repr or a log line, whatever goes wrong."""

from __future__ import annotations

import logging
import traceback
from typing import TYPE_CHECKING

import pytest

from concord.adapters.http import ConnectorError
from tests.integration.connectors.salesforce.conftest import CONSUMER_KEY, KeyPair, credentials_for, new_key_pair

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from concord.adapters.salesforce import SalesforceClient, SalesforceCredentials
    from local.sandboxes.salesforce import SalesforceSandbox

CANARY_CONSUMER_KEY = "3MVG9CANARYconsumerKEYzq81x"
CANARY_TOKEN_PREFIX = "00DCANARYTOKENq7!"


@pytest.fixture
def canary_org(salesforce: SalesforceSandbox) -> Iterator[SalesforceSandbox]:
    salesforce.consumer_key = CANARY_CONSUMER_KEY
    salesforce.token_prefix = CANARY_TOKEN_PREFIX  # every access token now starts with the canary
    yield salesforce
    salesforce.consumer_key = CONSUMER_KEY  # the server is shared by the session (reset restores the prefix)


@pytest.fixture
def canary_credentials(canary_org: SalesforceSandbox, key_pair: KeyPair) -> SalesforceCredentials:
    return credentials_for(canary_org, key_pair, consumer_key=CANARY_CONSUMER_KEY)


def _secrets(key_pair: KeyPair) -> list[str]:
    key_lines = [line for line in key_pair.private_pem.splitlines() if len(line) > 20 and "-----" not in line]
    return [CANARY_CONSUMER_KEY, CANARY_TOKEN_PREFIX, "CANARYTOKEN", *key_lines]


def _assert_clean(exc: BaseException, caplog: pytest.LogCaptureFixture, key_pair: KeyPair) -> None:
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc)), caplog.text]
    for secret in _secrets(key_pair):
        for text in texts:
            assert secret not in text


def _provocations(client: SalesforceClient, sandbox: SalesforceSandbox) -> list[tuple[str, Callable[[], object]]]:
    def refused_twice() -> object:
        sandbox.tokens.expire_all()
        sandbox.tokens.lifetime_s = -1
        try:
            return client.get("User", sandbox.user_id)
        finally:
            sandbox.tokens.lifetime_s = 3600

    def server_down() -> object:
        sandbox.faults.fail(10, status=503)
        try:
            return list(client.query("SELECT Id FROM Contact"))
        finally:
            sandbox.faults.fail(0)

    def echoed_token() -> object:
        # Salesforce quotes an unknown field name back; make that name the access token itself. (In the
        # request body: httpx logs URLs, and a secret never goes into a URL.)
        token = client._current_session().access_token  # white-box: make the service echo the secret
        return client.retrieve("Contact", ["0035g0000000zzzAAA"] * 201, [token])

    return [
        ("bad field", lambda: list(client.query("SELECT Nope FROM Contact"))),
        ("not found", lambda: client.get("Contact", "0035g0000000zzzAAA")),
        ("server down", server_down),
        ("refused twice", refused_twice),
        ("echoed token", echoed_token),
    ]


def test_api_errors_never_show_secrets(
    make_client: Callable[..., SalesforceClient],
    canary_org: SalesforceSandbox,
    canary_credentials: SalesforceCredentials,
    key_pair: KeyPair,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(canary_credentials)
    list(client.query("SELECT Id FROM User"))

    for name, provoke in _provocations(client, canary_org):
        with pytest.raises(ConnectorError) as caught:
            provoke()
        assert caught.value.system == "salesforce", name
        _assert_clean(caught.value, caplog, key_pair)
        if name == "echoed token":
            assert "No such column '***'" in str(caught.value)  # the echo happened, and was scrubbed


def test_login_errors_never_show_secrets(
    make_client: Callable[..., SalesforceClient],
    canary_org: SalesforceSandbox,
    key_pair: KeyPair,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong_key = new_key_pair()
    cases = [
        credentials_for(canary_org, wrong_key, consumer_key=CANARY_CONSUMER_KEY),  # signature refused
        credentials_for(canary_org, key_pair, consumer_key=CANARY_CONSUMER_KEY, username="who@concord.example"),
        credentials_for(canary_org, key_pair, consumer_key=CANARY_CONSUMER_KEY, private_key_pem="garbage"),
        credentials_for(canary_org, key_pair, consumer_key=CANARY_CONSUMER_KEY, login_url="https://127.0.0.1:9"),
    ]
    for credentials in cases:
        client = make_client(credentials)
        with pytest.raises(ConnectorError) as caught:
            list(client.query("SELECT Id FROM Contact"))
        _assert_clean(caught.value, caplog, wrong_key)
        _assert_clean(caught.value, caplog, key_pair)


def test_credentials_repr_hides_the_key(canary_credentials: SalesforceCredentials, key_pair: KeyPair) -> None:
    text = repr(canary_credentials)

    assert CANARY_CONSUMER_KEY not in text
    assert "PRIVATE KEY" not in text
    assert all(secret not in text for secret in _secrets(key_pair))
