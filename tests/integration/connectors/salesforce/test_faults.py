"""Every fault switch of the sandbox, and how the client meets it: Retry-After honoured, transient
errors retried within the time left, creates never retried when they may have been written."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

import httpx
import pytest

from concord.adapters.http import AuthError, PermanentError, TransientError
from concord.adapters.salesforce import classify
from local.sandboxes.server import ca_bundle_path
from tests.integration.connectors.salesforce.conftest import CONSUMER_KEY, KeyPair, raw_http, session_token

if TYPE_CHECKING:
    from collections.abc import Callable

    from concord.adapters.salesforce import SalesforceClient
    from local.sandboxes.salesforce import SalesforceSandbox
    from tests.integration.connectors.salesforce.conftest import SleepRecorder


def _faults(sandbox: SalesforceSandbox, path: str = "faults", **spec: object) -> None:
    with raw_http() as http:
        http.post(f"{sandbox.url}/_sandbox/{path}", json=spec).raise_for_status()


def _logged_in(client: SalesforceClient) -> SalesforceClient:
    list(client.query("SELECT Id FROM User"))
    return client


def test_throttling_honours_retry_after(
    client: SalesforceClient, salesforce: SalesforceSandbox, sleeps: SleepRecorder
) -> None:
    _logged_in(client)
    _faults(salesforce, throttle={"calls": 2, "retry_after": 3})

    rows = list(client.query("SELECT Id FROM Contact"))

    assert len(rows) == 5
    assert sleeps.waits == [3.0, 3.0]


def test_throttled_answer_has_salesforce_shape(client: SalesforceClient, salesforce: SalesforceSandbox) -> None:
    _logged_in(client)
    salesforce.faults.throttle(10, retry_after=1)

    with pytest.raises(TransientError) as caught:
        list(client.query("SELECT Id FROM Contact"))

    assert (caught.value.status, caught.value.code, caught.value.retry_after) == (403, "REQUEST_LIMIT_EXCEEDED", 1.0)
    assert client.calls == 2 + 4  # login + query, then the policy's four attempts


def test_throttle_wait_longer_than_the_time_left_is_handed_back(
    make_client: Callable[..., SalesforceClient], salesforce: SalesforceSandbox, sleeps: SleepRecorder
) -> None:
    client = _logged_in(make_client(time_left=lambda: 5.0))
    salesforce.faults.throttle(1, retry_after=30)

    with pytest.raises(TransientError):
        list(client.query("SELECT Id FROM Contact"))

    assert sleeps.waits == []


@pytest.mark.parametrize(("status", "code"), [(503, "SERVER_UNAVAILABLE"), (500, "UNKNOWN_EXCEPTION")])
def test_server_errors_are_retried_for_reads(
    client: SalesforceClient, salesforce: SalesforceSandbox, sleeps: SleepRecorder, status: int, code: str
) -> None:
    _logged_in(client)
    _faults(salesforce, fail={"calls": 2, "status": status})

    assert len(list(client.query("SELECT Id FROM Contact"))) == 5
    assert len(sleeps.waits) == 2


def test_server_error_body_is_salesforce_shaped(client: SalesforceClient, salesforce: SalesforceSandbox) -> None:
    _logged_in(client)
    salesforce.faults.fail(10, status=503)

    with pytest.raises(TransientError) as caught:
        client.get("User", salesforce.user_id)

    assert (caught.value.status, caught.value.code) == (503, "SERVER_UNAVAILABLE")


def test_a_create_that_may_have_been_written_is_not_retried(
    client: SalesforceClient, salesforce: SalesforceSandbox, sleeps: SleepRecorder
) -> None:
    _logged_in(client)
    salesforce.faults.fail(1, status=500)

    with pytest.raises(TransientError):
        client.create("Contact", [{"LastName": "Maybe"}])

    assert sleeps.waits == []
    assert client.calls == 3


def test_a_throttled_create_is_retried(
    client: SalesforceClient, salesforce: SalesforceSandbox, sleeps: SleepRecorder
) -> None:
    _logged_in(client)
    salesforce.faults.throttle(1, retry_after=2)

    (result,) = client.create("Contact", [{"LastName": "Later"}])

    assert result.success
    assert sleeps.waits == [2.0]
    assert len(salesforce.live_records("Contact")) == 6


def test_latency_past_the_read_timeout_is_transient(
    make_client: Callable[..., SalesforceClient], salesforce: SalesforceSandbox
) -> None:
    http = httpx.Client(
        verify=ssl.create_default_context(cafile=ca_bundle_path()), timeout=httpx.Timeout(0.2, connect=2.0)
    )
    client = _logged_in(make_client(client=http, time_left=lambda: 0.1))
    _faults(salesforce, latency_s=0.4)

    with pytest.raises(TransientError, match="timed out"):
        client.get("User", salesforce.user_id)
    salesforce.faults.latency(0.0)


def test_daily_limit_is_refused_and_not_waited_for(
    make_client: Callable[..., SalesforceClient], salesforce: SalesforceSandbox, sleeps: SleepRecorder
) -> None:
    client = make_client(time_left=lambda: 60.0)
    _faults(salesforce, "limits", daily_limit=3, used=0)
    list(client.query("SELECT Id FROM Contact"))
    list(client.query("SELECT Id FROM Contact"))
    list(client.query("SELECT Id FROM Contact"))

    with pytest.raises(TransientError) as caught:
        list(client.query("SELECT Id FROM Contact"))

    assert (caught.value.status, caught.value.code) == (403, "REQUEST_LIMIT_EXCEEDED")
    assert caught.value.retry_after == 3600.0
    assert sleeps.waits == []
    assert "TotalRequests Limit exceeded" in str(caught.value)


def test_lock_fault_on_a_single_record_write_is_transient(salesforce: SalesforceSandbox, key_pair: KeyPair) -> None:
    token = session_token(salesforce, key_pair)
    _faults(salesforce, "lock_rows", writes=1)

    with raw_http() as http:
        response = http.post(
            f"{salesforce.url}/services/data/v60.0/sobjects/Contact/",
            json={"LastName": "Locked"},
            headers={"Authorization": f"Bearer {token}"},
        )
    error = classify(response)

    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "UNABLE_TO_LOCK_ROW"
    assert isinstance(error, TransientError)


def test_lock_fault_inside_composite_is_a_transient_record_result(
    client: SalesforceClient, salesforce: SalesforceSandbox, sleeps: SleepRecorder
) -> None:
    salesforce.fail_next_writes_with_lock(1)

    result = client.create_event(
        {"Subject": "Retry me", "StartDateTime": "2026-12-11T09:00:00Z", "EndDateTime": "2026-12-11T09:30:00Z"}, []
    )

    assert result.event.errors[0].code == "UNABLE_TO_LOCK_ROW"
    assert result.event.transient
    assert sleeps.waits == []


def test_expired_tokens_switch(client: SalesforceClient, salesforce: SalesforceSandbox) -> None:
    _logged_in(client)
    salesforce.tokens.expire_all()

    assert client.get("User", salesforce.user_id)["Id"] == salesforce.user_id


def test_bad_field_in_a_single_read_is_permanent(client: SalesforceClient, salesforce: SalesforceSandbox) -> None:
    with pytest.raises(PermanentError) as caught:
        client.get("Contact", salesforce.live_records("Contact")[0]["Id"], fields=["Nope"])

    assert caught.value.code == "INVALID_FIELD"


def test_login_refused_after_the_key_is_rotated(client: SalesforceClient, salesforce: SalesforceSandbox) -> None:
    _logged_in(client)
    salesforce.tokens.expire_all()
    salesforce.consumer_key = "rotated-consumer-key"
    try:
        with pytest.raises(AuthError) as caught:
            client.get("User", salesforce.user_id)
    finally:
        salesforce.consumer_key = CONSUMER_KEY  # the server is shared by the session

    assert caught.value.code == "invalid_client_id"
