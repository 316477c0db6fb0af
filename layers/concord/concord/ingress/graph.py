"""Microsoft Graph change notifications and lifecycle notifications.

Authentication is per notification: one POST can mix subscriptions (and tenants), so each item's
``clientState`` is compared, in constant time, with the secret of the subscription it names. Items
that do not match are dropped and counted; a batch in which nothing matches is refused (403).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from concord.adapters.subscriptions import channel_key
from concord.ingress.errors import Rejected
from concord.notices import ChangeNotice

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from datetime import datetime

    from concord.adapters.subscriptions import Channel
    from concord.notices import Kind, ObjectType

__all__ = [
    "MAX_BATCH",
    "MAX_VALIDATION_TOKEN",
    "GraphBatch",
    "ParsedItem",
    "authenticate",
    "parse_batch",
    "validation_token",
]

MAX_BATCH = 1000

MAX_VALIDATION_TOKEN = 1024
"""The longest ``validationToken`` echoed. Graph sends about 110 characters ("Validation: Testing client
application reachability for subscription Request-Id: <uuid>"); its documentation calls the token
opaque and gives no maximum, so the bound leaves ample room for a longer one."""

_ODATA_TYPES: dict[str, ObjectType] = {
    "#microsoft.graph.contact": "contact",
    "#microsoft.graph.event": "event",
    "#microsoft.graph.message": "email",
}
_RESOURCE_SEGMENTS: dict[str, ObjectType] = {"contacts": "contact", "events": "event", "messages": "email"}
_LIFECYCLE_KINDS: dict[str, Kind] = {
    "reauthorizationRequired": "reauthorize",
    "subscriptionRemoved": "recreate_subscription",
    "missed": "catch_up",
}


class _ResourceData(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    odata_type: str | None = Field(default=None, alias="@odata.type", max_length=128)
    etag: str | None = Field(default=None, alias="@odata.etag", max_length=512)
    id: str | None = Field(default=None, min_length=1, max_length=512)


class _Item(BaseModel):
    model_config = ConfigDict(extra="ignore")

    subscriptionId: str = Field(min_length=1, max_length=128)
    clientState: str | None = Field(default=None, max_length=1024)
    changeType: str | None = Field(default=None, max_length=64)
    resource: str | None = Field(default=None, max_length=2048)
    resourceData: _ResourceData | None = None
    lifecycleEvent: str | None = Field(default=None, max_length=64)
    subscriptionExpirationDateTime: str | None = Field(default=None, max_length=64)


@dataclass(frozen=True, slots=True)
class ParsedItem:
    """One well-formed notification; ``client_state`` is secret: never log it."""

    subscription_id: str
    client_state: str | None
    kind: Kind
    object_type: ObjectType | None
    record_id: str | None
    version: str | None
    provider_event_id: str

    def __repr__(self) -> str:
        return f"ParsedItem(subscription_id={self.subscription_id!r}, kind={self.kind!r})"


@dataclass(frozen=True, slots=True)
class GraphBatch:
    """The outcome of one POST: the notices to enqueue and what was dropped, by reason."""

    notices: tuple[ChangeNotice, ...]
    forged: int
    malformed: int
    unsupported: int


def validation_token(query: Mapping[str, str] | None) -> str | None:
    """The decoded ``validationToken`` of a validation handshake, or ``None`` if this is not one.

    The token is form-encoded (``+`` for a space). API Gateway has already percent-decoded it but
    keeps a literal ``+``; Graph's tokens never hold one, so it maps back to a space.

    Raises ``Rejected(400)`` for a token that is empty, longer than :data:`MAX_VALIDATION_TOKEN`
    or holds control characters: the endpoint echoes what it is sent, and must not become a
    reflector of arbitrary content for anyone who finds its URL.
    """
    if not query or "validationToken" not in query:
        return None
    token = query["validationToken"].replace("+", " ")
    if not token:
        raise Rejected(400, "empty validationToken")
    if len(token) > MAX_VALIDATION_TOKEN:
        raise Rejected(400, f"validationToken longer than {MAX_VALIDATION_TOKEN} characters")
    if not token.isprintable():
        raise Rejected(400, "validationToken holds control characters")
    return token


def _object_type(item: _Item) -> ObjectType | None:
    if item.resourceData is not None and item.resourceData.odata_type:
        found = _ODATA_TYPES.get(item.resourceData.odata_type.lower())
        if found:
            return found
    if item.resource:
        for segment in reversed(item.resource.lower().split("/")):
            if segment in _RESOURCE_SEGMENTS:
                return _RESOURCE_SEGMENTS[segment]
    return None


def _record_id(item: _Item) -> str | None:
    if item.resourceData is not None and item.resourceData.id:
        return item.resourceData.id
    if item.resource:
        tail = item.resource.rstrip("/").rpartition("/")[2]
        # resource "Users/{id}/Messages('{id}')" or "Users/{id}/Contacts/{id}"
        return tail.partition("('")[2].rstrip("')") or tail or None
    return None


def _parse_item(raw: Any) -> ParsedItem | None:
    """A well-formed notification, or ``None``."""
    try:
        item = _Item.model_validate(raw)
    except ValidationError:
        return None
    if item.lifecycleEvent is not None:
        kind = _LIFECYCLE_KINDS.get(item.lifecycleEvent)
        if kind is None:
            return None
        return ParsedItem(
            subscription_id=item.subscriptionId,
            client_state=item.clientState,
            kind=kind,
            object_type=None,
            record_id=None,
            version=None,
            provider_event_id=(
                f"{item.subscriptionId}:{item.lifecycleEvent}:{item.subscriptionExpirationDateTime or ''}"
            )[:512],
        )
    record_id = _record_id(item)
    if record_id is None or not item.changeType:
        return None
    version = item.resourceData.etag if item.resourceData is not None else None
    return ParsedItem(
        subscription_id=item.subscriptionId,
        client_state=item.clientState,
        kind="change",
        object_type=_object_type(item),
        record_id=record_id,
        version=version,
        provider_event_id=f"{item.subscriptionId}:{item.changeType}:{record_id}:{version or ''}"[:512],
    )


def parse_batch(body: bytes) -> tuple[list[ParsedItem], int]:
    """The well-formed items of a notification POST, and how many were malformed.

    Raises ``Rejected(400)`` when the body is not ``{"value": [ … ]}`` with 1 to 1000 items, or when
    no item is well formed.
    """
    try:
        document = json.loads(body)
    except (ValueError, UnicodeError, RecursionError):
        raise Rejected(400, "body is not JSON") from None
    values = document.get("value") if isinstance(document, dict) else None
    if not isinstance(values, list) or not values:
        raise Rejected(400, 'expected {"value": [notification, ...]} with at least one notification')
    if len(values) > MAX_BATCH:
        raise Rejected(400, f"more than {MAX_BATCH} notifications in one request")
    items = [parsed for parsed in map(_parse_item, values) if parsed is not None]
    if not items:
        raise Rejected(400, "no well-formed notification in the request")
    return items, len(values) - len(items)


def subscription_keys(items: Iterable[ParsedItem]) -> set[str]:
    """The Subscriptions table keys these items name."""
    return {channel_key(item.subscription_id) for item in items}


class _Channels(Protocol):
    def get(self, key: str, /) -> Channel | None: ...


def authenticate(items: list[ParsedItem], malformed: int, channels: _Channels, *, received_at: datetime) -> GraphBatch:
    """Turn the items whose ``clientState`` matches their subscription's secret into notices.

    Raises ``Rejected(403)`` when no item matches (a forged batch).
    """
    notices: dict[str, ChangeNotice] = {}
    forged = unsupported = 0
    for item in items:
        channel = channels.get(channel_key(item.subscription_id))
        if channel is None or not channel.secret_matches(item.client_state):
            forged += 1
            continue
        object_type = item.object_type or channel.object_type
        if object_type not in _RESOURCE_SEGMENTS.values():
            unsupported += 1
            continue
        if item.provider_event_id in notices:
            continue
        notices[item.provider_event_id] = ChangeNotice(
            source="graph",
            connection_id=channel.connection_id,
            object_type=object_type,
            kind=item.kind,
            record_id=item.record_id,
            source_version=item.version,
            provider_event_id=item.provider_event_id,
            subscription_id=item.subscription_id if item.kind != "change" else None,
            received_at=received_at,
        )
    if forged == len(items):
        raise Rejected(403, "no notification carries the clientState of its subscription")
    return GraphBatch(notices=tuple(notices.values()), forged=forged, malformed=malformed, unsupported=unsupported)
