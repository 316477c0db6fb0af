"""salesforce_webhook: ``POST /salesforce/outbound`` (Outbound Messages) -> change notices.

Answers are SOAP, as Salesforce expects: ``<Ack>true</Ack>`` on success (also for a replay, which
enqueues nothing), a SOAP fault with the reason otherwise (400 malformed, 403 wrong org, 413 too
large, 409/503 retry later).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from concord.ingress.apps.common import Deps, read_body
from concord.ingress.apps.routes import HttpRequest, HttpResponse, Routes
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
        self.routes = Routes(self.rejected)
        self.routes.post("/salesforce/outbound", self.outbound_message)
        self._context: Any = None

    def resolve(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self._context = context
        return self.routes.resolve(event)

    def outbound_message(self, event: HttpRequest) -> HttpResponse:
        body = read_body(event, self.settings.webhook_max_body_bytes)
        message = parse_outbound_message(body, org_id=self.settings.salesforce_org_id, received_at=self.deps.clock())
        delivery = self.enqueuer.enqueue(message.notices, event_ids=message.notification_ids, context=self._context)
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
        return HttpResponse(200, _XML, ack())

    def rejected(self, error: Rejected) -> HttpResponse:
        logger.warning("outbound message rejected", extra={"status": error.status, "reason": error.reason})
        metrics.add_metric(name="RequestsRejected", unit=MetricUnit.Count, value=1)
        return HttpResponse(error.status, _XML, fault(error.reason, client=error.status < 500))
