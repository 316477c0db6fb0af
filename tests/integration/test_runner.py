"""The local runner plays API Gateway, the SQS event source and EventBridge faithfully."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import httpx

from concord.notices import ChangeNotice, decode_message, encode_message
from local.runner import LOCAL_PARAMETERS, LocalRunner, pattern_matches
from tests.support.events import load_event
from tests.support.secrets import store_credentials
from tests.unit.ingress.helpers import ORG_ID

if TYPE_CHECKING:
    from local.aws.stack import LocalStack


def test_an_api_route_reaches_its_function_as_a_proxy_event_and_answers_over_http(aws: LocalStack) -> None:
    with LocalRunner(aws) as runner:
        # Graph's validation handshake: the token comes back decoded, as text/plain, with 200
        answer = httpx.post(f"{runner.url}/graph/notifications", params={"validationToken": "Validation: Token 1"})
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        assert answer.text == "Validation: Token 1"
        assert httpx.post(f"{runner.url}/no/such/route").status_code == 404


def test_the_sqs_event_source_deletes_what_succeeded_and_a_permanent_failure_reaches_the_dlq_at_once(
    aws: LocalStack,
) -> None:
    store_credentials(
        aws,
        {
            "salesforce": LOCAL_PARAMETERS["SalesforceJwtSecretArn"],
            "graph": LOCAL_PARAMETERS["GraphAppSecretArn"],
            "google": LOCAL_PARAMETERS["GoogleServiceAccountSecretArn"],
        },
    )
    sqs = aws.client("sqs")
    notice = ChangeNotice(
        source="graph", connection_id="conn_1", object_type="contact", record_id="AAMk=", provider_event_id="e1"
    )
    good = encode_message([notice])  # a connection that no longer exists: logged as skipped, acknowledged
    sqs.send_message(QueueUrl=aws.env["CHANGES_QUEUE_URL"], MessageBody=good)
    sqs.send_message(QueueUrl=aws.env["CHANGES_QUEUE_URL"], MessageBody="not json at all")

    with LocalRunner(aws, poll_wait_s=0.2, batching_window_s=0) as runner:
        worker = runner.functions["SyncWorkerFunction"]
        deadline = time.monotonic() + 30
        dead: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not dead:
            dead = sqs.receive_message(QueueUrl=aws.env["CHANGES_DLQ_URL"], MessageAttributeNames=["All"]).get(
                "Messages", []
            )
            time.sleep(0.2)
        assert runner.errors == []

    # Retrying cannot mend a malformed body: the worker sent it to the DLQ at once, with the reason.
    assert [m["Body"] for m in dead] == ["not json at all"]
    assert "malformed message" in dead[0]["MessageAttributes"]["reason"]["StringValue"]
    assert worker.invocations >= 1
    left = sqs.get_queue_attributes(QueueUrl=aws.env["CHANGES_QUEUE_URL"], AttributeNames=["All"])["Attributes"]
    assert left["ApproximateNumberOfMessages"] == "0"
    assert left["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_eventbridge_patterns_match_on_prefix_and_exact_values() -> None:
    pattern = {"source": [{"prefix": "aws.partner/salesforce.com"}], "detail-type": ["ContactChangeEvent"]}
    event = {"source": "aws.partner/salesforce.com/00D5g000004SEEDAAA/0YLabc", "detail-type": "ContactChangeEvent"}
    assert pattern_matches(pattern, event)
    assert not pattern_matches(pattern, {**event, "source": "aws.events"})
    assert not pattern_matches(pattern, {**event, "detail-type": "LeadChangeEvent"})


def test_a_change_event_whose_function_keeps_failing_lands_in_the_failure_queue_and_redrives(aws: LocalStack) -> None:
    # GIVEN salesforce_events unable to enqueue (its queue URL names no queue)
    event = load_event("salesforce_events/contact_change_event")
    missing = aws.env["CHANGES_QUEUE_URL"] + "-missing"
    overrides = {"SALESFORCE_ORG_ID": ORG_ID, "CHANGES_QUEUE_URL": missing}
    with LocalRunner(aws, overrides=overrides, poll_queues=False, async_retry_delay_s=0) as runner:
        # WHEN EventBridge delivers a change event
        answers = runner.put_event(event)
        function = runner.functions["SalesforceEventsFunction"]
        # THEN the caller sees no error, the function was tried three times (Lambda's 2 retries)...
        assert answers == []
        assert function.invocations == 3
        assert runner.errors == ["SalesforceEventsFunction: EnqueueFailed"] * 3

    # ...and Lambda's failure record, holding the event, is in the template's OnFailure queue
    sqs = aws.client("sqs")
    failures = sqs.get_queue_url(QueueName="ChangeEventsDeadLetterQueue")["QueueUrl"]
    [message] = sqs.receive_message(QueueUrl=failures, MaxNumberOfMessages=10)["Messages"]
    record = json.loads(message["Body"])
    assert record["requestPayload"] == event
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["responsePayload"]["errorType"] == "EnqueueFailed"

    # WHEN on-call redrives it once the queue is back, THEN it is enqueued
    with LocalRunner(aws, overrides={"SALESFORCE_ORG_ID": ORG_ID}, poll_queues=False) as runner:
        [answer] = runner.put_event(record["requestPayload"])
    assert answer["status"] == "enqueued"
    [queued] = sqs.receive_message(QueueUrl=aws.env["CHANGES_QUEUE_URL"])["Messages"]
    assert (
        decode_message(queued["Body"])[0].record_id == event["detail"]["payload"]["ChangeEventHeader"]["recordIds"][0]
    )
