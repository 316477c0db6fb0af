"""``Mailbox`` on Google Workspace: People contacts and the primary Calendar.

Contacts are read in bulk with ``people:batchGet`` (200 a call); events one ``events.get`` each (the
Calendar API has no batch read that keeps its error shapes; its HTTP batch endpoint is not used). Writes
are sequential, as Google asks for a user's mutations: contacts in People's batch calls, events one at a
time. Creates are idempotent (a client-chosen event id and a ``clientData`` marker derived from the
Salesforce id) and updates carry the etag last read, so a concurrent edit answers a conflict that the
worker retries after reading again. Event writes never mail
attendees (``sendUpdates=none``): the core only plans them when the user organises the meeting and
invitation mode allows it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from concord.adapters.google import event_id_for
from concord.adapters.http import ConnectorError
from concord.adapters.write_results import failed_write, made_write, write_result
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
        events = self.client.get_events(user, list(ids))
        for event_id in ids:
            event = events.get(event_id)
            found[event_id] = MailboxRecord(event_id, {}, deleted=True) if event is None else self._record(event, "id")
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
        """Contacts in People's batches (creates 200 a call with their markers, updates grouped by the fields
        they change, since one ``updatePersonFields`` applies to a whole call); events one call each."""
        padded = list(keys) + [None] * (len(operations) - len(keys))
        results: list[WriteResult | None] = [None] * len(operations)
        if kind == "contact":
            self._create_people(connection, operations, padded, results)
            self._update_people(connection, operations, results)
        for i, (op, key) in enumerate(zip(operations, padded, strict=True)):
            if results[i] is None:
                results[i] = self._apply_one(connection, kind, op, key)
        return [result for result in results if result is not None]

    def _create_people(
        self,
        connection: Connection,
        operations: Sequence[Operation],
        keys: Sequence[str | None],
        results: list[WriteResult | None],
    ) -> None:
        pairs = enumerate(zip(operations, keys, strict=True))
        creates = [(i, op, key) for i, (op, key) in pairs if op.action == "create" and key]
        if len(creates) < 2:
            return  # one create needs no batch
        try:
            made = self.client.batch_create_contacts(
                connection.mailbox_user,
                [_in_group(connection, op.body) for _, op, _ in creates],
                markers=[str(key) for _, _, key in creates],
            )
        except ConnectorError as exc:
            for i, op, _ in creates:
                results[i] = failed_write(op, exc)
            return
        for (i, op, _), person in zip(creates, made, strict=True):
            results[i] = made_write(op, person, id_key="resourceName", version_keys=("etag",))

    def _update_people(
        self, connection: Connection, operations: Sequence[Operation], results: list[WriteResult | None]
    ) -> None:
        groups: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for i, op in enumerate(operations):
            if op.action == "update" and op.record_id and self._etags.get(op.record_id) and results[i] is None:
                groups[tuple(sorted(op.body))].append(i)
        for fields, indexes in groups.items():
            if len(indexes) < 2:
                continue
            people = {
                str(operations[i].record_id): {**operations[i].body, "etag": self._etags[str(operations[i].record_id)]}
                for i in indexes
            }
            try:
                updated = self.client.batch_update_contacts(connection.mailbox_user, people, fields)
            except ConnectorError as exc:
                for i in indexes:
                    results[i] = failed_write(operations[i], exc)
                continue
            for i in indexes:
                person = updated.get(str(operations[i].record_id))
                if person is not None:
                    results[i] = made_write(operations[i], person, id_key="resourceName", version_keys=("etag",))

    def _apply_one(self, connection: Connection, kind: ObjectKind, op: Operation, key: str | None) -> WriteResult:
        id_key = "resourceName" if kind == "contact" else "id"
        return write_result(op, lambda: self._write(connection, kind, op, key), id_key=id_key, version_keys=("etag",))

    def _write(self, connection: Connection, kind: ObjectKind, op: Operation, key: str | None) -> dict[str, Any] | None:
        user = connection.mailbox_user
        contact = kind == "contact"
        if op.action == "create":
            if contact:
                return self.client.create_contact(user, _in_group(connection, op.body), marker=key)
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


def _in_group(connection: Connection, person: Mapping[str, Any]) -> dict[str, Any]:
    """A new contact joins the connection's sync group: outside it the next read would find it out of
    the connection's scope (Lightning Sync's filter), and a user would not find it where they look."""
    group = connection.options.contact_group
    if group is None:
        return dict(person)
    membership = {"contactGroupMembership": {"contactGroupResourceName": group}}
    return {**person, "memberships": [*person.get("memberships", ()), membership]}
