"""The sync log on the SyncLog table.

``pk = CONN#<connection_id>``, ``sk = <UTC time, µs>#<entry id>`` (a ULID the store makes when the
entry has none), ``status`` and ``record_key`` for the ``by_status`` and ``by_record`` indexes (both
sorted by ``sk``, i.e. time), ``expires_at`` = the entry's time + ``ttl_s`` (default 30 days).
``reasons`` is a list, ``details`` JSON (it round-trips exactly). Written with BatchWriteItem, 25 a
call, unprocessed items sent again (pynamodb's batch writer does that, with backoff)."""

# pynamodb leaves Index.__init_subclass__ and MapAttribute unannotated; the models below must use them.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from pynamodb.attributes import ListAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from concord.adapters.stores import codec
from concord.adapters.stores._base import DynamoDB, default_dynamodb
from concord.ports import LogEntry

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from concord.ports import LogStatus

__all__ = ["DynamoSyncLog", "LogItem"]


class ByStatus(GlobalSecondaryIndex["LogItem"]):
    class Meta:
        index_name = "by_status"
        projection = AllProjection()

    status = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)


class ByRecord(GlobalSecondaryIndex["LogItem"]):
    class Meta:
        index_name = "by_record"
        projection = AllProjection()

    record_key = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)


class LogItem(Model):
    class Meta:
        table_name = "unbound"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    entry_id = UnicodeAttribute()
    connection_id = UnicodeAttribute()
    status = UnicodeAttribute()
    action = UnicodeAttribute()
    object_type = UnicodeAttribute()
    record_key = UnicodeAttribute()
    source = UnicodeAttribute()
    reason = UnicodeAttribute()
    at = UnicodeAttribute()
    salesforce_id = UnicodeAttribute(null=True)
    mailbox_id = UnicodeAttribute(null=True)
    notice_id = UnicodeAttribute(null=True)
    reasons = ListAttribute[str](null=True)
    details = UnicodeAttribute(null=True)
    expires_at = NumberAttribute()

    by_status = ByStatus()
    by_record = ByRecord()


class DynamoSyncLog:
    """:class:`concord.ports.SyncLog`; ``requests`` counts the DynamoDB API calls this store sent."""

    def __init__(
        self, table_name: str, *, dynamodb: DynamoDB | None = None, ttl_s: int = codec.DEFAULT_LOG_TTL_S
    ) -> None:
        self.table_name = table_name
        self.dynamodb = dynamodb or default_dynamodb()
        self.model = self.dynamodb.bind(LogItem, table_name)
        self.ttl_s = ttl_s

    @property
    def requests(self) -> int:
        return self.dynamodb.requests_to(self.table_name)

    def append(self, entries: Sequence[LogEntry]) -> None:
        with self.model.batch_write() as batch:
            for entry in entries:
                batch.save(self._item(entry))

    def by_connection(self, connection_id: str, *, limit: int = 100) -> list[LogEntry]:
        query = self.model.query(codec.connection_pk(connection_id), scan_index_forward=False, limit=limit)
        return _entries(query)

    def by_status(self, status: LogStatus, *, limit: int = 100) -> list[LogEntry]:
        return _entries(self.model.by_status.query(status, scan_index_forward=False, limit=limit))

    def by_record(self, record_key: str, *, limit: int = 100) -> list[LogEntry]:
        return _entries(self.model.by_record.query(record_key, scan_index_forward=False, limit=limit))

    def _item(self, entry: LogEntry) -> LogItem:
        entry_id = entry.entry_id or codec.new_entry_id(entry.at)
        return self.model(
            codec.connection_pk(entry.connection_id),
            codec.log_sk(entry.at, entry_id),
            entry_id=entry_id,
            connection_id=entry.connection_id,
            status=entry.status,
            action=entry.action,
            object_type=entry.object_type,
            record_key=entry.record_key,
            source=entry.source,
            reason=entry.reason,
            at=entry.at.isoformat(),
            salesforce_id=entry.salesforce_id,
            mailbox_id=entry.mailbox_id,
            notice_id=entry.notice_id,
            reasons=list(entry.reasons),
            details=json.dumps(dict(entry.details), separators=(",", ":"), default=str),
            expires_at=codec.log_expiry(entry.at, self.ttl_s),
        )


def _entries(items: Iterable[LogItem]) -> list[LogEntry]:
    return [_entry(item) for item in items]


def _entry(item: LogItem) -> LogEntry:
    details: dict[str, Any] = json.loads(item.details) if item.details else {}
    return LogEntry(
        connection_id=item.connection_id,
        status=cast("LogStatus", item.status),
        action=item.action,
        object_type=item.object_type,
        record_key=item.record_key,
        source=item.source,
        reason=item.reason,
        at=datetime.fromisoformat(item.at),
        salesforce_id=item.salesforce_id,
        mailbox_id=item.mailbox_id,
        notice_id=item.notice_id,
        reasons=tuple(item.reasons or ()),
        details=details,
        entry_id=item.entry_id,
    )
