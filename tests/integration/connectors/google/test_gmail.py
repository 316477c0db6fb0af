"""Contract tests: the Gmail part of GoogleClient against the sandbox, and Gmail's Pub/Sub pushes."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest

from concord.adapters.google import MESSAGE_HEADERS, GoogleClient
from concord.adapters.http import NotFoundError, ResyncRequired
from local.sandboxes.google import DEFAULT_PUSH_ACCOUNT, GoogleSandbox
from local.sandboxes.server import ca_bundle_path
from tests.support.receiver import Receiver

from .conftest import USER

TOPIC = "projects/concord-local/topics/gmail"


def test_full_sync_lists_and_reads_seeded_messages(seeded: GoogleSandbox, client: GoogleClient) -> None:
    ids = client.list_message_ids(USER)
    assert len(ids) == 3

    messages = [client.get_message(USER, i) for i in ids]
    subjects = set()
    for message in messages:
        headers = {h["name"]: h["value"] for h in message["payload"]["headers"]}
        assert set(headers) <= set(MESSAGE_HEADERS)
        assert {"From", "To", "Subject", "Date", "Message-ID"} <= set(headers)
        assert message["snippet"] and message["threadId"] and message["internalDate"].isdigit()
        assert "body" not in message["payload"]  # format=metadata
        subjects.add(headers["Subject"])
    assert "Lunch on Friday?" in subjects
    assert client.list_message_ids(USER, query="from:don@stanford.example") == [
        m["id"] for m in messages if "don@" in str(m["payload"]["headers"])
    ]


def test_history_lists_added_messages_across_pages(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    client.page_sizes["history"] = 2
    start = client.mailbox_history_id(USER)
    added = [
        google_sandbox.deliver_email(USER, sender="ada@analytical.example", to=[USER], subject=f"S{i}")["id"]
        for i in range(5)
    ]

    history = client.list_history(USER, start)

    assert history.message_ids == added
    assert history.history_id == client.mailbox_history_id(USER) > start
    assert client.list_history(USER, history.history_id).message_ids == []


def test_too_old_history_id_raises_resync_required(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    start = client.mailbox_history_id(USER)
    google_sandbox.deliver_email(USER, sender="ada@analytical.example", to=[USER], subject="x")
    google_sandbox.expire_history(USER)

    with pytest.raises(ResyncRequired) as caught:
        client.list_history(USER, start)
    assert caught.value.status == 404
    # the full sync's new cursor works again
    assert client.list_history(USER, client.mailbox_history_id(USER)).message_ids == []


def test_unknown_message_is_not_found(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    with pytest.raises(NotFoundError):
        client.get_message(USER, "0123456789abcdef")


def _verify_pubsub_token(token: str, audience: str, sandbox: GoogleSandbox) -> dict[str, Any]:
    """Verify the push's OIDC token the way a receiver would: with google-auth against the JWKS."""
    import requests
    from google.auth.transport.requests import Request
    from google.oauth2 import id_token

    session = requests.Session()
    session.verify = ca_bundle_path()
    session.trust_env = False  # else REQUESTS_CA_BUNDLE from the environment would override the bundle
    with session:
        claims = id_token.verify_token(
            token, Request(session), audience=audience, certs_url=f"{sandbox.url}/oauth2/v3/certs"
        )
    assert jwt.get_unverified_header(token)["kid"] == sandbox.push_key_id
    return dict(claims)


def test_watch_pushes_pubsub_envelope_with_oidc_token(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    with Receiver() as receiver:
        google_sandbox.add_push_subscription(TOPIC, receiver.url + "/google/gmail")
        watch = client.watch_mailbox(USER, TOPIC)
        assert watch.expiration_ms > 0

        delivered = google_sandbox.deliver_email(USER, sender="don@stanford.example", to=[USER], subject="Hi")

        push = receiver.wait_for(1)[0]
        envelope = json.loads(push.body)
        data = json.loads(base64.b64decode(envelope["message"]["data"]))
        assert data == {"emailAddress": USER, "historyId": int(delivered["historyId"])}
        assert envelope["subscription"] == "projects/concord-local/subscriptions/gmail-push"
        message = envelope["message"]
        assert message["messageId"] == message["message_id"]
        assert message["publishTime"] == message["publish_time"]
        claims = _verify_pubsub_token(
            push.headers["authorization"].removeprefix("Bearer "), receiver.url + "/google/gmail", google_sandbox
        )
        assert claims["iss"] == "https://accounts.google.com"
        assert claims["email"] == DEFAULT_PUSH_ACCOUNT and claims["email_verified"] is True
        assert claims["azp"] and claims["sub"] and claims["exp"] > claims["iat"]
        assert client.list_history(USER, watch.history_id).message_ids == [delivered["id"]]


def test_pushes_are_coalesced_to_one_a_second(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    with Receiver() as receiver:
        google_sandbox.add_push_subscription(TOPIC, receiver.url)
        client.watch_mailbox(USER, TOPIC)
        last: dict[str, Any] = {}
        for i in range(4):
            last = google_sandbox.deliver_email(USER, sender="a@x.example", to=[USER], subject=f"burst {i}")
        assert google_sandbox.wait_pushes(5)

        pushes = [json.loads(base64.b64decode(json.loads(p.body)["message"]["data"])) for p in receiver.received]
        assert len(pushes) == 2  # the first at once, the rest in one notification a second later
        assert pushes[-1]["historyId"] == int(last["historyId"])


def test_label_filter_and_stop(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    with Receiver() as receiver:
        google_sandbox.add_push_subscription(TOPIC, receiver.url)
        client.watch_mailbox(USER, TOPIC, label_ids=["INBOX"])
        google_sandbox.deliver_email(USER, sender=USER, to=["x@y.example"], subject="sent", label_ids=["SENT"])
        assert google_sandbox.wait_pushes()
        assert receiver.received == []

        client.stop_mailbox_watch(USER)
        google_sandbox.deliver_email(USER, sender="a@x.example", to=[USER], subject="after stop")
        assert google_sandbox.wait_pushes()
        assert receiver.received == []


def test_many_messages_are_read_in_batches_of_metadata(google_sandbox: GoogleSandbox, client: GoogleClient) -> None:
    sent = [
        google_sandbox.deliver_email(USER, sender=f"s{i}@x.example", to=[USER], subject=f"Batch {i}")["id"]
        for i in range(60)
    ]
    client.mailbox_history_id(USER)  # token in hand
    calls = client.transport.calls

    messages = client.get_messages(USER, [*sent, "0123456789abcdef"])

    assert client.transport.calls - calls == 2  # 61 ids: two HTTP batches, not 61 calls
    assert messages["0123456789abcdef"] is None
    first = messages[sent[0]]
    assert first is not None
    assert {h["name"] for h in first["payload"]["headers"]} == {"From", "To", "Subject", "Date", "Message-ID"}
    assert "body" not in first["payload"]
    assert all(messages[m] is not None for m in sent)
