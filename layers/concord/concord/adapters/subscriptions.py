"""Read-only lookup of push channels (Graph subscriptions, Calendar channels, Gmail watches) by id.

Item layout in the Subscriptions table (template.yaml):

* ``pk`` = ``SUB#<graph subscription id>`` | ``SUB#<calendar channel id>`` | ``SUB#gmail#<email, lower case>``,
  ``sk`` = ``META``;
* ``connection_id`` (S), ``provider`` (S: ``graph`` | ``google_calendar`` | ``gmail``);
* ``object_type`` (S, optional: ``contact`` | ``event`` | ``email``), else derived from ``resource`` (S);
* ``secret_sha256`` (S): the hex SHA-256 of the channel's secret (Graph ``clientState``, Calendar
  channel ``token``). The secret itself is never stored: whoever creates a channel keeps the secret
  only long enough to hand it to the provider and stores :func:`secret_digest` of it. A webhook
  compares digests in constant time (:meth:`Channel.secret_matches`), so a copy of the table does not
  let anyone forge notifications. Gmail watches have no secret (Pub/Sub pushes are authenticated by
  Google's OIDC token).
* ``resource_id`` (S, Calendar channels): the ``resourceId`` that ``events.watch`` answered. Google
  sends it back in ``X-Goog-Resource-ID`` on every notification; the webhook refuses a notification
  whose resource is not the one the channel watches (and a Calendar channel stored without it), so
  whoever creates a channel must store it (it is also what ``channels.stop`` needs).

Only a boto3 DynamoDB client is used (no pynamodb): it keeps the webhook functions' cold start short.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = ["Channel", "LookupUnavailable", "SubscriptionStore", "channel_key", "gmail_key", "secret_digest"]

_SK = "META"
_BATCH_GET_LIMIT = 100


def secret_digest(secret: str) -> str:
    """The hex SHA-256 of a channel secret, as stored in ``secret_sha256``."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def channel_key(channel_id: str) -> str:
    """The ``pk`` of a Graph subscription or a Calendar channel."""
    return f"SUB#{channel_id}"


def gmail_key(email: str) -> str:
    """The ``pk`` of a Gmail watch."""
    return f"SUB#gmail#{email.strip().lower()}"


_RESOURCE_TYPES = (("contact", "contact"), ("event", "event"), ("calendar", "event"), ("message", "email"))


@dataclass(frozen=True, slots=True)
class Channel:
    """One push channel as the webhooks need it. ``repr`` shows no digest."""

    pk: str
    connection_id: str
    provider: str
    object_type: str | None
    secret_sha256: bytes | None
    resource_id: str | None = None

    def __repr__(self) -> str:
        return f"Channel(pk={self.pk!r}, connection_id={self.connection_id!r}, provider={self.provider!r})"

    def secret_matches(self, presented: str | None) -> bool:
        """Whether ``presented`` is the channel's secret. Constant time in the secret's content."""
        if self.secret_sha256 is None or presented is None:
            return False
        return hmac.compare_digest(hashlib.sha256(presented.encode("utf-8")).digest(), self.secret_sha256)

    def resource_matches(self, presented: str) -> bool:
        """Whether ``presented`` is the resource this channel watches (``False`` if none is on record)."""
        if self.resource_id is None:
            return False
        return hmac.compare_digest(presented.encode("utf-8"), self.resource_id.encode("utf-8"))

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Channel | None:
        """Build from a raw DynamoDB item; ``None`` when the item lacks what a webhook needs."""
        pk = item.get("pk", {}).get("S")
        connection_id = item.get("connection_id", {}).get("S")
        if not pk or not connection_id:
            return None
        digest: bytes | None = None
        raw_digest = item.get("secret_sha256", {}).get("S")
        if raw_digest:
            try:
                digest = bytes.fromhex(raw_digest)
            except ValueError:
                digest = None  # a corrupt digest matches nothing, which refuses the channel's notifications
        object_type = item.get("object_type", {}).get("S")
        if object_type is None:
            resource = item.get("resource", {}).get("S", "").lower()
            object_type = next((kind for word, kind in _RESOURCE_TYPES if word in resource), None)
        return cls(
            pk=pk,
            connection_id=connection_id,
            provider=item.get("provider", {}).get("S", ""),
            object_type=object_type,
            secret_sha256=digest,
            resource_id=item.get("resource_id", {}).get("S") or None,
        )


class LookupUnavailable(RuntimeError):
    """The table could not answer now: unreachable, refusing, or throttled beyond the retry budget.

    The message names the operation and the error's class or code, never a key or an item.
    """


@contextmanager
def _unavailable_on_aws_errors(operation: str) -> Iterator[None]:
    # botocore has already retried (the client's retry mode); what is left is an outage for the
    # caller to answer as "retry later", not a crash that API Gateway turns into an opaque 502.
    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "unknown")
        raise LookupUnavailable(f"Subscriptions table: {operation} failed ({code})") from exc
    except BotoCoreError as exc:
        raise LookupUnavailable(f"Subscriptions table: {operation} failed ({type(exc).__name__})") from exc


class SubscriptionStore:
    """Looks channels up by ``pk`` (see the module docstring), with strongly consistent reads.

    Consistent reads because a channel's first notifications can arrive moments after its item is
    written (Graph validates, then notifies at once).
    """

    def __init__(self, table_name: str, client: Any | None = None, *, attempts: int = 4) -> None:
        self.table_name = table_name
        self._client = client
        self._attempts = attempts

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("dynamodb")
        return self._client

    def get(self, pk: str) -> Channel | None:
        """The channel with this ``pk``, or ``None``. Raises :class:`LookupUnavailable`."""
        with _unavailable_on_aws_errors("GetItem"):
            answer = self.client.get_item(
                TableName=self.table_name,
                Key={"pk": {"S": pk}, "sk": {"S": _SK}},
                ConsistentRead=True,
            )
        item = answer.get("Item")
        return Channel.from_item(item) if item else None

    def get_many(self, pks: Iterable[str]) -> dict[str, Channel]:
        """The channels among ``pks`` that exist, by ``pk`` (BatchGetItem, 100 keys a call).

        Raises :class:`LookupUnavailable`.
        """
        wanted = sorted(set(pks))
        found: dict[str, Channel] = {}
        for start in range(0, len(wanted), _BATCH_GET_LIMIT):
            keys = [{"pk": {"S": pk}, "sk": {"S": _SK}} for pk in wanted[start : start + _BATCH_GET_LIMIT]]
            request: dict[str, Any] = {self.table_name: {"Keys": keys, "ConsistentRead": True}}
            for attempt in range(self._attempts):
                if attempt:
                    time.sleep(0.02 * 2**attempt)
                with _unavailable_on_aws_errors("BatchGetItem"):
                    answer = self.client.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self.table_name, []):
                    channel = Channel.from_item(item)
                    if channel is not None:
                        found[channel.pk] = channel
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
            if request:
                # Throttled beyond the budget: let the caller answer 503 so the sender retries.
                raise LookupUnavailable("Subscriptions table: BatchGetItem left keys unprocessed")
        return found
