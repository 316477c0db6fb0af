"""ChangeNotice: the one message the ingress functions put on the changes queue and the worker reads.

A notice is a *hint* that something changed, never the change itself: the worker always re-reads the
record (or runs a delta catch-up) before it plans anything. That keeps the notice small and lets a
duplicated, reordered or late notice do no harm.

Wire format (version 1): compact JSON, ``None`` fields left out, e.g.::

    {"v":1,"id":"ntc_01JD4Q7Z8X2M5N6P7Q8R9S0T1U","source":"graph","connection_id":"conn_ada",
     "object_type":"contact","kind":"change","record_id":"AAMk…","source_version":"W/\\"EQ…\\"",
     "provider_event_id":"7f10…:updated:AAMk…","received_at":"2026-11-20T09:15:02.310000Z"}

A queue message carries one or more notices (see :func:`encode_message`): a JSON array of notices,
or, as a single notice was first written, one notice object. Readers accept both.

Deletes: a ``change`` notice with ``"deleted": true`` says the sender reported the record deleted (a
Change Data Capture ``DELETE`` or ``GAP_DELETE``). It stays a ``change``, an optional field rather
than a new :data:`Kind`, for two reasons: an optional field is compatible within ``v: 1`` where a new
kind is not (a worker that does not know it would dead-letter the notice), and the worker's handling
is the same re-read either way. The worker reads Salesforce with ``queryAll`` and honours
``IsDeleted``, which finds a deleted record while it sits in the recycle bin; ``deleted`` is what
still tells it the record is gone once it has been purged (then ``queryAll`` finds nothing) or
when the delete reached it before the read could show it. An ``UNDELETE`` is a plain change (the
record exists again). Absent means "not known to be deleted", never "known to exist".

Compatibility: adding an *optional* field is a compatible change within ``v: 1`` (readers ignore
fields they do not know, so an old worker survives a newer ingress during a deploy); any other change
(renaming, a new required field, a changed meaning) is ``v: 2``, and the worker must read both until
the queue and its DLQ hold no ``v: 1`` notice (DLQ retention: 14 days).
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "NOTICES_PER_MESSAGE",
    "Resync",
    "NOTICE_VERSION",
    "ChangeNotice",
    "Kind",
    "MalformedMessage",
    "ObjectType",
    "Source",
    "decode_message",
    "encode_message",
    "new_notice_id",
]

NOTICE_VERSION: Literal[1] = 1

NOTICES_PER_MESSAGE = 10
"""At most this many notices share a queue message.

Why more than one: a 100-notification delivery then takes one SendMessageBatch instead of ten (SQS
bills and rate-limits per request, and the webhook answers sooner), and a worker batch of 10 messages
brings up to 100 notices to fetch in bulk. Why no more than 10: a message is retried, and at worst
dead-lettered, as a whole; re-syncing its other notices is harmless (the worker is idempotent), and 10
keeps that blast radius and a DLQ message small enough to read.
"""

Source = Literal["salesforce", "graph", "google"]
ObjectType = Literal["contact", "lead", "event", "task", "email"]
Resync = Literal["first_sync", "reset", "sync_now", "audit"]
"""Why a ``catch_up`` loads everything rather than what changed since its cursor:

* ``first_sync``: a connection was added; ``reset``: its links were cleared (re-matched, never
  duplicated); ``sync_now``: an admin asked. These queue every record of both sides in the
  connection's filters and start the cursors afresh;
* ``audit``: the daily drift audit: both sides are listed and compared with the links, and only what
  disagrees is queued.
"""
Kind = Literal["change", "catch_up", "reauthorize", "recreate_subscription"]
"""What the worker is asked to do:

* ``change``: re-read ``record_id`` on ``source`` and sync it;
* ``catch_up``: run the delta catch-up of ``object_type`` for the connection (Salesforce: the
  object's ``SystemModstamp`` watermark; Graph: the delta link; Google: history id / sync token),
  because a notification was lost, could not describe the change (CDC gap events), or only said
  "something changed" (Gmail push, Calendar channels);
* ``reauthorize``: POST ``/subscriptions/{subscription_id}/reauthorize`` (Graph), then catch up;
* ``recreate_subscription``: the push channel ``subscription_id`` is gone: create a new one, *then*
  catch up. One notice carries both steps because the queue does not keep order between notices.
"""

_Text = Annotated[str, StringConstraints(min_length=1, max_length=512)]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_notice_id() -> str:
    """A fresh notice id: ``ntc_`` and a ULID (48-bit milliseconds + 80 random bits), so ids sort by time."""
    value = ((time.time_ns() // 1_000_000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "ntc_" + "".join(reversed(chars))


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ChangeNotice(BaseModel):
    """One hint that something changed in one place, shared by the ingress functions and the worker.

    ``id`` is the notice's own id and the correlation id of everything logged about it, from ingress
    to the sync log. ``provider_event_id`` is the id the sender gave the event (Salesforce
    notification id, CDC transaction key, Pub/Sub message id, …): the key to recognise a redelivery.
    ``connection_id`` is ``None`` for Salesforce-sourced notices: a Salesforce record can belong to
    several connections, and the worker resolves them from the record it re-reads (its owner).
    ``deleted`` is ``True`` when the sender said the record was deleted (see the module docstring).
    ``resync`` (``catch_up`` only) asks for a full load, and says why (:data:`Resync`). ``scheduled``
    (``catch_up`` only) marks work the reconciler or an admin queued rather than a push: the worker
    defers it while the Salesforce API budget runs low (the cursor is kept, so nothing is lost).
    """

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=False)

    v: Literal[1] = NOTICE_VERSION
    id: str = Field(default_factory=new_notice_id, pattern=r"^ntc_[0-9A-Z]{26}$")
    source: Source
    connection_id: _Text | None = None
    object_type: ObjectType
    kind: Kind = "change"
    record_id: _Text | None = None
    source_version: _Text | None = None
    provider_event_id: _Text
    subscription_id: _Text | None = None
    deleted: Literal[True] | None = None
    resync: Resync | None = None
    scheduled: Literal[True] | None = None
    received_at: datetime = Field(default_factory=_utc_now)

    @field_validator("received_at")
    @classmethod
    def _aware_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("received_at must carry a time zone")
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.kind == "change" and self.record_id is None:
            raise ValueError("a change notice needs a record_id")
        if self.deleted and self.kind != "change":
            raise ValueError("only a change notice can say its record was deleted")
        if (self.resync or self.scheduled) and self.kind != "catch_up":
            raise ValueError("only a catch_up notice can be a resync or scheduled")
        if self.kind in ("reauthorize", "recreate_subscription") and self.subscription_id is None:
            raise ValueError(f"a {self.kind} notice needs a subscription_id")
        if self.source != "salesforce" and self.connection_id is None:
            raise ValueError(f"a {self.source} notice needs a connection_id")
        return self

    def to_message(self) -> str:
        """The SQS message body: compact JSON, ``None`` fields left out."""
        return self.model_dump_json(exclude_none=True)

    @classmethod
    def from_message(cls, body: str | bytes) -> ChangeNotice:
        """Read a message body written by :meth:`to_message` (raises ``pydantic.ValidationError``)."""
        return cls.model_validate_json(body)


class MalformedMessage(ValueError):
    """A queue message body that does not hold change notices; retrying it cannot help."""


def encode_message(notices: Sequence[ChangeNotice]) -> str:
    """One queue message body for 1..:data:`NOTICES_PER_MESSAGE` notices: a JSON array of them."""
    if not 0 < len(notices) <= NOTICES_PER_MESSAGE:
        raise ValueError(f"a message holds 1 to {NOTICES_PER_MESSAGE} notices, not {len(notices)}")
    return "[" + ",".join(notice.to_message() for notice in notices) + "]"


def decode_message(body: str | bytes) -> list[ChangeNotice]:
    """The notices of a message body: an array written by :func:`encode_message`, or one notice object.

    Raises :class:`MalformedMessage` naming what is wrong (the reason carries no field values).
    """
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedMessage(f"body is not JSON ({type(exc).__name__})") from None
    items = document if isinstance(document, list) else [document]
    if not items or not all(isinstance(item, dict) for item in items):
        raise MalformedMessage("body is neither a change notice nor a non-empty array of change notices")
    notices = []
    for index, item in enumerate(items):
        try:
            notices.append(ChangeNotice.model_validate(item))
        except ValidationError as exc:
            fields = sorted({".".join(str(part) for part in error["loc"]) or "notice" for error in exc.errors()})
            raise MalformedMessage(f"notice {index} is invalid: {', '.join(fields)}") from None
    return notices
