"""``Mailbox`` on Google Workspace: People contacts and the primary Calendar.

Contacts are read in bulk with ``people:batchGet`` (200 a call); events one ``events.get`` each (the
Calendar API has no batch read that keeps its error shapes; its HTTP batch endpoint is not used). Writes
go one at a time, sequentially, as Google asks for a user's mutations; creates are idempotent (a
client-chosen event id, a ``clientData`` marker on people) and updates carry the etag last read, so a
concurrent edit answers a conflict that the worker retries after reading again. Event writes never mail
attendees (``sendUpdates=none``): the core only plans them when the user organises the meeting and
invitation mode allows it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from concord.adapters.google import event_id_for
from concord.adapters.http import NotFoundError
from concord.adapters.write_results import write_result
from concord.core import MailboxRecord

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from concord.adapters.google import GoogleClient
    from concord.core import ObjectKind, Operation
    from concord.ports import Connection, WriteResult

__all__ = ["GoogleMailboxAdapter"]


class GoogleMailboxAdapter:
    """The worker's view of Google mailboxes (see the module docstring)."""

    def __init__(self, client: GoogleClient) -> None:
        self.client = client
        self._etags: dict[str, str] = {}
        self._people: dict[str, dict[str, Any]] = {}

    def calls(self) -> int:
        return self.client.transport.calls + self.client._token_transport.calls

    def fetch(self, connection: Connection, kind: ObjectKind, ids: Sequence[str]) -> dict[str, MailboxRecord]:
        user = connection.mailbox_user
        found: dict[str, MailboxRecord] = {}
        if kind == "contact":
            people = self.client.batch_get_contacts(user, list(ids))
            for resource_name in ids:
                person = people.get(resource_name)
                if person is None or (person.get("metadata") or {}).get("deleted"):
                    found[resource_name] = MailboxRecord(resource_name, {}, deleted=True)
                else:
                    found[resource_name] = self._record(person, "resourceName")
            return found
        if kind == "email":
            messages = self.client.get_messages(user, list(ids))
            for message_id in ids:
                message = messages.get(message_id)
                found[message_id] = (
                    MailboxRecord(message_id, {}, deleted=True) if message is None else self._record(message, "id")
                )
            return found
        for event_id in ids:
            try:
                event = self.client.get_event(user, event_id)
            except NotFoundError:
                found[event_id] = MailboxRecord(event_id, {}, deleted=True)
                continue
            found[event_id] = self._record(event, "id")
        return found

    def _record(self, data: Mapping[str, Any], id_key: str) -> MailboxRecord:
        record_id = str(data[id_key])
        etag = data.get("etag")
        if isinstance(etag, str):
            self._etags[record_id] = etag
        return MailboxRecord(record_id, dict(data))

    def candidates(
        self, connection: Connection, kind: ObjectKind, keys: Sequence[Mapping[str, Any]]
    ) -> list[MailboxRecord]:
        user = connection.mailbox_user
        if kind == "contact":
            emails = {str(k["email"]).lower() for k in keys if k.get("email")}
            everyone = self.client.list_contacts(user).items
            return [
                self._record(person, "resourceName")
                for person in everyone
                if {str(e.get("value", "")).lower() for e in person.get("emailAddresses") or []} & emails
            ]
        if kind == "event":
            found: list[MailboxRecord] = []
            for uid in sorted({str(k["ical_uid"]) for k in keys if k.get("ical_uid")}):
                found += [self._record(e, "id") for e in self.client.list_events(user, ical_uid=uid).items]
            return found
        return []

    def apply(
        self,
        connection: Connection,
        kind: ObjectKind,
        operations: Sequence[Operation],
        keys: Sequence[str | None] = (),
    ) -> list[WriteResult]:
        padded = list(keys) + [None] * (len(operations) - len(keys))
        return [self._apply_one(connection, kind, op, key) for op, key in zip(operations, padded, strict=True)]

    def _apply_one(self, connection: Connection, kind: ObjectKind, op: Operation, key: str | None) -> WriteResult:
        id_key = "resourceName" if kind == "contact" else "id"
        return write_result(op, lambda: self._write(connection, kind, op, key), id_key=id_key, version_keys=("etag",))

    def _write(self, connection: Connection, kind: ObjectKind, op: Operation, key: str | None) -> dict[str, Any] | None:
        user = connection.mailbox_user
        contact = kind == "contact"
        if op.action == "create":
            if contact:
                return self.client.create_contact(user, op.body, marker=key)
            return self.client.insert_event(user, op.body, event_id=event_id_for(key) if key else None)
        assert op.record_id is not None
        if op.action == "update":
            etag = self._etags.get(op.record_id)
            if contact:
                return self.client.update_contact(user, op.record_id, {**op.body, "etag": etag}, list(op.body))
            return self.client.patch_event(user, op.record_id, op.body, etag=etag)
        if op.action == "delete":
            (self.client.delete_contact if contact else self.client.delete_event)(user, op.record_id)
            return None
        raise ValueError(f"Google cannot {op.action} a {kind}")
