"""The worker's side doors of the changes queue: the dead-letter queue for what retrying cannot fix,
and a visibility change that spaces out retries of what it can.

A permanent failure goes to the DLQ at once, not after burning ``maxReceiveCount`` receives: the body as
it was (notices carry no secrets) and the reason as message attributes, where on-call's CLI reads them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["MAX_VISIBILITY_S", "SqsDeadLetters", "SqsRetryDelays", "backoff_seconds"]

#: SQS's ceiling for a message's visibility timeout is 12 hours; Concord never waits longer than 15 min.
MAX_VISIBILITY_S = 900
_ATTRIBUTE_LIMIT = 1024  # characters of a reason kept in an attribute; the sync log has the rest


def backoff_seconds(receive_count: int, retry_after: float | None, *, base_s: float = 10.0) -> int:
    """How long a retried message stays invisible: ``Retry-After`` when the service said, else
    ``base_s`` doubled per receive, capped at :data:`MAX_VISIBILITY_S`."""
    if retry_after is not None and retry_after > 0:
        return min(MAX_VISIBILITY_S, int(retry_after + 0.999))
    return int(min(MAX_VISIBILITY_S, base_s * 2 ** max(0, receive_count - 1)))


class SqsDeadLetters:
    """``DeadLetters`` on SQS: SendMessage to the DLQ with the reason in attributes."""

    def __init__(self, queue_url: str, client: Any | None = None) -> None:
        self.queue_url = queue_url
        self._client = client
        self.requests = 0

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("sqs")
        return self._client

    def send(self, body: str, reason: str, *, message_id: str, attributes: Mapping[str, str] | None = None) -> None:
        fields = {"reason": reason[:_ATTRIBUTE_LIMIT], "source_message_id": message_id, **(attributes or {})}
        self.requests += 1
        self.client.send_message(
            QueueUrl=self.queue_url,
            MessageBody=body or "{}",
            MessageAttributes={
                name: {"DataType": "String", "StringValue": value} for name, value in fields.items() if value
            },
        )


class SqsRetryDelays:
    """Spaces out retries: ChangeMessageVisibility on the messages a batch hands back to SQS."""

    def __init__(self, queue_url: str, client: Any | None = None) -> None:
        self.queue_url = queue_url
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("sqs")
        return self._client

    def delay(self, retry: Mapping[str, float | None], records: Mapping[str, Mapping[str, Any]]) -> None:
        """Hide each retried message for :func:`backoff_seconds`; ten per ChangeMessageVisibilityBatch."""
        entries: list[dict[str, Any]] = []
        for message_id, retry_after in retry.items():
            record = records.get(message_id)
            if record is None or not record.get("receiptHandle"):
                continue
            count = int(record.get("attributes", {}).get("ApproximateReceiveCount", "1"))
            entries.append(
                {
                    "Id": str(len(entries)),
                    "ReceiptHandle": record["receiptHandle"],
                    "VisibilityTimeout": backoff_seconds(count, retry_after),
                }
            )
        for start in range(0, len(entries), 10):
            self.client.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries[start : start + 10])
