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

from aws_lambda_powertools.metrics import single_metric

from concord.bootstrap import Deadline, retry_delays, sync_service
from concord.observability import MetricUnit, logger, metrics, tracer
from concord.service.sync import BatchOutcome, QueueMessage
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


def _emit_metrics(outcome: BatchOutcome) -> None:
    """EMF metrics, never one dimension per connection or user: each distinct dimension set is a billed
    custom metric, so per-connection figures live in the sync log and the connection's health."""
    for status in ("synced", "skipped", "held", "failed"):
        metrics.add_metric(name=f"Records{status.title()}", unit=MetricUnit.Count, value=outcome.count(status))
    metrics.add_metric(name="DeadLettered", unit=MetricUnit.Count, value=len(outcome.dead_lettered))
    metrics.add_metric(name="Conflicts", unit=MetricUnit.Count, value=outcome.conflicts)
    if outcome.lag_s is not None:
        metrics.add_metric(name="SyncLag", unit=MetricUnit.Seconds, value=outcome.lag_s)
    for system, calls in outcome.calls.items():
        with single_metric(name="ApiCalls", unit=MetricUnit.Count, value=calls, namespace=metrics.namespace) as one:
            one.add_dimension(name="System", value=system)
    for (kind, direction), count in outcome.written.items():
        with single_metric(
            name="RecordsWritten", unit=MetricUnit.Count, value=count, namespace=metrics.namespace
        ) as one:
            one.add_dimension(name="Object", value=kind)
            one.add_dimension(name="Direction", value=direction)
    if outcome.catch_up is not None:  # alarmed: CursorExpiredAgain and DriftFound (template.yaml)
        done = outcome.catch_up
        metrics.add_metric(name="CatchUpQueued", unit=MetricUnit.Count, value=done.queued)
        metrics.add_metric(name="CatchUpDeferred", unit=MetricUnit.Count, value=done.deferred)
        metrics.add_metric(name="CursorResyncs", unit=MetricUnit.Count, value=len(done.resyncs))
        metrics.add_metric(name="CursorExpiredAgain", unit=MetricUnit.Count, value=len(done.alarms))
        metrics.add_metric(name="DriftFound", unit=MetricUnit.Count, value=sum(done.drift.values()))
        for alarm in done.alarms:
            logger.error("cursor expired again", extra={"alarm": alarm})
    budget = service.crm.budget_left()
    if budget is not None:
        metrics.add_metric(name="SalesforceApiBudgetLeft", unit=MetricUnit.Percent, value=round(budget * 100, 1))


@logger.inject_lambda_context(correlation_id_path=FIRST_MESSAGE_ID)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deadline.reset(context.get_remaining_time_in_millis())
    records = {str(r["messageId"]): r for r in event.get("Records", [])}
    outcome = service.handle(_messages(event), time_left=deadline.left)
    retries.delay(outcome.retry, records)
    for entry in outcome.entries:  # one line per decision, under its notice's id (no field values)
        logger.info(
            f"{entry.status}: {entry.reason}",
            extra={"notice_id": entry.notice_id, "record": entry.record_key, "action": entry.action},
        )
    _emit_metrics(outcome)
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
