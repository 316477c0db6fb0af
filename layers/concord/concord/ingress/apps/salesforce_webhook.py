"""salesforce_webhook: ``POST /salesforce/outbound`` (Outbound Messages) -> change notices.

Answers are SOAP, as Salesforce expects: ``<Ack>true</Ack>`` on success (also for a replay, which
enqueues nothing), a SOAP fault with the reason otherwise (401 no token, 403 wrong token or wrong
org, 400 malformed, 413 too large, 409/503 retry later). The token in the endpoint URL is checked
first, before the body is read (set-up: :mod:`concord.ingress.salesforce_outbound`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import Response

from concord.ingress.apps.common import Deps, read_body, webhook_resolver
from concord.ingress.enqueue import Enqueuer
from concord.ingress.salesforce_outbound import OutboundToken, ack, fault, parse_outbound_message
from concord.observability import MetricUnit, logger, metrics
from concord.settings import SettingsError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from concord.ingress.errors import Rejected
    from concord.settings import WebhookSettings

__all__ = ["SalesforceWebhook"]

_XML = "text/xml; charset=utf-8"


def _query(multi: Mapping[str, list[str]] | None, single: Mapping[str, str] | None) -> Mapping[str, list[str]] | None:
    # API Gateway fills both maps; the multi-value one shows a repeated parameter, the other hides it.
    if multi:
        return multi
    return {name: [value] for name, value in single.items()} if single else None


class SalesforceWebhook:
    """The Outbound Message route. Build once per process; call :meth:`resolve` per invocation."""

    def __init__(self, settings: WebhookSettings, deps: Deps | None = None) -> None:
        if settings.salesforce_outbound_token_sha256 is None:
            # Fail the cold start, loudly: without the token anyone who knows the org id is Salesforce.
            raise SettingsError(
                "WebhookSettings",
                {"SALESFORCE_OUTBOUND_TOKEN_SHA256": "missing (required by salesforce_webhook)"},
            )
        self.token = OutboundToken.from_setting(settings.salesforce_outbound_token_sha256)
        self.settings = settings
        self.deps = deps or Deps.from_settings(settings, channels=False)
        self.enqueuer = Enqueuer(self.deps.queue, self.deps.persistence, key_prefix="concord.salesforce_outbound")
        self.app = webhook_resolver(self.rejected)
        self.app.post("/salesforce/outbound")(self.outbound_message)

    def resolve(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return self.app.resolve(event, context)

    def outbound_message(self) -> Response[str]:
        event = self.app.current_event
        self.token.check(_query(event.multi_value_query_string_parameters, event.query_string_parameters))
        body = read_body(event, self.settings.webhook_max_body_bytes)
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
