"""Fixtures for the Google connector tests: one sandbox per session, reset before every test.

Every test talks real HTTPS to the sandbox; the only thing replaced is ``sleep``, so backoff waits are
recorded instead of slept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from concord.adapters.google import GoogleClient, GoogleEndpoints, ServiceAccount
from local.sandboxes.google import GoogleSandbox
from local.sandboxes.server import ca_bundle_path

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

USER = "sam@fabrikam.example"


@pytest.fixture(scope="session")
def _google_server() -> Iterator[GoogleSandbox]:
    sandbox = GoogleSandbox()
    sandbox.start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def google_sandbox(_google_server: GoogleSandbox) -> GoogleSandbox:
    """The sandbox, emptied (records, tokens, faults, channels, subscriptions) for this test."""
    _google_server.reset()
    return _google_server


@pytest.fixture
def seeded(google_sandbox: GoogleSandbox) -> GoogleSandbox:
    google_sandbox.seed()
    return google_sandbox


class Sleeps(list[float]):
    """A fake ``sleep`` that records the waits."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make_client(google_sandbox: GoogleSandbox, sleeps: Sleeps) -> Iterator[Callable[..., GoogleClient]]:
    made: list[GoogleClient] = []

    def make(**overrides: Any) -> GoogleClient:
        account = overrides.pop("account", None) or ServiceAccount.from_info(google_sandbox.service_account_info())
        options: dict[str, Any] = {
            "endpoints": GoogleEndpoints.for_base(google_sandbox.url),
            "verify": ca_bundle_path(),
            "sleep": sleeps,
            **overrides,
        }
        client = GoogleClient(account, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., GoogleClient]) -> GoogleClient:
    return make_client()


def event_body(summary: str = "Planning", *, day: int = 10, attendees: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "summary": summary,
        "start": {"dateTime": f"2026-12-{day:02d}T10:00:00Z"},
        "end": {"dateTime": f"2026-12-{day:02d}T11:00:00Z"},
        "attendees": [{"email": a} for a in attendees],
    }
