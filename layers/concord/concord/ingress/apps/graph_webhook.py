"""graph_webhook: ``POST /graph/notifications`` and ``POST /graph/lifecycle`` -> change notices.

Both routes answer the validation handshake and accept both kinds of notification (a subscription's
lifecycle URL may equal its notification URL; the items tell the kinds apart). Answers: 200
``text/plain`` token for a handshake, 202 for accepted notifications, JSON ``{"error": reason}``
otherwise (400 malformed, 403 nothing matched, 413 too large, 409/503 retry later).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import Response

from concord.ingress.apps.common import TEXT, Deps, json_error, read_body, webhook_resolver
from concord.ingress.enqueue import Enqueuer
from concord.ingress.graph import authenticate, parse_batch, subscription_keys, validation_token
from concord.observability import MetricUnit, logger, metrics

if TYPE_CHECKING:
    from concord.ingress.errors import Rejected
    from concord.settings import WebhookSettings

__all__ = ["GraphWebhook"]


class GraphWebhook:
    """Graph's two routes. Build once per process; call :meth:`resolve` per invocation."""

    def __init__(self, settings: WebhookSettings, deps: Deps | None = None) -> None:
        self.settings = settings
        self.deps = deps or Deps.from_settings(settings, channels=True)
        if self.deps.channels is None:
            raise ValueError("GraphWebhook needs a channel lookup (Deps.channels)")
        self.channels = self.deps.channels
        self.enqueuer = Enqueuer(self.deps.queue, self.deps.persistence, key_prefix="concord.graph")
        self.app = webhook_resolver(self.rejected)
        self.app.post("/graph/notifications")(self.notifications)
        self.app.post("/graph/lifecycle")(self.notifications)

    def resolve(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return self.app.resolve(event, context)

    def notifications(self) -> Response[str]:
        event = self.app.current_event
        token = validation_token(event.query_string_parameters)
        if token is not None:
            # The handshake's body is not to be parsed; the token is echoed as is (it is not a secret).
            logger.info("graph validation handshake", extra={"route": event.path})
            metrics.add_metric(name="GraphValidationHandshakes", unit=MetricUnit.Count, value=1)
            return Response(status_code=200, content_type=TEXT, body=token)
        body = read_body(event, self.settings.webhook_max_body_bytes)
        items, malformed = parse_batch(body)
        channels = self.channels.get_many(subscription_keys(items))
        batch = authenticate(items, malformed, channels, received_at=self.deps.clock())
        dropped = batch.forged + batch.malformed
        if dropped:
            metrics.add_metric(name="GraphNotificationsDropped", unit=MetricUnit.Count, value=dropped)
        delivery = self.enqueuer.enqueue(
            batch.notices, event_ids=[n.provider_event_id for n in batch.notices], context=self.app.lambda_context
        )
        metrics.add_metric(name="NoticesEnqueued", unit=MetricUnit.Count, value=delivery.enqueued)
        logger.info(
            "graph notifications accepted",
            extra={
                "received": len(items) + malformed,
                "enqueued": delivery.enqueued,
                "replayed": delivery.replayed,
                "dropped_forged": batch.forged,
                "dropped_malformed": batch.malformed,
                "unsupported": batch.unsupported,
            },
        )
        return Response(status_code=202, content_type=TEXT, body="")

    def rejected(self, error: Rejected) -> Response[str]:
        logger.warning("graph request rejected", extra={"status": error.status, "reason": error.reason})
        metrics.add_metric(name="RequestsRejected", unit=MetricUnit.Count, value=1)
        return json_error(error.status, error.reason)
