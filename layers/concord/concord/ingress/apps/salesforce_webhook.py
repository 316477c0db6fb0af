"""salesforce_webhook: ``POST /salesforce/outbound`` (Outbound Messages) -> change notices.

Answers are SOAP, as Salesforce expects: ``<Ack>true</Ack>`` on success (also for a replay, which
enqueues nothing), a SOAP fault with the reason otherwise (400 malformed, 403 wrong org, 413 too
large, 409/503 retry later).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import Response

from concord.ingress.apps.common import Deps, read_body, webhook_resolver
from concord.ingress.enqueue import Enqueuer
from concord.ingress.salesforce_outbound import ack, fault, parse_outbound_message
from concord.observability import MetricUnit, logger, metrics

if TYPE_CHECKING:
    from concord.ingress.errors import Rejected
    from concord.settings import WebhookSettings

__all__ = ["SalesforceWebhook"]

_XML = "text/xml; charset=utf-8"


class SalesforceWebhook:
    """The Outbound Message route. Build once per process; call :meth:`resolve` per invocation."""

    def __init__(self, settings: WebhookSettings, deps: Deps | None = None) -> None:
        self.settings = settings
        self.deps = deps or Deps.from_settings(settings, channels=False)
        self.enqueuer = Enqueuer(self.deps.queue, self.deps.persistence, key_prefix="concord.salesforce_outbound")
        self.app = webhook_resolver(self.rejected)
        self.app.post("/salesforce/outbound")(self.outbound_message)

    def resolve(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return self.app.resolve(event, context)

    def outbound_message(self) -> Response[str]:
        body = read_body(self.app.current_event, self.settings.webhook_max_body_bytes)
        message = parse_outbound_message(body, org_id=self.settings.salesforce_org_id, received_at=self.deps.clock())
        delivery = self.enqueuer.enqueue(
            message.notices, event_ids=message.notification_ids, context=self.app.lambda_context
        )
        if message.skipped_types:
            metrics.add_metric(
                name="SalesforceNotificationsSkipped", unit=MetricUnit.Count, value=len(message.skipped_types)
            )
        metrics.add_metric(name="NoticesEnqueued", unit=MetricUnit.Count, value=delivery.enqueued)
        logger.info(
            "outbound message accepted",
            extra={
                "notifications": len(message.notification_ids),
                "enqueued": delivery.enqueued,
                "replayed": delivery.replayed,
                "skipped_types": sorted(set(message.skipped_types)),
            },
        )
        return Response(status_code=200, content_type=_XML, body=ack())

    def rejected(self, error: Rejected) -> Response[str]:
        logger.warning("outbound message rejected", extra={"status": error.status, "reason": error.reason})
        metrics.add_metric(name="RequestsRejected", unit=MetricUnit.Count, value=1)
        return Response(
            status_code=error.status, content_type=_XML, body=fault(error.reason, client=error.status < 500)
        )
