"""In-memory Salesforce and mailbox systems for the sync service's unit tests: the ``Crm`` and ``Mailbox``
ports with just enough behaviour (ids, versions, required fields, relations, failures on demand) to
drive the service without I/O. The HTTP adapters are tested against the sandboxes instead."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from concord.core import MailboxRecord, Operation, SalesforceRecord, default_mapping
from concord.ports import Connection, CursorExpired, FeedChange, FeedPage, WriteResult

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from datetime import datetime

    from concord.core import ConnectionOptions
    from concord.notices import ChangeNotice, ObjectType

_ids = itertools.count(1)


def _readable(sobject: str) -> list[str]:
    """The top-level Salesforce fields the default mapping reads on ``sobject``."""
    kind = {"Contact": "contact", "Lead": "contact", "Event": "event", "Task": "email"}[sobject]
    rules = default_mapping().compile(kind, sobject, "graph").fields  # type: ignore[arg-type]
    return [path.top for rule in rules for path in rule.sf_paths]


def _stamp() -> str:
    return f"2026-12-04T10:{next(_ids) % 60:02d}:00.000+0000"


class FakeCrm:
    """Salesforce records per sObject; ``fail_next`` makes the next writes fail (transient or not)."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.sobjects: dict[str, str] = {}
        self.deleted: set[str] = set()
        self.relations: dict[str, set[str]] = {}
        self.people_by_email: dict[str, str] = {}
        self.writes: list[Operation] = []
        self.fail_next: list[WriteResult] = []
        self.api_calls = 0
        self.budget: float | None = None  # the share of the daily API limit left, once "known"

    def add(self, sobject: str, **fields: Any) -> str:
        prefix = {"Contact": "003", "Lead": "00Q", "Event": "00U", "Task": "00T", "Account": "001"}[sobject]
        record_id = f"{prefix}{next(_ids):015d}"
        self.records[record_id] = {"Id": record_id, "SystemModstamp": _stamp(), **fields}
        self.sobjects[record_id] = sobject
        if sobject in ("Contact", "Lead") and fields.get("Email"):
            self.people_by_email[str(fields["Email"]).lower()] = record_id
        return record_id

    def fetch(self, sobject: str, ids: Sequence[str]) -> dict[str, SalesforceRecord]:
        self.api_calls += 1
        found = {}
        for record_id in ids:
            if record_id in self.records and self.sobjects[record_id] == sobject:
                # As a SOQL read of every mapped field answers: a readable field with no value is null.
                data = {**dict.fromkeys(_readable(sobject)), **self.records[record_id]}
                found[record_id] = SalesforceRecord(record_id, sobject, data, deleted=record_id in self.deleted)
        return found

    def candidates(self, kind: str, keys: Sequence[Mapping[str, Any]]) -> list[SalesforceRecord]:
        self.api_calls += 1
        emails = {str(k.get("email")).lower() for k in keys if k.get("email")}
        uids = {k.get("ical_uid") for k in keys if k.get("ical_uid")}
        message_ids = {k.get("message_id") for k in keys if k.get("message_id")}
        found = []
        for record_id, data in self.records.items():
            if record_id in self.deleted:
                continue
            sobject = self.sobjects[record_id]
            hit = (
                (kind == "contact" and sobject in ("Contact", "Lead") and str(data.get("Email", "")).lower() in emails)
                or (kind == "event" and sobject == "Event" and data.get("Concord_ICalUID__c") in uids)
                or (kind == "email" and sobject == "Task" and data.get("Concord_Message_ID__c") in message_ids)
            )
            if hit:
                found.append(SalesforceRecord(record_id, sobject, {**dict.fromkeys(_readable(sobject)), **data}))
        return found

    def converted_from(self, contact_ids: Sequence[str]) -> dict[str, str]:
        self.api_calls += 1
        return {
            str(data["ConvertedContactId"]): record_id
            for record_id, data in self.records.items()
            if data.get("ConvertedContactId") in contact_ids
        }

    def people(self, emails: Iterable[str]) -> dict[str, str]:
        self.api_calls += 1
        return {e: self.people_by_email[e] for e in (x.lower() for x in emails) if e in self.people_by_email}

    def apply(self, operations: Sequence[Operation]) -> list[WriteResult]:
        self.api_calls += 1
        results = []
        for op in operations:
            if self.fail_next:
                results.append(self.fail_next.pop(0))
                continue
            self.writes.append(op)
            results.append(self._apply(op))
        return results

    def _apply(self, op: Operation) -> WriteResult:
        if op.action == "create":
            body = {k: v for k, v in op.body.items() if k != "attributes"}
            if op.object_type in ("Contact", "Lead") and not body.get("LastName"):
                return WriteResult(False, error="REQUIRED_FIELD_MISSING: LastName")
            record_id = self.add(op.object_type, **body)
            return WriteResult(True, record_id=record_id, version=self.records[record_id]["SystemModstamp"])
        assert op.record_id is not None
        if op.action == "update":
            self.records[op.record_id].update(op.body)
            self.records[op.record_id]["SystemModstamp"] = _stamp()
            return WriteResult(True, record_id=op.record_id, version=self.records[op.record_id]["SystemModstamp"])
        if op.action == "delete":
            self.deleted.add(op.record_id)
            return WriteResult(True, record_id=op.record_id)
        if op.action == "relate":
            emails = list(op.body.get("emails", ()))
            held = tuple(sorted(e for e in emails if e in self.people_by_email))
            self.relations[op.record_id] = set(held)
            return WriteResult(True, record_id=op.record_id, held=held)
        raise AssertionError(op.action)

    def calls(self) -> int:
        return self.api_calls

    def budget_left(self) -> float | None:
        return self.budget


class FakeMailbox:
    """One provider's mailboxes: items per (mailbox user, kind)."""

    def __init__(self, provider: str = "graph") -> None:
        self.provider = provider
        self.items: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self.writes: list[Operation] = []
        self.fail_next: list[WriteResult] = []
        self.api_calls = 0

    def add(self, user: str, kind: str, **data: Any) -> str:
        item_id = f"AAMk{next(_ids)}"
        self.items.setdefault((user, kind), {})[item_id] = {"id": item_id, "changeKey": f"ck{next(_ids)}", **data}
        return item_id

    def get(self, user: str, kind: str, item_id: str) -> dict[str, Any] | None:
        return self.items.get((user, kind), {}).get(item_id)

    def fetch(self, connection: Connection, kind: str, ids: Sequence[str]) -> dict[str, MailboxRecord]:
        self.api_calls += 1
        box = self.items.get((connection.mailbox_user, kind), {})
        return {i: MailboxRecord(i, dict(box[i])) for i in ids if i in box}

    def candidates(self, connection: Connection, kind: str, keys: Sequence[Mapping[str, Any]]) -> list[MailboxRecord]:
        self.api_calls += 1
        emails = {str(k.get("email")).lower() for k in keys if k.get("email")}
        box = self.items.get((connection.mailbox_user, kind), {})
        return [
            MailboxRecord(i, dict(data))
            for i, data in box.items()
            if any(str(a.get("address", "")).lower() in emails for a in data.get("emailAddresses", []))
        ]

    def apply(
        self, connection: Connection, kind: str, operations: Sequence[Operation], keys: Sequence[str | None] = ()
    ) -> list[WriteResult]:
        self.api_calls += 1
        box = self.items.setdefault((connection.mailbox_user, kind), {})
        results = []
        for op in operations:
            if self.fail_next:
                results.append(self.fail_next.pop(0))
                continue
            self.writes.append(op)
            if op.action == "create":
                item_id = self.add(connection.mailbox_user, kind, **op.body)
                results.append(WriteResult(True, record_id=item_id, version=box[item_id]["changeKey"]))
            elif op.action == "update":
                assert op.record_id is not None
                box[op.record_id].update(op.body)
                box[op.record_id]["changeKey"] = f"ck{next(_ids)}"
                results.append(WriteResult(True, record_id=op.record_id, version=box[op.record_id]["changeKey"]))
            else:
                assert op.record_id is not None
                box.pop(op.record_id, None)
                results.append(WriteResult(True, record_id=op.record_id))
        return results

    def calls(self) -> int:
        return self.api_calls


class FakeDeadLetters:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    def send(self, body: str, reason: str, *, message_id: str, attributes: Mapping[str, str] | None = None) -> None:
        self.sent.append((message_id, reason, body))


@dataclass
class FakeFeed:
    """A mailbox change log: cursor = the sequence number read up to; ``expire`` makes cursors unknown."""

    log: list[tuple[int, str, str, bool]] = field(default_factory=list)  # (seq, object, id, deleted)
    live: dict[str, set[str]] = field(default_factory=dict)
    generation: int = 0  # cursors of an older generation are unknown to the provider
    expire_full_loads: bool = False
    fail_with: Exception | None = None
    api_calls: int = 0
    seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def change(self, object_type: str, record_id: str, *, deleted: bool = False) -> None:
        self.log.append((next(self.seq), object_type, record_id, deleted))
        items = self.live.setdefault(object_type, set())
        (items.discard if deleted else items.add)(record_id)

    def head(self) -> int:
        return self.log[-1][0] if self.log else 0

    def expire(self) -> None:
        self.generation += 1

    def _cursor(self) -> str:
        return f"{self.head()}@{self.generation}"

    def changes(self, connection: Connection, object_type: ObjectType, cursor: str | None, now: datetime) -> FeedPage:
        self.api_calls += 1
        if self.fail_with is not None:
            raise self.fail_with
        if cursor is None:
            if self.expire_full_loads:
                raise CursorExpired("skip token expired during the full load")
            ids = sorted(self.live.get(object_type, set()))
            return FeedPage([FeedChange(i) for i in ids], self._cursor())
        since, generation = (int(part) for part in cursor.split("@"))
        if generation < self.generation:
            raise CursorExpired("delta token expired (410)")
        found = [FeedChange(i, deleted=d) for seq, o, i, d in self.log if seq > since and o == object_type]
        return FeedPage(found, self._cursor())

    def calls(self) -> int:
        return self.api_calls


@dataclass
class FakeCrmFeed:
    """Salesforce records (id → (sobject, owner, SystemModstamp, deleted)) as the watermark query sees them."""

    records: dict[str, tuple[str, str, datetime, bool]] = field(default_factory=dict)
    queries: list[tuple[str, datetime, tuple[str, ...]]] = field(default_factory=list)

    def changed_since(self, sobject: str, since: datetime, owners: Sequence[str]) -> list[FeedChange]:
        self.queries.append((sobject, since, tuple(owners)))
        return [
            FeedChange(i, deleted=deleted, version=stamp.isoformat())
            for i, (s, owner, stamp, deleted) in self.records.items()
            if s == sobject and owner in owners and stamp >= since
        ]

    def owned(self, sobject: str, owner: str, now: datetime, options: ConnectionOptions) -> list[FeedChange]:
        return [
            FeedChange(i, version=stamp.isoformat())
            for i, (s, o, stamp, deleted) in self.records.items()
            if s == sobject and o == owner and not deleted
        ]


class Queue:
    def __init__(self) -> None:
        self.sent: list[ChangeNotice] = []

    def send(self, notices: Sequence[ChangeNotice], /) -> None:
        self.sent.extend(notices)

    def take(self) -> list[ChangeNotice]:
        sent, self.sent = self.sent, []
        return sent
