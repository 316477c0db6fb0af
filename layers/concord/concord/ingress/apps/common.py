"""What the webhook apps share: their AWS dependencies, the resolver, the body limit, answers."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response

from concord.adapters.subscriptions import LookupUnavailable
from concord.ingress.errors import Rejected
from concord.observability import logger

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
    from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer

    from concord.adapters.subscriptions import Channel
    from concord.ingress.enqueue import NoticeSink
    from concord.settings import WebhookSettings

__all__ = [
    "JSON",
    "TEXT",
    "ChannelLookup",
    "Deps",
    "json_error",
    "json_ok",
    "read_body",
    "utc_now",
    "webhook_resolver",
]

JSON = "application/json"
TEXT = "text/plain"


class ChannelLookup(Protocol):
    """The read side of :class:`concord.adapters.subscriptions.SubscriptionStore`."""

    def get(self, pk: str, /) -> Channel | None: ...

    def get_many(self, pks: Iterable[str], /) -> dict[str, Channel]: ...


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Deps:
    """What a webhook app talks to. :meth:`from_settings` builds the real ones (boto3 clients)."""

    queue: NoticeSink
    persistence: BasePersistenceLayer
    channels: ChannelLookup | None = None
    clock: Callable[[], datetime] = field(default=utc_now)

    @classmethod
    def from_settings(cls, settings: WebhookSettings, *, channels: bool) -> Deps:
        import boto3
        from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
        from botocore.config import Config

        from concord.adapters.queue import ChangeQueue
        from concord.adapters.subscriptions import SubscriptionStore

        # Short timeouts: Graph wants an answer within 3 s, and a sender retries what we fail.
        config = Config(connect_timeout=2, read_timeout=4, retries={"mode": "standard", "max_attempts": 3})
        dynamodb = boto3.client("dynamodb", config=config)
        return cls(
            queue=ChangeQueue(settings.changes_queue_url, boto3.client("sqs", config=config)),
            persistence=DynamoDBPersistenceLayer(table_name=settings.idempotency_table, boto3_client=dynamodb),
            channels=SubscriptionStore(settings.subscriptions_table, dynamodb) if channels else None,
        )


def webhook_resolver(on_rejected: Callable[[Rejected], Response[str]]) -> APIGatewayRestResolver:
    """Powertools' REST API resolver, with every :class:`Rejected` a route raises answered by ``on_rejected``.

    :class:`~concord.adapters.subscriptions.LookupUnavailable` (DynamoDB unreachable, refusing or
    throttled) is answered as ``Rejected(503)``, retryable, with a reason. Anything else a route
    raises propagates: Lambda reports the invocation failed and API Gateway answers 502, so the
    sender retries, and the error and its stack are in the function's log.
    """
    app = APIGatewayRestResolver()
    app.exception_handler(Rejected)(on_rejected)

    def store_unavailable(error: LookupUnavailable) -> Response[str]:
        # What failed (operation, error class) goes to the log; the sender gets a retryable 503.
        logger.warning("subscriptions table unavailable", extra={"error": str(error)})
        return on_rejected(Rejected(503, "the subscriptions store cannot be read right now; retry later"))

    app.exception_handler(LookupUnavailable)(store_unavailable)
    return app


def read_body(event: APIGatewayProxyEvent, limit: int) -> bytes:
    """The request body as bytes, refusing (413) anything larger than ``limit`` bytes before decoding it."""
    raw = event.body or ""
    # A cheap bound first: base64 is 4/3 the size, UTF-8 at least one byte a character.
    if len(raw) > (limit * 4) // 3 + 4:
        raise Rejected(413, f"body larger than {limit} bytes")
    if event.is_base64_encoded:
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise Rejected(400, "body is not valid base64") from None
    else:
        data = raw.encode("utf-8", "surrogatepass")
    if len(data) > limit:
        raise Rejected(413, f"body larger than {limit} bytes")
    return data


def json_error(status: int, reason: str) -> Response[str]:
    return Response(status_code=status, content_type=JSON, body=json.dumps({"error": reason}))


def json_ok(status: int, payload: dict[str, Any]) -> Response[str]:
    return Response(status_code=status, content_type=JSON, body=json.dumps(payload))
