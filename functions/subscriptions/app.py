"""subscriptions: keeps push channels alive (Graph subscriptions, Gmail watch, Calendar channels).

Runs on a schedule (``SubscriptionsSchedule``, hourly): one reconcile of every connection's channels
(``concord.service.channels``): missing ones created, ageing ones renewed, lapsed ones replaced with a
catch-up, those of stopped connections removed. A channel that cannot be made or renewed degrades its
connection, is logged by the service and counted here in ``ChannelFailures`` (which alarms).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths

from concord.bootstrap import Deadline, channels_service
from concord.observability import MetricUnit, logger, metrics, tracer
from concord.settings import SchedulerSettings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

settings = SchedulerSettings.from_env()
deadline = Deadline()
service = channels_service(settings, deadline)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deadline.reset(context.get_remaining_time_in_millis())
    outcome = service.run()
    summary = {"scheduled_at": event.get("time"), **outcome.summary()}
    metrics.add_metric(name="ChannelFailures", unit=MetricUnit.Count, value=len(outcome.failures))
    metrics.add_metric(name="ChannelsCreated", unit=MetricUnit.Count, value=outcome.created)
    metrics.add_metric(name="ChannelsRenewed", unit=MetricUnit.Count, value=outcome.renewed + outcome.replaced)
    # Under one key: "created" and the like are LogRecord attributes that ``extra`` may not overwrite.
    logger.info("push channels reconciled", extra={"channels": summary})
    return summary
