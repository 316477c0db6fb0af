from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import pytest

from concord.ingress.apps.salesforce_webhook import SalesforceWebhook
from concord.ingress.errors import Rejected
from concord.ingress.salesforce_outbound import OutboundToken, parse_outbound_message
from concord.settings import SettingsError
from tests.support.events import load_event
from tests.unit.ingress.helpers import (
    CONTEXT,
    NOW,
    ORG_ID,
    OUTBOUND_TOKEN,
    OUTBOUND_TOKEN_SHA256,
    FakeQueue,
    assert_no_canary,
    fake_deps,
    outbound_message,
    settings,
)

if TYPE_CHECKING:
    import io

    from concord.ingress.apps.common import Deps


def _event(body: str | None = None) -> dict[str, Any]:
    event = load_event("salesforce_webhook/outbound_message")
    if body is not None:
        event["body"] = body
    return event


@pytest.fixture
def deps() -> Deps:
    return fake_deps()


@pytest.fixture
def webhook(deps: Deps) -> SalesforceWebhook:
    return SalesforceWebhook(settings(), deps)


def _queue(deps: Deps) -> FakeQueue:
    assert isinstance(deps.queue, FakeQueue)
    return deps.queue


def test_valid_message_enqueues_one_notice_per_notification_and_acks(
    webhook: SalesforceWebhook, deps: Deps, capsys: pytest.CaptureFixture[str]
) -> None:
    # WHEN the fixture's Outbound Message (two notifications) arrives
    answer = webhook.resolve(_event(), CONTEXT)
    # THEN Salesforce gets its SOAP Ack and two notices are queued
    assert answer["statusCode"] == 200
    assert answer["multiValueHeaders"]["Content-Type"] == ["text/xml; charset=utf-8"]
    assert "<Ack>true</Ack>" in answer["body"]
    notices = _queue(deps).notices
    assert [(n["record_id"], n["provider_event_id"]) for n in notices] == [
        ("0035g00000ADALVAA1", "04l5g00000NTF01AAA"),
        ("0035g00000CHBABAA3", "04l5g00000NTF02AAA"),
    ]
    assert notices[0]["source_version"] == "2026-11-20T09:15:01.000Z" and "connection_id" not in notices[0]
    assert all(n["source"] == "salesforce" and n["object_type"] == "contact" for n in notices)
    out = capsys.readouterr()
    assert_no_canary(out.out, out.err, answer["body"], *_queue(deps).bodies)


def test_replayed_message_is_acked_and_enqueues_nothing(webhook: SalesforceWebhook, deps: Deps) -> None:
    webhook.resolve(_event(), CONTEXT)
    answer = webhook.resolve(_event(), CONTEXT)
    assert answer["statusCode"] == 200 and "<Ack>true</Ack>" in answer["body"]
    assert len(_queue(deps).bodies) == 2


def test_forged_org_gets_403_soap_fault(
    webhook: SalesforceWebhook, deps: Deps, capsys: pytest.CaptureFixture[str]
) -> None:
    answer = webhook.resolve(_event(outbound_message(org_id="00D000000000001AAA")), CONTEXT)
    assert answer["statusCode"] == 403
    assert "<faultcode>soapenv:Client</faultcode>" in answer["body"]
    assert "OrganizationId is not the configured organization" in answer["body"]
    assert _queue(deps).bodies == []
    out = capsys.readouterr()
    assert_no_canary(out.out, out.err, answer["body"])


@pytest.mark.parametrize(
    "body",
    [
        "not xml at all",
        "<a><b></a>",
        '<?xml version="1.0"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"/>',
        outbound_message().replace("<sf:Id>0035g00000R000001A</sf:Id>", ""),
        outbound_message(0),
        outbound_message(101),
    ],
)
def test_malformed_message_gets_400_soap_fault(webhook: SalesforceWebhook, deps: Deps, body: str) -> None:
    answer = webhook.resolve(_event(body), CONTEXT)
    assert answer["statusCode"] == 400 and "<soapenv:Fault>" in answer["body"]
    assert _queue(deps).bodies == []


XXE = (
    '<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
    '<notifications xmlns="http://soap.sforce.com/2005/09/outbound"><OrganizationId>&xxe;</OrganizationId>'
    "</notifications></soapenv:Body></soapenv:Envelope>"
)
LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;">]><lolz>&lol3;</lolz>'
)


@pytest.mark.parametrize("body", [XXE, LAUGHS])
def test_dtds_entities_and_external_references_are_refused(webhook: SalesforceWebhook, deps: Deps, body: str) -> None:
    answer = webhook.resolve(_event(body), CONTEXT)
    assert answer["statusCode"] == 400 and "DTD" in answer["body"]
    assert _queue(deps).bodies == []


def test_oversized_message_gets_413_before_parsing(deps: Deps) -> None:
    webhook = SalesforceWebhook(settings(WEBHOOK_MAX_BODY_BYTES="2048"), deps)
    answer = webhook.resolve(_event(outbound_message(40)), CONTEXT)
    assert answer["statusCode"] == 413 and "<soapenv:Fault>" in answer["body"]
    assert _queue(deps).bodies == []


def test_base64_body_is_decoded(webhook: SalesforceWebhook, deps: Deps) -> None:
    import base64

    event = _event(base64.b64encode(outbound_message(3).encode()).decode())
    event["isBase64Encoded"] = True
    assert webhook.resolve(event, CONTEXT)["statusCode"] == 200
    assert len(_queue(deps).bodies) == 3


def test_queue_failure_answers_503_fault_and_a_retry_goes_through(webhook: SalesforceWebhook, deps: Deps) -> None:
    queue = _queue(deps)
    queue.fail_with = RuntimeError("boom")
    from concord.adapters.queue import EnqueueError

    queue.fail_with = EnqueueError({"ntc_x": "InternalError"})
    answer = webhook.resolve(_event(), CONTEXT)
    assert answer["statusCode"] == 503 and "soapenv:Server" in answer["body"]
    # Salesforce retries: the failed attempt left no idempotency record behind
    queue.fail_with = None
    assert webhook.resolve(_event(), CONTEXT)["statusCode"] == 200
    assert len(queue.bodies) == 2


def test_unsupported_objects_are_acked_and_skipped(webhook: SalesforceWebhook, deps: Deps) -> None:
    answer = webhook.resolve(_event(outbound_message(2, sobject="Account")), CONTEXT)
    assert answer["statusCode"] == 200 and _queue(deps).bodies == []


def test_parser_dedupes_repeated_notification_ids_and_accepts_15_char_org() -> None:
    body = outbound_message(1, org_id=ORG_ID[:15])
    block = "<Notification>" + body.split("<Notification>")[1].split("</Notification>")[0] + "</Notification>"
    doubled = body.replace("</notifications>", block + "</notifications>")
    message = parse_outbound_message(doubled.encode(), org_id=ORG_ID, received_at=NOW)
    assert len(message.notices) == 1 and message.notification_ids == ("04l5g00000N000001A",)


def test_parser_never_reads_the_session_id() -> None:
    message = parse_outbound_message(outbound_message(1).encode(), org_id=ORG_ID, received_at=NOW)
    assert_no_canary(repr(message), json.dumps([n.to_message() for n in message.notices]))


def test_rejected_carries_status_and_reason() -> None:
    with pytest.raises(Rejected) as raised:
        parse_outbound_message(b"<x/>", org_id=ORG_ID, received_at=NOW)
    assert raised.value.status == 400 and raised.value.reason == "not a SOAP 1.1 envelope"


# ---- the token in the endpoint URL ----------------------------------------------------------------


def _with_token(*values: str | None) -> dict[str, Any]:
    """The fixture's message, its endpoint URL carrying ``values`` as ``token`` (none when empty)."""
    event = _event()
    present = [v for v in values if v is not None]
    event["queryStringParameters"] = {"token": present[-1]} if present else None
    event["multiValueQueryStringParameters"] = {"token": present} if present else None
    return event


@pytest.mark.parametrize(
    ("values", "status", "reason"),
    [
        ((), 401, "missing the outbound message token"),
        (("",), 401, "missing the outbound message token"),
        (("CANARY-wrong-token",), 403, "outbound message token does not match"),
        ((OUTBOUND_TOKEN + "x",), 403, "outbound message token does not match"),
        ((OUTBOUND_TOKEN.lower(),), 403, "outbound message token does not match"),
        (("CANARY-" + "x" * 5000,), 403, "outbound message token does not match"),
        ((OUTBOUND_TOKEN, "CANARY-other"), 400, "more than one token"),
    ],
)
def test_a_missing_or_wrong_token_gets_a_soap_fault_and_nothing_is_enqueued(
    webhook: SalesforceWebhook, deps: Deps, logs: io.StringIO, values: tuple[str, ...], status: int, reason: str
) -> None:
    # The org id is right: it is not a secret, so it authenticates nothing.
    answer = webhook.resolve(_with_token(*values), CONTEXT)
    assert answer["statusCode"] == status
    assert "<faultcode>soapenv:Client</faultcode>" in answer["body"] and reason in answer["body"]
    assert _queue(deps).bodies == []
    assert reason in logs.getvalue()
    assert_no_canary(logs.getvalue(), answer["body"])


def test_the_token_is_checked_before_the_body_is_parsed(webhook: SalesforceWebhook, deps: Deps) -> None:
    event = _with_token("CANARY-wrong-token")
    event["body"] = "not xml at all"
    assert webhook.resolve(event, CONTEXT)["statusCode"] == 403


def test_the_right_token_is_accepted_and_never_logged(
    webhook: SalesforceWebhook, deps: Deps, logs: io.StringIO
) -> None:
    answer = webhook.resolve(_with_token(OUTBOUND_TOKEN), CONTEXT)
    assert answer["statusCode"] == 200 and len(_queue(deps).bodies) == 2
    assert "outbound message accepted" in logs.getvalue()
    assert_no_canary(logs.getvalue(), answer["body"], *_queue(deps).bodies)


def test_two_digests_let_the_token_be_rotated(deps: Deps) -> None:
    new = "a-new-token-after-rotation"
    digests = f"{hashlib.sha256(new.encode()).hexdigest()},{OUTBOUND_TOKEN_SHA256}"
    webhook = SalesforceWebhook(settings(SALESFORCE_OUTBOUND_TOKEN_SHA256=digests), deps)
    assert webhook.resolve(_with_token(OUTBOUND_TOKEN), CONTEXT)["statusCode"] == 200
    assert webhook.resolve(_with_token(new), CONTEXT)["statusCode"] == 200
    assert webhook.resolve(_with_token("CANARY-neither"), CONTEXT)["statusCode"] == 403


def test_the_function_does_not_start_without_a_token_digest(deps: Deps) -> None:
    with pytest.raises(SettingsError, match="SALESFORCE_OUTBOUND_TOKEN_SHA256: missing"):
        SalesforceWebhook(settings(SALESFORCE_OUTBOUND_TOKEN_SHA256=""), deps)


def test_the_token_checker_shows_no_digest() -> None:
    checker = OutboundToken.from_setting(OUTBOUND_TOKEN_SHA256)
    assert OUTBOUND_TOKEN_SHA256 not in repr(checker) and OUTBOUND_TOKEN_SHA256[:16] not in repr(checker)
