"""reconciler: the scheduled delta catch-up that repairs late, dropped or never-sent notifications.

Runs on a schedule (``ReconcilerSchedule``). The catch-up (Graph delta links, Calendar and People
sync tokens, Gmail history ids, a Salesforce SystemModstamp watermark) comes with the reconcile
service; until then each run reports how many connections are active and how many cursors exist,
so a deploy shows at once whether the function reaches its tables.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths

from concord.adapters.dynamodb import count_items
from concord.observability import MetricUnit, logger, metrics, tracer
from concord.settings import SchedulerSettings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

settings = SchedulerSettings.from_env()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    active = count_items(
        settings.connections_table,
        FilterExpression="#status = :active",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":active": {"S": "active"}},
    )
    summary = {
        "status": "not_implemented",
        "scheduled_at": event.get("time"),
        "active_connections": active,
        "cursors": count_items(settings.cursors_table),
    }
    metrics.add_metric(name="ActiveConnections", unit=MetricUnit.Count, value=active)
    logger.info("reconciler run: catch-up not implemented yet", extra=summary)
    return summary
