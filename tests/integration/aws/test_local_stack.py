"""The local AWS stack behaves like AWS where Concord depends on it."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from local.aws import moto_patch
from local.aws.provision import load_template, resources_of
from local.aws.stack import TEMPLATE, LocalStack


def test_message_received_five_times_without_delete_ends_in_the_dlq_intact(aws: LocalStack) -> None:
    # GIVEN a message with attributes on the changes queue (redrive maxReceiveCount 5)
    sqs = aws.client("sqs")
    queue, dlq = aws.env["CHANGES_QUEUE_URL"], aws.env["CHANGES_DLQ_URL"]
    body = json.dumps({"v": 1, "record_id": "003000000000001AAA"})
    attributes = {"source": {"DataType": "String", "StringValue": "graph"}}
    sqs.send_message(QueueUrl=queue, MessageBody=body, MessageAttributes=attributes)

    # WHEN it is received five times and never deleted (a worker that keeps failing)
    for attempt in range(1, 6):
        got = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=0, MessageAttributeNames=["All"])
        assert len(got["Messages"]) == 1, f"receive {attempt}"
    assert "Messages" not in sqs.receive_message(QueueUrl=queue, VisibilityTimeout=0)

    # THEN it sits in the dead-letter queue with its body and attributes intact
    dead = sqs.receive_message(QueueUrl=dlq, MessageAttributeNames=["All"], AttributeNames=["All"])["Messages"]
    assert len(dead) == 1
    assert dead[0]["Body"] == body
    assert dead[0]["MessageAttributes"]["source"]["StringValue"] == "graph"


def test_a_conditional_write_that_loses_a_race_fails_with_the_real_exception(aws: LocalStack) -> None:
    ddb = aws.client("dynamodb")
    table = aws.env["LINKS_TABLE"]
    key = {"pk": {"S": "link#1"}, "sk": {"S": "link"}}
    ddb.put_item(TableName=table, Item={**key, "lock_version": {"N": "1"}})

    def write_if_version(expected: int) -> None:
        ddb.put_item(
            TableName=table,
            Item={**key, "lock_version": {"N": str(expected + 1)}},
            ConditionExpression="lock_version = :expected",
            ExpressionAttributeValues={":expected": {"N": str(expected)}},
        )

    write_if_version(1)  # the first writer wins
    with pytest.raises(ClientError) as lost:
        write_if_version(1)  # the second read the same version and loses
    assert lost.value.response["Error"]["Code"] == "ConditionalCheckFailedException"


def test_every_table_and_queue_of_the_template_is_provisioned_as_declared(aws: LocalStack) -> None:
    template = load_template(TEMPLATE)
    ddb, sqs = aws.client("dynamodb"), aws.client("sqs")
    for name, props in resources_of(template, "AWS::DynamoDB::Table").items():
        table = ddb.describe_table(TableName=name)["Table"]
        assert table["KeySchema"] == props["KeySchema"]
        declared_gsis = {g["IndexName"] for g in props.get("GlobalSecondaryIndexes", [])}
        assert {g["IndexName"] for g in table.get("GlobalSecondaryIndexes", [])} == declared_gsis
        ttl = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if props.get("TimeToLiveSpecification", {}).get("Enabled"):
            assert ttl["AttributeName"] == props["TimeToLiveSpecification"]["AttributeName"]
    changes = sqs.get_queue_attributes(QueueUrl=aws.env["CHANGES_QUEUE_URL"], AttributeNames=["All"])["Attributes"]
    redrive = json.loads(changes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith(":ChangesDeadLetterQueue")
    assert int(redrive["maxReceiveCount"]) == 5


def test_moto_internals_the_sqs_patch_relies_on_are_unchanged() -> None:
    # If this fails, moto was upgraded: re-read local/aws/moto_patch.py against the new moto,
    # then update PINNED_MOTO and PATCHED_SOURCES.
    assert moto_patch.check_upstream() == []


def test_the_patched_queue_still_counts_receives_and_deletes_like_sqs(aws: LocalStack) -> None:
    sqs = aws.client("sqs")
    queue = aws.env["CHANGES_QUEUE_URL"]
    entries = [{"Id": str(i), "MessageBody": f"m{i}"} for i in range(10)]
    assert len(sqs.send_message_batch(QueueUrl=queue, Entries=entries)["Successful"]) == 10

    got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=4, VisibilityTimeout=60)["Messages"]
    sqs.delete_message_batch(
        QueueUrl=queue, Entries=[{"Id": m["MessageId"], "ReceiptHandle": m["ReceiptHandle"]} for m in got[:3]]
    )
    counts = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert counts["ApproximateNumberOfMessages"] == "6"
    assert counts["ApproximateNumberOfMessagesNotVisible"] == "1"

    sqs.delete_message(QueueUrl=queue, ReceiptHandle=got[0]["ReceiptHandle"])  # twice is allowed
    with pytest.raises(ClientError) as bad:
        sqs.delete_message(QueueUrl=queue, ReceiptHandle="not-a-handle")
    assert bad.value.response["Error"]["Code"] in (
        "ReceiptHandleIsInvalid",
        "AWS.SimpleQueueService.ReceiptHandleIsInvalid",
    )
