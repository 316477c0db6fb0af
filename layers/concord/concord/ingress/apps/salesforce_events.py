"""salesforce_events: CDC events relayed by EventBridge -> change notices.

EventBridge invokes asynchronously, so the answer is only a summary for logs and tests
(``{"status", "statusCode", …}``). A rejected event (malformed, another org's, too large) is logged,
counted and *not* raised: retrying it cannot help. A failure to enqueue *is* raised, so that Lambda
retries the asynchronous invocation (twice, minutes apart) and then sends its failure record, the
event inside, to ``ChangeEventsDeadLetterQueue`` (template.yaml), where on-call sees and redrives it.
EventBridge's own retry policy only covers getting the event to Lambda.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from concord.ingress.apps.common import Deps
from concord.ingress.enqueue import Enqueuer
from concord.ingress.errors import Rejected
from concord.ingress.salesforce_cdc import parse_change_event
from concord.observability import MetricUnit, logger, metrics

if TYPE_CHECKING:
    from concord.settings import WebhookSettings

__all__ = ["EnqueueFailed", "SalesforceEvents"]


class EnqueueFailed(RuntimeError):
    """The event could not be enqueued now; raised so that EventBridge retries it."""


class SalesforceEvents:
    """The change-event handler. Build once per process; call :meth:`handle` per invocation."""

    def __init__(self, settings: WebhookSettings, deps: Deps | None = None) -> None:
        self.settings = settings
        self.deps = deps or Deps.from_settings(settings, channels=False)
        self.enqueuer = Enqueuer(self.deps.queue, self.deps.persistence, key_prefix="concord.salesforce_cdc")

    def handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        try:
            return self._handle(event, context)
        except Rejected as error:
            if error.status >= 500:
                raise EnqueueFailed(error.reason) from None
            logger.warning("change event rejected", extra={"status": error.status, "reason": error.reason})
            metrics.add_metric(name="RequestsRejected", unit=MetricUnit.Count, value=1)
            return {"status": "rejected", "statusCode": error.status, "reason": error.reason}

    def _handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        if not isinstance(event, dict):
            raise Rejected(400, "event is not a JSON object")
        try:
            size = len(json.dumps(event.get("detail"), separators=(",", ":")).encode())
        except (TypeError, ValueError):
            raise Rejected(400, "event detail is not JSON") from None
        if size > self.settings.webhook_max_body_bytes:
            raise Rejected(413, f"event detail larger than {self.settings.webhook_max_body_bytes} bytes")
        change = parse_change_event(event, org_id=self.settings.salesforce_org_id, received_at=self.deps.clock())
        summary: dict[str, Any] = {
            "event_id": change.event_id,
            "entity": change.entity,
            "change_type": change.change_type,
            "record_count": change.record_count,
        }
        if change.echo:
            # Concord's own write coming back: the link already holds these values.
            logger.info("change event is an echo of Concord's own write; not enqueued", extra=summary)
            metrics.add_metric(name="SalesforceEchoes", unit=MetricUnit.Count, value=change.record_count)
            return {"status": "echo", "statusCode": 200, "enqueued": 0, **summary}
        if not change.notices:
            logger.info("change event for an object Concord does not sync; not enqueued", extra=summary)
            return {"status": "skipped", "statusCode": 200, "enqueued": 0, **summary}
        delivery = self.enqueuer.enqueue(change.notices, event_ids=[change.event_id], context=context)
        metrics.add_metric(name="NoticesEnqueued", unit=MetricUnit.Count, value=delivery.enqueued)
        status = "replayed" if delivery.replayed else "enqueued"
        logger.info("change event accepted", extra={**summary, "enqueued": delivery.enqueued, "status": status})
        return {"status": status, "statusCode": 200, "enqueued": delivery.enqueued, **summary}
