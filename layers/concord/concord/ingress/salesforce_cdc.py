"""Salesforce Change Data Capture events relayed through EventBridge (Event Relay).

Only the ``ChangeEventHeader`` is read: the body's field values may be personal data, every
unchanged field is ``null``, and the worker re-reads the record anyway.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from concord.ingress.errors import Rejected
from concord.ingress.salesforce_outbound import OBJECT_TYPES
from concord.notices import ChangeNotice

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["CONCORD_CLIENT", "ChangeEvent", "is_echo", "parse_change_event"]

CONCORD_CLIENT = "concord"
"""The ``client=`` Concord's Salesforce writes send in ``Sforce-Call-Options``; CDC repeats it in changeOrigin."""

_SOURCE_PREFIX = "aws.partner/salesforce.com/"
_EMPTY_ID = "000000000000000AAA"
_SF_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
MAX_RECORD_IDS = 10_000
_OVERFLOW = "GAP_OVERFLOW"
_DELETES = ("DELETE", "GAP_DELETE")


class _Header(BaseModel):
    model_config = ConfigDict(extra="ignore")

    entityName: str = Field(min_length=1, max_length=128)
    recordIds: list[str] = Field(min_length=1, max_length=MAX_RECORD_IDS)
    changeType: str = Field(min_length=1, max_length=32)
    changeOrigin: str | None = Field(default=None, max_length=1024)
    transactionKey: str | None = Field(default=None, max_length=128)
    sequenceNumber: int | None = None
    commitTimestamp: int | None = Field(default=None, ge=0, lt=2**53)


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    ChangeEventHeader: _Header


class _Detail(BaseModel):
    model_config = ConfigDict(extra="ignore")

    payload: _Payload


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    id: str = Field(min_length=1, max_length=128)
    source: str = Field(min_length=1, max_length=256)
    detail: _Detail


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """What one relayed change event comes to."""

    event_id: str
    entity: str
    change_type: str
    record_count: int
    echo: bool
    notices: tuple[ChangeNotice, ...]


def is_echo(change_origin: str | None, client: str = CONCORD_CLIENT) -> bool:
    """Whether ``changeOrigin`` (``com/salesforce/api/rest/60.0;client=concord``) names ``client``."""
    if not change_origin:
        return False
    return any(part.strip() == f"client={client}" for part in change_origin.split(";")[1:])


def _iso_ms(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_change_event(event: Mapping[str, Any], *, org_id: str, received_at: datetime) -> ChangeEvent:
    """One change notice per record id (``deleted`` for ``DELETE`` and ``GAP_DELETE``); a catch-up of
    the object for ``GAP_OVERFLOW`` and for wildcard or empty record ids.

    Echoes (changes Concord itself made: ``client=concord`` in ``changeOrigin``) yield no notice.
    Raises ``Rejected(400)`` for an event that is not a change event, ``Rejected(403)`` for another org's.
    """
    try:
        envelope = _Envelope.model_validate(event)
    except ValidationError:
        raise Rejected(400, "not a Salesforce change event (ChangeEventHeader missing or malformed)") from None
    if not envelope.source.startswith(_SOURCE_PREFIX):
        raise Rejected(400, "event source is not a Salesforce partner event source")
    org = envelope.source.removeprefix(_SOURCE_PREFIX).partition("/")[0]
    if len(org) not in (15, 18) or org[:15] != org_id[:15]:
        raise Rejected(403, "event comes from another Salesforce organization")

    header = envelope.detail.payload.ChangeEventHeader
    object_type = OBJECT_TYPES.get(header.entityName)
    echo = is_echo(header.changeOrigin)
    base = ChangeEvent(
        event_id=envelope.id,
        entity=header.entityName,
        change_type=header.changeType,
        record_count=len(header.recordIds),
        echo=echo,
        notices=(),
    )
    if object_type is None or echo:
        return base

    event_key = f"{header.transactionKey}:{header.sequenceNumber}" if header.transactionKey else envelope.id
    version = _iso_ms(header.commitTimestamp) if header.commitTimestamp is not None else None
    real_ids = [rid for rid in header.recordIds if rid != _EMPTY_ID and _SF_ID.match(rid)]
    notices: list[ChangeNotice] = []
    if header.changeType == _OVERFLOW or len(real_ids) != len(header.recordIds):
        # Too many changes to describe, or a key prefix such as "003*" (or the empty id) in place of
        # ids: only the object's catch-up can find what changed.
        notices.append(
            ChangeNotice(
                source="salesforce",
                object_type=object_type,
                kind="catch_up",
                source_version=version,
                provider_event_id=f"{event_key}:catch_up",
                received_at=received_at,
            )
        )
    if header.changeType != _OVERFLOW:
        # The other gap events name real records: re-read them by id, because a change made directly
        # in the database need not move SystemModstamp, so a watermark catch-up could miss it.
        deleted = True if header.changeType in _DELETES else None
        notices.extend(
            ChangeNotice(
                source="salesforce",
                object_type=object_type,
                record_id=record_id,
                source_version=version,
                provider_event_id=f"{event_key}:{record_id}",
                deleted=deleted,
                received_at=received_at,
            )
            for record_id in dict.fromkeys(real_ids)
        )
    return replace(base, notices=tuple(notices))
