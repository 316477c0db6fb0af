"""subscriptions: keeps push channels alive (Graph subscriptions, Gmail watch, Calendar channels).

Runs on a schedule (``SubscriptionsSchedule``). Creating and renewing channels comes with the
subscriptions service; until then each run reports how many channels the table holds and how
many expire before the next runs could renew them, so a deploy shows at once whether the
function reaches its table.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths

from concord.adapters.dynamodb import count_items
from concord.observability import MetricUnit, logger, metrics, tracer
from concord.settings import SchedulerSettings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

settings = SchedulerSettings.from_env()

#: Channels expiring within this many seconds are due for renewal (Graph's shortest lifetime is 7 days).
RENEW_AHEAD_SECONDS = 24 * 3600


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    renew_before = int(time.time()) + RENEW_AHEAD_SECONDS
    channels_due = count_items(
        settings.subscriptions_table,
        FilterExpression="expires_at < :before",
        ExpressionAttributeValues={":before": {"N": str(renew_before)}},
    )
    summary = {
        "status": "not_implemented",
        "scheduled_at": event.get("time"),
        "channels": count_items(settings.subscriptions_table),
        "channels_due": channels_due,
    }
    metrics.add_metric(name="PushChannelsDue", unit=MetricUnit.Count, value=channels_due)
    logger.info("subscriptions run: renewal not implemented yet", extra=summary)
    return summary
