"""sync_worker: applies batches of change notices from the changes queue.

SQS invokes it with up to ``WorkerBatchSize`` records and ``ReportBatchItemFailures`` on: every
record that raises is reported as a batch item failure, so SQS redelivers only that record, and
after 5 receives moves it to the DLQ. A record carries up to 10 change notices
(``concord.notices.decode_message``); a body that does not hold valid notices raises, and so ends in
the DLQ for on-call to read rather than vanishing.

Each notice's log lines carry its id as the correlation id. Applying a notice (fetch both sides,
plan, execute, log) comes with the sync service; until then valid notices are acknowledged and
counted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from concord.notices import decode_message
from concord.observability import MetricUnit, correlate, logger, metrics, tracer
from concord.settings import WorkerSettings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext

settings = WorkerSettings.from_env()
processor = BatchProcessor(event_type=EventType.SQS)

#: Until a record is handled, the batch logs under its first message id; each notice then sets its
#: own id (record_handler). Not a body's id: a malformed first body must not fail the batch.
FIRST_MESSAGE_ID = "Records[0].messageId"


@tracer.capture_method
def record_handler(record: SQSRecord) -> list[str]:
    """The ids of the record's notices, logged one by one; raises ``MalformedMessage`` for a bad body."""
    correlate(record.message_id)
    notices = decode_message(record.body)
    for notice in notices:
        correlate(notice.id)
        logger.info(
            "change notice received",
            extra={
                "source": notice.source,
                "object_type": notice.object_type,
                "kind": notice.kind,
                "receive_count": record.attributes.approximate_receive_count,
            },
        )
    metrics.add_metric(name="ChangeNoticesReceived", unit=MetricUnit.Count, value=len(notices))
    return [notice.id for notice in notices]


@logger.inject_lambda_context(correlation_id_path=FIRST_MESSAGE_ID)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    failures = len(response.get("batchItemFailures", []))
    if failures:
        metrics.add_metric(name="ChangeNoticeFailures", unit=MetricUnit.Count, value=failures)
    return dict(response)
