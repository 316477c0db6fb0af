"""google_webhook: ``POST /google/gmail`` (Pub/Sub push) and ``POST /google/calendar`` (channels).

Answers: 200 JSON on success, JSON ``{"error": reason}`` otherwise (400 malformed, 401 bad token,
403 wrong account / unknown channel / wrong token, 413 too large, 409/503 retry later).

Two deliberate acknowledgements without a notice:

* a Calendar ``sync`` message is acknowledged *before* the channel is looked up: it arrives while
  the channel is being created, possibly before its item is written, and it announces nothing;
* a Gmail push for a mailbox with no watch on record (a connection removed since) is acknowledged
  (200, counted): Pub/Sub would otherwise redeliver it at once, again and again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from concord.ingress.apps.common import Deps, json_error, json_ok, read_body, webhook_resolver
from concord.ingress.enqueue import Enqueuer
from concord.ingress.google import (
    JwksKeys,
    PushTokenVerifier,
    calendar_notice,
    gmail_notice,
    gmail_watch_key,
    parse_calendar_headers,
    parse_gmail_push,
)
from concord.observability import MetricUnit, logger, metrics

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import Response

    from concord.ingress.errors import Rejected
    from concord.ingress.google import KeyResolver
    from concord.settings import WebhookSettings

__all__ = ["GoogleWebhook"]


class GoogleWebhook:
    """Google's two routes. Build once per process; call :meth:`resolve` per invocation.

    ``keys`` resolves a token's signing key (default: the JWKS at ``GOOGLE_JWKS_URL``).
    """

    def __init__(self, settings: WebhookSettings, deps: Deps | None = None, *, keys: KeyResolver | None = None) -> None:
        self.settings = settings
        self.deps = deps or Deps.from_settings(settings, channels=True)
        if self.deps.channels is None:
            raise ValueError("GoogleWebhook needs a channel lookup (Deps.channels)")
        self.channels = self.deps.channels
        self.verifier = PushTokenVerifier(
            audience=settings.google_push_audience,
            service_account=settings.google_push_service_account,
            keys=keys or JwksKeys(settings.google_jwks_url, ca_bundle=settings.ca_bundle),
        )
        self.gmail_enqueuer = Enqueuer(self.deps.queue, self.deps.persistence, key_prefix="concord.gmail")
        self.calendar_enqueuer = Enqueuer(self.deps.queue, self.deps.persistence, key_prefix="concord.calendar")
        self.app = webhook_resolver(self.rejected)
        self.app.post("/google/gmail")(self.gmail_push)
        self.app.post("/google/calendar")(self.calendar_notification)

    def resolve(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        return self.app.resolve(event, context)

    def gmail_push(self) -> Response[str]:
        event = self.app.current_event
        body = read_body(event, self.settings.webhook_max_body_bytes)
        self.verifier.verify(event.headers.get("Authorization"))
        push = parse_gmail_push(body)
        notice = gmail_notice(push, self.channels.get(gmail_watch_key(push)), received_at=self.deps.clock())
        if notice is None:
            logger.warning("gmail push for a mailbox without a watch: acknowledged, not enqueued")
            metrics.add_metric(name="GmailPushesUnknownMailbox", unit=MetricUnit.Count, value=1)
            return json_ok(200, {"enqueued": 0, "reason": "no watch on record for this mailbox"})
        delivery = self.gmail_enqueuer.enqueue([notice], event_ids=[push.message_id], context=self.app.lambda_context)
        metrics.add_metric(name="NoticesEnqueued", unit=MetricUnit.Count, value=delivery.enqueued)
        logger.info(
            "gmail push accepted",
            extra={"connection_id": notice.connection_id, "notice_id": notice.id, "replayed": delivery.replayed},
        )
        return json_ok(200, {"enqueued": delivery.enqueued, "replayed": delivery.replayed})

    def calendar_notification(self) -> Response[str]:
        event = self.app.current_event
        read_body(event, self.settings.webhook_max_body_bytes)  # empty by protocol; only its size matters
        ping = parse_calendar_headers(event.headers)
        if ping.resource_state == "sync":
            logger.info("calendar channel sync message acknowledged", extra={"channel_id": ping.channel_id})
            metrics.add_metric(name="CalendarChannelSyncMessages", unit=MetricUnit.Count, value=1)
            return json_ok(200, {"enqueued": 0})
        notice = calendar_notice(ping, self.channels.get, received_at=self.deps.clock())
        delivery = self.calendar_enqueuer.enqueue(
            [notice], event_ids=[notice.provider_event_id], context=self.app.lambda_context
        )
        metrics.add_metric(name="NoticesEnqueued", unit=MetricUnit.Count, value=delivery.enqueued)
        logger.info(
            "calendar notification accepted",
            extra={"channel_id": ping.channel_id, "notice_id": notice.id, "replayed": delivery.replayed},
        )
        return json_ok(200, {"enqueued": delivery.enqueued, "replayed": delivery.replayed})

    def rejected(self, error: Rejected) -> Response[str]:
        logger.warning("google request rejected", extra={"status": error.status, "reason": error.reason})
        metrics.add_metric(name="RequestsRejected", unit=MetricUnit.Count, value=1)
        return json_error(error.status, error.reason)
