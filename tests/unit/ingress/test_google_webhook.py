from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import pytest

from concord.adapters.subscriptions import channel_key
from concord.ingress.apps.google_webhook import GoogleWebhook
from tests.support.events import load_event
from tests.unit.ingress.helpers import (
    CALENDAR_CHANNEL,
    CALENDAR_TOKEN,
    CONTEXT,
    FakeChannels,
    FakeQueue,
    SigningKey,
    assert_no_canary,
    channel_item,
    fake_deps,
    gmail_body,
    settings,
)

if TYPE_CHECKING:
    import io
    from pathlib import Path

    from concord.ingress.apps.common import Deps

KEY = SigningKey()


@pytest.fixture
def deps() -> Deps:
    return fake_deps()


@pytest.fixture
def webhook(deps: Deps) -> GoogleWebhook:
    return GoogleWebhook(settings(), deps, keys=KEY)


def _queue(deps: Deps) -> FakeQueue:
    assert isinstance(deps.queue, FakeQueue)
    return deps.queue


def _gmail(token: str | None = None, body: str | None = None) -> dict[str, Any]:
    event = load_event("google_webhook/gmail_push")
    event["headers"]["Authorization"] = f"Bearer {token or KEY.token()}"
    event["multiValueHeaders"]["Authorization"] = [event["headers"]["Authorization"]]
    if body is not None:
        event["body"] = body
    return event


def _calendar(**headers: str) -> dict[str, Any]:
    event = load_event("google_webhook/calendar_notification")
    for name, value in headers.items():
        event["headers"][name] = value
        event["multiValueHeaders"][name] = [value]
    return event


def test_valid_gmail_push_enqueues_a_mailbox_catch_up(
    webhook: GoogleWebhook, deps: Deps, capsys: pytest.CaptureFixture[str]
) -> None:
    token = KEY.token(nonce="CANARY-in-token")
    answer = webhook.resolve(_gmail(token), CONTEXT)
    assert answer["statusCode"] == 200
    [notice] = _queue(deps).notices
    assert (notice["source"], notice["object_type"], notice["kind"]) == ("google", "email", "catch_up")
    assert (notice["connection_id"], notice["source_version"], notice["provider_event_id"]) == (
        "conn_ada_google",
        "9876543210",
        "2070443601311540",
    )
    out = capsys.readouterr()
    for text in (out.out, out.err, answer["body"], *_queue(deps).bodies):
        assert token not in text
    assert_no_canary(out.out, out.err, answer["body"], *_queue(deps).bodies)


def test_replayed_gmail_push_enqueues_nothing(webhook: GoogleWebhook, deps: Deps) -> None:
    webhook.resolve(_gmail(), CONTEXT)
    answer = webhook.resolve(_gmail(), CONTEXT)
    assert answer["statusCode"] == 200 and json.loads(answer["body"])["replayed"] is True
    assert len(_queue(deps).bodies) == 1


@pytest.mark.parametrize(
    ("token", "status", "reason"),
    [
        (None, 401, "not signed by a known Google key"),  # the fixture's own token: fake signature, unknown kid
        (SigningKey("test-kid-1").token(), 401, "signature does not verify"),  # right kid, wrong key
        (KEY.token(aud="someone-else"), 401, "audience"),
        (KEY.token(iss="https://evil.example.com"), 401, "issued by Google"),
        (KEY.token(exp=int(time.time()) - 3600), 401, "expired"),
        (KEY.token(email="attacker@evil.example.com"), 403, "service account"),
        (KEY.token(email_verified=False), 403, "not verified"),
        (KEY.token(email=None), 401, "invalid token"),
    ],
)
def test_forged_gmail_push_is_refused(
    webhook: GoogleWebhook,
    deps: Deps,
    token: str | None,
    status: int,
    reason: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    event = load_event("google_webhook/gmail_push") if token is None else _gmail(token)
    answer = webhook.resolve(event, CONTEXT)
    assert answer["statusCode"] == status and reason in json.loads(answer["body"])["error"]
    assert _queue(deps).bodies == []
    out = capsys.readouterr()
    assert_no_canary(out.out, out.err, answer["body"])


def test_missing_authorization_gets_401(webhook: GoogleWebhook, deps: Deps) -> None:
    event = _gmail()
    del event["headers"]["Authorization"]
    assert webhook.resolve(event, CONTEXT)["statusCode"] == 401


@pytest.mark.parametrize(
    "body",
    [
        "nope",
        '{"message": {}}',
        json.dumps({"message": {"data": "!!!", "messageId": "1"}}),
        gmail_body(history_id="-1"),
        gmail_body(history_id=2**64),
        gmail_body(email="not-an-address"),
    ],
)
def test_malformed_gmail_push_gets_400(webhook: GoogleWebhook, deps: Deps, body: str) -> None:
    answer = webhook.resolve(_gmail(body=body), CONTEXT)
    assert answer["statusCode"] == 400 and _queue(deps).bodies == []


def test_base64url_data_and_string_history_ids_are_accepted(webhook: GoogleWebhook, deps: Deps) -> None:
    body = json.loads(gmail_body(history_id="18446744073709551615"))
    body["message"]["data"] = body["message"]["data"].replace("+", "-").replace("/", "_").rstrip("=")
    assert webhook.resolve(_gmail(body=json.dumps(body)), CONTEXT)["statusCode"] == 200
    assert _queue(deps).notices[0]["source_version"] == "18446744073709551615"


def test_push_for_an_unknown_mailbox_is_acknowledged_not_enqueued(webhook: GoogleWebhook, deps: Deps) -> None:
    answer = webhook.resolve(_gmail(body=gmail_body(email="gone@example.com")), CONTEXT)
    assert answer["statusCode"] == 200 and _queue(deps).bodies == []


def test_oversized_gmail_push_gets_413(deps: Deps) -> None:
    webhook = GoogleWebhook(settings(WEBHOOK_MAX_BODY_BYTES="1024"), deps, keys=KEY)
    body = json.loads(gmail_body())
    body["padding"] = "x" * 2000
    assert webhook.resolve(_gmail(body=json.dumps(body)), CONTEXT)["statusCode"] == 413
    assert _queue(deps).bodies == []


def test_valid_calendar_notification_enqueues_a_calendar_catch_up(
    webhook: GoogleWebhook, deps: Deps, capsys: pytest.CaptureFixture[str]
) -> None:
    answer = webhook.resolve(_calendar(), CONTEXT)
    assert answer["statusCode"] == 200
    [notice] = _queue(deps).notices
    assert (notice["object_type"], notice["kind"], notice["connection_id"]) == ("event", "catch_up", "conn_ada_google")
    out = capsys.readouterr()
    assert_no_canary(out.out, out.err, answer["body"], *_queue(deps).bodies)


def test_replayed_calendar_notification_enqueues_nothing(webhook: GoogleWebhook, deps: Deps) -> None:
    webhook.resolve(_calendar(), CONTEXT)
    assert webhook.resolve(_calendar(), CONTEXT)["statusCode"] == 200
    assert len(_queue(deps).bodies) == 1


def test_sync_message_is_only_acknowledged(webhook: GoogleWebhook, deps: Deps) -> None:
    answer = webhook.resolve(_calendar(**{"X-Goog-Resource-State": "sync", "X-Goog-Message-Number": "1"}), CONTEXT)
    assert answer["statusCode"] == 200 and _queue(deps).bodies == []


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Goog-Channel-Token": "CANARY-wrong-token"},
        {"X-Goog-Channel-Token": CALENDAR_TOKEN + "x"},
        {"X-Goog-Channel-ID": "11111111-2222-3333-4444-555555555555"},
    ],
)
def test_forged_calendar_notification_gets_403(webhook: GoogleWebhook, deps: Deps, headers: dict[str, str]) -> None:
    answer = webhook.resolve(_calendar(**headers), CONTEXT)
    assert answer["statusCode"] == 403 and _queue(deps).bodies == []
    assert_no_canary(answer["body"])


def test_calendar_notification_for_another_resource_is_refused(webhook: GoogleWebhook, deps: Deps) -> None:
    # The channel's id and token, but not the resource its watch was made on.
    answer = webhook.resolve(_calendar(**{"X-Goog-Resource-ID": "ret08u3rv24htgh289h"}), CONTEXT)
    assert answer["statusCode"] == 403 and _queue(deps).bodies == []
    assert json.loads(answer["body"])["error"] == "X-Goog-Resource-ID is not the channel's resource"


def test_calendar_channel_without_a_stored_resource_id_is_refused() -> None:
    item = channel_item(channel_key(CALENDAR_CHANNEL), "conn_ada_google", "google_calendar", "event", CALENDAR_TOKEN)
    deps = fake_deps()
    deps.channels = FakeChannels([item])
    answer = GoogleWebhook(settings(), deps, keys=KEY).resolve(_calendar(), CONTEXT)
    assert answer["statusCode"] == 403 and _queue(deps).bodies == []
    assert json.loads(answer["body"])["error"] == "the channel has no resource id on record"


@pytest.mark.parametrize(
    "headers",
    [{"X-Goog-Resource-ID": ""}, {"X-Goog-Resource-ID": "r" * 257}],
)
def test_calendar_notification_without_a_valid_resource_id_gets_400(
    webhook: GoogleWebhook, deps: Deps, headers: dict[str, str]
) -> None:
    answer = webhook.resolve(_calendar(**headers), CONTEXT)
    assert answer["statusCode"] == 400 and _queue(deps).bodies == []
    assert "X-Goog-Resource-ID" in json.loads(answer["body"])["error"]


@pytest.mark.parametrize(
    "headers",
    [{"X-Goog-Channel-ID": "bad id with spaces"}, {"X-Goog-Resource-State": "weird"}, {"X-Goog-Message-Number": "x"}],
)
def test_malformed_calendar_notification_gets_400(webhook: GoogleWebhook, deps: Deps, headers: dict[str, str]) -> None:
    assert webhook.resolve(_calendar(**headers), CONTEXT)["statusCode"] == 400
    assert _queue(deps).bodies == []


def test_oversized_calendar_notification_gets_413(deps: Deps) -> None:
    webhook = GoogleWebhook(settings(WEBHOOK_MAX_BODY_BYTES="1024"), deps, keys=KEY)
    event = _calendar()
    event["body"] = "x" * 5000
    assert webhook.resolve(event, CONTEXT)["statusCode"] == 413


# ---- the certs URL's CA bundle ------------------------------------------------------------------


@pytest.mark.parametrize("problem", ["removed", "not PEM"])
def test_an_unusable_ca_bundle_is_a_503_that_names_it_and_says_how_to_fix_it(
    deps: Deps, tmp_path: Path, logs: io.StringIO, problem: str
) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    webhook = GoogleWebhook(settings(CA_BUNDLE=str(bundle)), deps)  # the default keys: the JWKS URL
    if problem == "removed":
        bundle.unlink()  # e.g. the local run that wrote it has stopped
    else:
        bundle.write_text("not a certificate")
    answer = webhook.resolve(_gmail(), CONTEXT)
    assert answer["statusCode"] == 503
    assert json.loads(answer["body"])["error"] == "the CA bundle (CA_BUNDLE) for Google's certs URL cannot be read"
    logged = logs.getvalue()
    assert "the CA bundle for Google's certs URL cannot be read" in logged and str(bundle) in logged
    assert "point CA_BUNDLE at a readable PEM file" in logged
    assert _queue(deps).bodies == []
