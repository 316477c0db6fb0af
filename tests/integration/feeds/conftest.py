"""Fixtures for the feed adapters: one sandbox of each kind per session (reset and seeded per test), with
clients built as the connector tests build them; only ``sleep`` is replaced (waits are recorded)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from concord.adapters.feeds import GoogleFeed, GraphFeed, SalesforceFeed
from concord.adapters.google import GoogleClient, GoogleEndpoints, ServiceAccount
from concord.adapters.salesforce import SalesforceClient
from local.sandboxes.google import GoogleSandbox
from local.sandboxes.graph import GraphSandbox
from local.sandboxes.salesforce import SalesforceSandbox
from local.sandboxes.server import ca_bundle_path
from tests.integration.connectors.graph.conftest import SleepRecorder
from tests.integration.connectors.graph.conftest import make_client as make_graph_client
from tests.integration.connectors.salesforce.conftest import (
    AUDIENCE,
    CONSUMER_KEY,
    USERNAME,
    KeyPair,
    credentials_for,
    new_key_pair,
)

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


# ---------------------------------------------------------------- Graph


@pytest.fixture(scope="session")
def _graph_server() -> Iterator[GraphSandbox]:
    sandbox = GraphSandbox(validation_timeout_s=1.0, notification_window_s=0.05)
    sandbox.start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def graph_sandbox(_graph_server: GraphSandbox) -> GraphSandbox:
    _graph_server.reset()
    _graph_server.seed()
    return _graph_server


@pytest.fixture
def graph_feed(graph_sandbox: GraphSandbox, sleeps: SleepRecorder) -> Iterator[GraphFeed]:
    client = make_graph_client(graph_sandbox, sleeps)
    yield GraphFeed(client)
    client.close()


# ---------------------------------------------------------------- Google


@pytest.fixture(scope="session")
def _google_server() -> Iterator[GoogleSandbox]:
    sandbox = GoogleSandbox()
    sandbox.start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def google_sandbox(_google_server: GoogleSandbox) -> GoogleSandbox:
    _google_server.reset()
    _google_server.seed()
    return _google_server


@pytest.fixture
def google_client(google_sandbox: GoogleSandbox, sleeps: SleepRecorder) -> Iterator[GoogleClient]:
    client = GoogleClient(
        ServiceAccount.from_info(google_sandbox.service_account_info()),
        endpoints=GoogleEndpoints.for_base(google_sandbox.url),
        verify=ca_bundle_path(),
        sleep=sleeps,
    )
    yield client
    client.close()


@pytest.fixture
def google_feed(google_client: GoogleClient) -> GoogleFeed:
    return GoogleFeed(google_client)


# ---------------------------------------------------------------- Salesforce


@pytest.fixture(scope="session")
def key_pair() -> KeyPair:
    return new_key_pair()


@pytest.fixture(scope="session")
def _salesforce_server(key_pair: KeyPair) -> Iterator[SalesforceSandbox]:
    sandbox = SalesforceSandbox(
        consumer_key=CONSUMER_KEY, username=USERNAME, public_key_pem=key_pair.public_pem, audience=AUDIENCE
    )
    sandbox.start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def salesforce(_salesforce_server: SalesforceSandbox) -> SalesforceSandbox:
    _salesforce_server.reset()
    _salesforce_server.seed()
    return _salesforce_server


@pytest.fixture
def salesforce_client(
    salesforce: SalesforceSandbox, key_pair: KeyPair, sleeps: SleepRecorder
) -> Iterator[SalesforceClient]:
    client = SalesforceClient(credentials_for(salesforce, key_pair), verify=ca_bundle_path(), sleep=sleeps)
    yield client
    client.close()


@pytest.fixture
def salesforce_feed(salesforce_client: SalesforceClient) -> SalesforceFeed:
    return SalesforceFeed(salesforce_client)
