"""Fixtures: a fresh Salesforce sandbox per test (seeded, change events collected in a list), the key
pair its connected app trusts, and clients whose ``sleep`` records waits instead of sleeping."""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from concord.adapters.salesforce import SalesforceClient, SalesforceCredentials
from local.sandboxes.salesforce import SalesforceSandbox
from local.sandboxes.server import ca_bundle_path

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

CONSUMER_KEY = "3MVG9sandboxConsumerKey.concord"
USERNAME = "integration@concord.example"
AUDIENCE = "https://login.salesforce.com"

ACK = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
    b'<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound"><Ack>true</Ack>'
    b"</notificationsResponse></soapenv:Body></soapenv:Envelope>"
)


@dataclass(frozen=True)
class KeyPair:
    private_pem: str
    public_pem: str


def new_key_pair() -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return KeyPair(private.decode(), public.decode())


@pytest.fixture(scope="session")
def key_pair() -> KeyPair:
    return new_key_pair()


@pytest.fixture
def cdc_events() -> list[dict[str, Any]]:
    return []


@pytest.fixture(scope="session")
def _salesforce_server(key_pair: KeyPair) -> Iterator[SalesforceSandbox]:
    sandbox = SalesforceSandbox(
        consumer_key=CONSUMER_KEY, username=USERNAME, public_key_pem=key_pair.public_pem, audience=AUDIENCE
    )
    sandbox.start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def salesforce(_salesforce_server: SalesforceSandbox, cdc_events: list[dict[str, Any]]) -> SalesforceSandbox:
    """The sandbox org, reset and seeded for this test; its change events land in ``cdc_events``."""
    sandbox = _salesforce_server
    sandbox.reset()
    sandbox.outbound.clear()
    sandbox.seed()
    sandbox.cdc_sink = cdc_events.append
    return sandbox


class SleepRecorder:
    """Stands in for ``time.sleep``: records the waits instead of sleeping, keeping the tests fast."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


def credentials_for(sandbox: SalesforceSandbox, key_pair: KeyPair, **changes: str) -> SalesforceCredentials:
    fields = {
        "consumer_key": CONSUMER_KEY,
        "username": USERNAME,
        "private_key_pem": key_pair.private_pem,
        "login_url": sandbox.url,
        "audience": AUDIENCE,
        **changes,
    }
    return SalesforceCredentials(**fields)


@pytest.fixture
def make_client(
    salesforce: SalesforceSandbox, key_pair: KeyPair, sleeps: SleepRecorder
) -> Iterator[Callable[..., SalesforceClient]]:
    """Builds clients against the sandbox; keyword arguments go to ``SalesforceClient``."""
    made: list[SalesforceClient] = []

    def make(credentials: SalesforceCredentials | None = None, **options: Any) -> SalesforceClient:
        options.setdefault("verify", ca_bundle_path())
        options.setdefault("sleep", sleeps)
        client = SalesforceClient(credentials or credentials_for(salesforce, key_pair), **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., SalesforceClient]) -> SalesforceClient:
    return make_client()


def raw_http() -> httpx.Client:
    """A plain httpx client trusting the sandbox CA, for raw calls and the admin endpoint."""
    return httpx.Client(verify=ssl.create_default_context(cafile=ca_bundle_path()))


def session_token(sandbox: SalesforceSandbox, key_pair: KeyPair) -> str:
    """A fresh access token from the sandbox's token endpoint, for raw and third-party calls."""
    assertion = jwt.encode(
        {"iss": CONSUMER_KEY, "sub": USERNAME, "aud": AUDIENCE, "exp": int(time.time()) + 120},
        key_pair.private_pem,
        algorithm="RS256",
    )
    with raw_http() as http:
        response = http.post(
            f"{sandbox.url}/services/oauth2/token",
            data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion},
        )
    response.raise_for_status()
    return str(response.json()["access_token"])
