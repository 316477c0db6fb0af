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

* written by the subscriptions service (:class:`ChannelRecord`, :meth:`SubscriptionStore.put`): also
  ``channel_id`` (S), ``slot`` (S: ``contact`` | ``event`` | ``inbox`` | ``sentitems`` | ``calendar`` |
  ``gmail``, which of the connection's channels this is), ``mailbox_user`` (S), ``channel_expires`` (N,
  epoch seconds: when the provider ends the channel), ``started_at`` (N: when its current lifetime
  began, the base of the renewal point), ``superseded`` (BOOL: replaced, its stop still to be made) and
  ``expires_at`` (N: ``channel_expires`` + 7 days, the table's TTL, so a dead channel's item goes away).

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

__all__ = [
    "Channel",
    "ChannelRecord",
    "LookupUnavailable",
    "SubscriptionStore",
    "channel_key",
    "gmail_key",
    "secret_digest",
]

_SK = "META"
_BATCH_GET_LIMIT = 100
#: How long a channel's item outlives the channel (the TTL, ``expires_at``): long enough for on-call to
#: see what lapsed, short enough that dead channels do not pile up.
ITEM_GRACE_S = 7 * 86400


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


@dataclass(frozen=True, slots=True)
class ChannelRecord:
    """A push channel as the subscriptions service keeps it (the item layout in the module docstring).

    ``channel_id`` is the provider's id (Graph subscription id, Calendar channel id) or, for a Gmail
    watch, the mailbox address. Holds the secret's digest only, never the secret.
    """

    channel_id: str
    connection_id: str
    provider: str
    slot: str
    object_type: str
    resource: str
    mailbox_user: str
    channel_expires: int
    started_at: int
    secret_sha256: str | None = None
    resource_id: str | None = None
    superseded: bool = False

    @property
    def pk(self) -> str:
        return gmail_key(self.channel_id) if self.provider == "gmail" else channel_key(self.channel_id)

    def to_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "pk": {"S": self.pk},
            "sk": {"S": _SK},
            "channel_id": {"S": self.channel_id},
            "connection_id": {"S": self.connection_id},
            "provider": {"S": self.provider},
            "slot": {"S": self.slot},
            "object_type": {"S": self.object_type},
            "resource": {"S": self.resource},
            "mailbox_user": {"S": self.mailbox_user},
            "channel_expires": {"N": str(self.channel_expires)},
            "started_at": {"N": str(self.started_at)},
            "expires_at": {"N": str(self.channel_expires + ITEM_GRACE_S)},
            "superseded": {"BOOL": self.superseded},
        }
        if self.secret_sha256:
            item["secret_sha256"] = {"S": self.secret_sha256}
        if self.resource_id:
            item["resource_id"] = {"S": self.resource_id}
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> ChannelRecord | None:
        """``None`` for an item the service did not write (it lacks ``slot`` or ``channel_expires``)."""

        def text(name: str) -> str | None:
            value = item.get(name, {}).get("S")
            return str(value) if value else None

        def number(name: str) -> int | None:
            value = item.get(name, {}).get("N")
            return int(value) if value is not None else None

        channel_id, connection_id, slot = text("channel_id"), text("connection_id"), text("slot")
        expires, started = number("channel_expires"), number("started_at")
        if not channel_id or not connection_id or not slot or expires is None or started is None:
            return None
        return cls(
            channel_id=channel_id,
            connection_id=connection_id,
            provider=text("provider") or "",
            slot=slot,
            object_type=text("object_type") or "",
            resource=text("resource") or "",
            mailbox_user=text("mailbox_user") or "",
            channel_expires=expires,
            started_at=started,
            secret_sha256=text("secret_sha256"),
            resource_id=text("resource_id"),
            superseded=bool(item.get("superseded", {}).get("BOOL", False)),
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

    # ---- writes and listings, for the subscriptions service

    def put(self, record: ChannelRecord) -> None:
        """Store (or overwrite) a channel's item. Raises :class:`LookupUnavailable`."""
        with _unavailable_on_aws_errors("PutItem"):
            self.client.put_item(TableName=self.table_name, Item=record.to_item())

    def delete(self, pk: str) -> None:
        """Remove a channel's item (absent is fine). Raises :class:`LookupUnavailable`."""
        with _unavailable_on_aws_errors("DeleteItem"):
            self.client.delete_item(TableName=self.table_name, Key={"pk": {"S": pk}, "sk": {"S": _SK}})

    def record(self, pk: str) -> ChannelRecord | None:
        """The service's view of one channel (consistent read), or ``None``."""
        with _unavailable_on_aws_errors("GetItem"):
            answer = self.client.get_item(
                TableName=self.table_name, Key={"pk": {"S": pk}, "sk": {"S": _SK}}, ConsistentRead=True
            )
        item = answer.get("Item")
        return ChannelRecord.from_item(item) if item else None

    def records(self) -> list[ChannelRecord]:
        """Every channel the service wrote (one paged Scan: a few items per connection, once a run).

        Items it did not write (no ``slot``) are left out: the service neither renews nor removes them.
        """
        found: list[ChannelRecord] = []
        with _unavailable_on_aws_errors("Scan"):
            for page in self.client.get_paginator("scan").paginate(TableName=self.table_name, ConsistentRead=True):
                for item in page.get("Items", []):
                    record = ChannelRecord.from_item(item)
                    if record is not None:
                        found.append(record)
        return sorted(found, key=lambda r: (r.connection_id, r.slot, r.pk))

    def for_connection(self, connection_id: str) -> list[ChannelRecord]:
        """One connection's channels (the ``by_connection`` index: eventually consistent)."""
        found: list[ChannelRecord] = []
        with _unavailable_on_aws_errors("Query"):
            pages = self.client.get_paginator("query").paginate(
                TableName=self.table_name,
                IndexName="by_connection",
                KeyConditionExpression="connection_id = :c",
                ExpressionAttributeValues={":c": {"S": connection_id}},
            )
            for page in pages:
                for item in page.get("Items", []):
                    record = ChannelRecord.from_item(item)
                    if record is not None:
                        found.append(record)
        return found
