"""Fixtures: one Graph sandbox per session (reset and re-seeded per test), clients with a recording sleep,
and webhook receivers that answer the validation handshake."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from concord.adapters.graph import GraphClient, GraphCredentials
from local.sandboxes.graph import SEED_CLIENT_ID, SEED_CLIENT_SECRET, SEED_TENANT, GraphSandbox
from local.sandboxes.server import ca_bundle_path
from tests.support.receiver import Received, Receiver

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


@pytest.fixture(scope="session")
def _graph_server() -> Iterator[GraphSandbox]:
    sandbox = GraphSandbox(validation_timeout_s=1.0, notification_window_s=0.05)
    sandbox.start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def graph_sandbox(_graph_server: GraphSandbox) -> GraphSandbox:
    """The sandbox with fresh seed data and no faults."""
    _graph_server.reset()
    _graph_server.seed()
    return _graph_server


class SleepRecorder:
    """Stands in for ``time.sleep``: records the waits instead of sleeping, keeping the tests fast."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


def make_client(
    sandbox: GraphSandbox,
    sleep: SleepRecorder,
    *,
    credentials: GraphCredentials | None = None,
    page_size: int | None = None,
    time_left: Callable[[], float] | None = None,
) -> GraphClient:
    return GraphClient(
        credentials or GraphCredentials(SEED_TENANT, SEED_CLIENT_ID, SEED_CLIENT_SECRET),
        graph_url=sandbox.graph_url,
        login_url=sandbox.url,
        verify=ca_bundle_path(),
        sleep=sleep,
        page_size=page_size,
        time_left=time_left,
    )


@pytest.fixture
def graph(graph_sandbox: GraphSandbox, sleeps: SleepRecorder) -> Iterator[GraphClient]:
    client = make_client(graph_sandbox, sleeps)
    yield client
    client.close()


def echo_validation(received: Received) -> tuple[int, dict[str, str], bytes]:
    """Answers Graph's validation request as a webhook must (the decoded token, text/plain, 200), else 202."""
    if "validationToken" in received.query:
        return 200, {"Content-Type": "text/plain"}, received.query["validationToken"][0].encode()
    return 202, {}, b""


@pytest.fixture
def webhook() -> Iterator[Receiver]:
    with Receiver(answer=echo_validation) as receiver:
        yield receiver
