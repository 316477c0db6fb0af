"""reconciler: queues the catch-ups that are due; the sync workers run them (``concord.service.catchup``).

Each run (``ReconcilerSchedule``) puts ``catch_up`` notices on the changes queue: one per Salesforce object
for the whole org, and per connection a first sync (new connections), the daily drift audit, or a plain
catch-up when it was not caught up within ``CATCH_UP_INTERVAL_MINUTES``. The workers run them in
parallel, so this function's cost is a scan of the connections, whatever their number.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths

from concord.adapters.queue import ChangeQueue
from concord.bootstrap import catch_up_schedule
from concord.observability import MetricUnit, logger, metrics, tracer
from concord.settings import ReconcilerSettings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

settings = ReconcilerSettings.from_env()
schedule = catch_up_schedule(settings)
queue = ChangeQueue(settings.changes_queue_url)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    notices = schedule.due()
    if notices:
        queue.send(notices)
    kinds = Counter(n.resync or ("salesforce" if n.source == "salesforce" else "catch_up") for n in notices)
    summary = {"scheduled_at": event.get("time"), "queued": len(notices), **kinds}
    metrics.add_metric(name="CatchUpsQueued", unit=MetricUnit.Count, value=len(notices))
    logger.info("catch-ups queued", extra=summary)
    return summary
