"""Canary secrets: client secret, access tokens and clientState never reach messages, reprs or logs."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest

from concord.adapters.graph import GraphCredentials
from concord.adapters.http import ConnectorError
from local.sandboxes import seed
from tests.integration.connectors.graph.conftest import make_client
from tests.support.receiver import Receiver

if TYPE_CHECKING:
    from local.sandboxes.graph import GraphSandbox
    from tests.integration.connectors.graph.conftest import SleepRecorder

CANARY_SECRET = "CANARY-secret-7f3a9c1e-do-not-leak"
CANARY_STATE = "CANARY-state-5b2d8e4f-do-not-leak"


def _assert_clean(exc: BaseException, caplog: pytest.LogCaptureFixture, *canaries: str) -> None:
    for canary in canaries:
        assert canary not in str(exc)
        assert canary not in repr(exc)
        assert canary not in caplog.text


def test_canaries_never_leak(
    graph_sandbox: GraphSandbox, sleeps: SleepRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    graph_sandbox.add_app("canary-tenant", "canary-app", CANARY_SECRET)
    graph_sandbox.add_user("canary-tenant", "canary@example.com")

    wrong = make_client(
        graph_sandbox, sleeps, credentials=GraphCredentials("canary-tenant", "canary-app", CANARY_SECRET + "x")
    )
    with pytest.raises(ConnectorError) as refused:
        wrong.ensure_contact_folder("canary@example.com")
    _assert_clean(refused.value, caplog, CANARY_SECRET)
    assert CANARY_SECRET not in repr(wrong) and CANARY_SECRET not in repr(wrong._credentials)

    client = make_client(
        graph_sandbox, sleeps, credentials=GraphCredentials("canary-tenant", "canary-app", CANARY_SECRET)
    )
    client.ensure_contact_folder("canary@example.com")
    token = client._token()
    with pytest.raises(ConnectorError) as missing:
        client.get_contact("canary@example.com", "AAMkAGI2nope")
    graph_sandbox.tokens.lifetime_s = -1
    graph_sandbox.tokens.expire_all()
    with pytest.raises(ConnectorError) as expired:
        client.get_contact("canary@example.com", "whatever")
    graph_sandbox.tokens.lifetime_s = 3600
    with Receiver() as deaf, pytest.raises(ConnectorError) as refused_sub:
        client.create_subscription("users/canary@example.com/events", deaf.url, CANARY_STATE)
    for exc in (missing.value, expired.value, refused_sub.value):
        _assert_clean(exc, caplog, CANARY_SECRET, CANARY_STATE, token)


def test_redactor_scrubs_a_server_echo(graph_sandbox: GraphSandbox, sleeps: SleepRecorder) -> None:
    client = make_client(graph_sandbox, sleeps)
    client.redact.add(CANARY_STATE)
    with pytest.raises(ConnectorError) as refused:
        client.create_subscription(f"users/{seed.M365_USER}/{CANARY_STATE}", "http://127.0.0.1:9/x", CANARY_STATE)
    assert "not supported" in str(refused.value)  # the server echoed the resource; the state is scrubbed
    assert CANARY_STATE not in str(refused.value)
