"""The whole local system is wired as in AWS: a change made in a sandbox reaches the changes queue."""

from __future__ import annotations

import time

from concord.notices import decode_message
from local.system import LocalSystem


def _notices(system: LocalSystem, expected: int, timeout: float = 20.0) -> list[dict[str, object]]:
    sqs = system.stack.client("sqs")
    queue = system.stack.env["CHANGES_QUEUE_URL"]
    notices: list[dict[str, object]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(notices) < expected:
        for message in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
            notices += [notice.model_dump() for notice in decode_message(message["Body"])]
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    return notices


def test_a_contact_edited_in_salesforce_arrives_as_notices_by_outbound_message_and_change_event() -> None:
    # The worker would consume the notices, so the queue is left for the test to read.
    with LocalSystem(schedule_interval_s=3600, poll_queues=False) as system:
        contact = system.salesforce.live_records("Contact")[0]

        # WHEN a user edits the contact in Salesforce's UI
        system.salesforce.change(contact["Id"], Title="Chief Analyst")

        # THEN both push paths deliver a change notice for that record: the SOAP Outbound Message to
        # salesforce_webhook and the change event through the EventBridge rule to salesforce_events
        notices = _notices(system, expected=2)
        assert {n["record_id"] for n in notices} == {contact["Id"]}
        assert all((n["source"], n["kind"]) == ("salesforce", "change") for n in notices)
        assert len(notices) == 2
        assert system.salesforce.pusher.abandoned == []
        assert system.runner.errors == []
