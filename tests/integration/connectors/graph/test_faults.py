"""Fault switches and the shared retry policy: 429/503 with Retry-After, latency and timeouts."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import httpx
import pytest

from concord.adapters.graph import GraphClient, GraphCredentials
from concord.adapters.http import TransientError
from local.sandboxes import seed
from local.sandboxes.graph import SEED_CLIENT_ID, SEED_CLIENT_SECRET, SEED_TENANT
from local.sandboxes.server import ca_bundle_path
from tests.integration.connectors.graph.conftest import make_client

if TYPE_CHECKING:
    from local.sandboxes.graph import GraphSandbox
    from tests.integration.connectors.graph.conftest import SleepRecorder

USER = seed.M365_USER


def test_429_honours_retry_after(graph: GraphClient, graph_sandbox: GraphSandbox, sleeps: SleepRecorder) -> None:
    graph.ensure_contact_folder(USER)
    graph_sandbox.faults.throttle(2, retry_after=3)
    assert graph.ensure_contact_folder(USER)
    assert sleeps.waits == [3.0, 3.0]


def test_429_body_and_header(graph_sandbox: GraphSandbox) -> None:
    graph_sandbox.faults.throttle(1, retry_after=5)
    answer = httpx.get(f"{graph_sandbox.graph_url}/subscriptions", verify=ca_bundle_path())
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "5"
    assert answer.json()["error"]["code"] == "ApplicationThrottled"


def test_wait_longer_than_time_left_is_handed_back(graph_sandbox: GraphSandbox, sleeps: SleepRecorder) -> None:
    client = make_client(graph_sandbox, sleeps, time_left=lambda: 2.0)
    graph_sandbox.faults.throttle(1, retry_after=30)
    with pytest.raises(TransientError) as throttled:
        client.ensure_contact_folder(USER)
    assert throttled.value.retry_after == 30.0 and throttled.value.status == 429
    assert sleeps.waits == []


def test_503_is_retried_then_given_up(graph: GraphClient, graph_sandbox: GraphSandbox, sleeps: SleepRecorder) -> None:
    graph.ensure_contact_folder(USER)
    graph_sandbox.faults.fail(1, 503)
    assert graph.ensure_contact_folder(USER)
    assert len(sleeps.waits) == 1
    graph_sandbox.faults.fail(10, 503)
    with pytest.raises(TransientError) as failed:
        graph.ensure_contact_folder(USER)
    assert failed.value.status == 503


def test_admin_endpoint_sets_throttle_and_fail(
    graph: GraphClient, graph_sandbox: GraphSandbox, sleeps: SleepRecorder
) -> None:
    graph.ensure_contact_folder(USER)
    answer = httpx.post(
        f"{graph_sandbox.url}/_sandbox/faults",
        json={"throttle": {"calls": 1, "retry_after": 4}, "fail": {"calls": 1, "status": 503}},
        verify=ca_bundle_path(),
    )
    assert answer.status_code == 200
    assert graph.ensure_contact_folder(USER)
    assert sleeps.waits[0] == 4.0 and len(sleeps.waits) == 2


def test_latency_and_client_timeout(graph_sandbox: GraphSandbox, sleeps: SleepRecorder) -> None:
    client = make_client(graph_sandbox, sleeps)
    client.ensure_contact_folder(USER)
    graph_sandbox.faults.latency(0.3)
    began = time.monotonic()
    client.ensure_contact_folder(USER)
    assert time.monotonic() - began >= 0.3
    impatient = GraphClient(
        GraphCredentials(SEED_TENANT, SEED_CLIENT_ID, SEED_CLIENT_SECRET),
        graph_url=graph_sandbox.graph_url,
        login_url=graph_sandbox.url,
        client=httpx.Client(timeout=0.1, verify=ca_bundle_path()),
        sleep=sleeps,
        time_left=lambda: 0.5,
    )
    with pytest.raises(TransientError, match="timed out"):
        impatient.ensure_contact_folder(USER)
    graph_sandbox.faults.latency(0.0)
