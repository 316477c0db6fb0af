"""sync_worker: one SQS batch of change notices, synced end to end (``concord.service.sync``).

The batch is processed as a whole, not record by record: the reads and writes of all its notices are
coalesced into bulk calls, which Powertools' per-record batch processor cannot do. The partial batch
response keeps its contract: only the messages named in ``batchItemFailures`` come back, and each comes
back after a visibility timeout that grows with its receive count (or honours ``Retry-After``), so a
throttled service is not hammered. Permanent failures were already sent to the DLQ by the service, with
their reason, and are acknowledged here. After ``maxReceiveCount`` receives SQS moves a message that
kept failing to the DLQ on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from concord.bootstrap import Deadline, retry_delays, sync_service
from concord.observability import MetricUnit, logger, metrics, tracer
from concord.service.sync import QueueMessage
from concord.settings import WorkerSettings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

settings = WorkerSettings.from_env()
deadline = Deadline()
service = sync_service(settings, deadline)
retries = retry_delays(settings)

#: The batch logs under its first message id until the service correlates each notice.
FIRST_MESSAGE_ID = "Records[0].messageId"


def _messages(event: dict[str, Any]) -> list[QueueMessage]:
    return [
        QueueMessage(
            message_id=str(record["messageId"]),
            body=str(record.get("body", "")),
            receive_count=int(record.get("attributes", {}).get("ApproximateReceiveCount", "1")),
        )
        for record in event.get("Records", [])
    ]


@logger.inject_lambda_context(correlation_id_path=FIRST_MESSAGE_ID)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deadline.reset(context.get_remaining_time_in_millis())
    records = {str(r["messageId"]): r for r in event.get("Records", [])}
    outcome = service.handle(_messages(event), time_left=deadline.left)
    retries.delay(outcome.retry, records)
    for status in ("synced", "skipped", "held", "failed"):
        metrics.add_metric(name=f"Records{status.title()}", unit=MetricUnit.Count, value=outcome.count(status))
    metrics.add_metric(name="DeadLettered", unit=MetricUnit.Count, value=len(outcome.dead_lettered))
    logger.info(
        "batch synced",
        extra={
            "messages": len(records),
            "retry": len(outcome.retry),
            "dead_lettered": len(outcome.dead_lettered),
            **{status: outcome.count(status) for status in ("synced", "skipped", "held", "failed")},
        },
    )
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in outcome.retry]}
