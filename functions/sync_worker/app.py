"""sync_worker: applies batches of change notices from the changes queue.

SQS invokes it with up to ``WorkerBatchSize`` records and ``ReportBatchItemFailures`` on: every
record that raises is reported as a batch item failure, so SQS redelivers only that record, and
after 5 receives moves it to the DLQ. A body that is not a JSON object cannot become a change
notice: it raises, and so ends in the DLQ for on-call to read rather than vanishing.

Each record's log lines carry the change notice's id as the correlation id. Applying a notice
(fetch both sides, plan, execute, log) comes with the sync service; until then a valid notice is
acknowledged and counted.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from concord.observability import MetricUnit, correlate, logger, metrics, tracer
from concord.settings import WorkerSettings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext

settings = WorkerSettings.from_env()
processor = BatchProcessor(event_type=EventType.SQS)

#: Until a record is handled, the batch logs under its first message id; each record then sets its
#: notice's id (record_handler). Not the body's id: a malformed first body must not fail the batch.
FIRST_MESSAGE_ID = "Records[0].messageId"


class MalformedNotice(ValueError):
    """The message body is not a change notice; retrying cannot help, so it ends in the DLQ."""


def parse_notice(body: str) -> dict[str, Any]:
    """The message body as a JSON object, or :class:`MalformedNotice` naming what is wrong."""
    try:
        notice = json.loads(body)
    except json.JSONDecodeError as exc:
        raise MalformedNotice(f"body is not JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(notice, dict):
        raise MalformedNotice(f"body is JSON {type(notice).__name__}, not an object")
    return notice


def notice_id(notice: dict[str, Any], record: SQSRecord) -> str:
    """The change notice's id (``ChangeNotice.id``), else the SQS message id, so every line has one."""
    value = notice.get("id")
    return value if isinstance(value, str) and value else record.message_id


@tracer.capture_method
def record_handler(record: SQSRecord) -> dict[str, Any]:
    correlate(record.message_id)
    notice = parse_notice(record.body)
    correlate(notice_id(notice, record))
    logger.info(
        "change notice received",
        extra={
            "source": notice.get("source"),
            "object_type": notice.get("object_type"),
            "receive_count": record.attributes.approximate_receive_count,
        },
    )
    metrics.add_metric(name="ChangeNoticesReceived", unit=MetricUnit.Count, value=1)
    return notice


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
