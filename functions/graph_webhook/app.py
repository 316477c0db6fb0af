"""graph_webhook: Microsoft Graph change and lifecycle notifications, and validation handshakes -> change notices.

The handler is thin on purpose: authentication, parsing, idempotency and enqueueing live in
``concord.ingress.apps.graph_webhook``, where they are unit-tested without Lambda.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging import correlation_paths

from concord.ingress.apps.graph_webhook import GraphWebhook
from concord.observability import logger, metrics, tracer
from concord.settings import WebhookSettings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

settings = WebhookSettings.from_env()
webhook = GraphWebhook(settings)


# log_event=False whatever POWERTOOLS_LOGGER_LOG_EVENT says: the event holds secrets (the Outbound
# Message token in the query string, clientStates, bearer tokens, SessionIds).
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return webhook.resolve(event, context)
