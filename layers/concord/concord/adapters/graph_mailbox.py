"""``Mailbox`` on Microsoft Graph: contacts (the sync contact folder) and the default calendar.

Reads go through ``$batch`` (20 GETs a call); a 404 there is a deleted item. Writes go through
``$batch`` too: creates through the client's idempotent batch creates (a marker and ``transactionId``
from the Salesforce id, so a lost answer is looked up, never resent blind), updates with ``If-Match``:
an update against an item changed since it was read answers 412, which the worker retries after
reading it again, so a concurrent edit is merged, never overwritten.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from concord.adapters.graph import BatchRequest, BatchResult
from concord.adapters.http import ConnectorError, NotFoundError
from concord.adapters.write_results import failed_write, made_write, write_result
from concord.core import MailboxRecord

if TYPE_CHECKING:
    from collections.abc import Sequence

    from concord.adapters.graph import GraphClient
    from concord.core import ObjectKind, Operation
    from concord.ports import Connection, WriteResult

__all__ = ["GraphMailboxAdapter"]

_UTC = {"Prefer": 'outlook.timezone="UTC"'}


class GraphMailboxAdapter:
    """The worker's view of Microsoft 365 mailboxes (see the module docstring)."""

    def __init__(self, client: GraphClient) -> None:
        self.client = client
        self._etags: dict[str, str] = {}
        self._folders: dict[str, str] = {}

    def calls(self) -> int:
        return self.client.transport.calls

    def _folder(self, connection: Connection) -> str:
        folder = connection.options.contact_folder_id or self._folders.get(connection.mailbox_user)
        if folder is None:
            folder = self._folders[connection.mailbox_user] = self.client.ensure_contact_folder(connection.mailbox_user)
        return folder

    @staticmethod
    def _path(kind: ObjectKind) -> str:
        return {"contact": "contacts", "event": "events", "email": "messages"}[kind]

    def fetch(self, connection: Connection, kind: ObjectKind, ids: Sequence[str]) -> dict[str, MailboxRecord]:
        user = connection.mailbox_user
        requests = [
            BatchRequest(
                str(index),
                "GET",
                f"/users/{user}/{self._path(kind)}/{item_id}",
                headers=_UTC if kind == "event" else {},
            )
            for index, item_id in enumerate(ids)
        ]
        answers = self.client.batch(requests)
        found: dict[str, MailboxRecord] = {}
        for index, item_id in enumerate(ids):
            answer = answers[str(index)]
            if isinstance(answer.error, NotFoundError):
                found[item_id] = MailboxRecord(item_id, {}, deleted=True)
            elif answer.error is not None:
                raise answer.error
            else:
                found[item_id] = self._record(answer.body)
        return found

    def _record(self, data: Mapping[str, Any]) -> MailboxRecord:
        etag = data.get("@odata.etag")
        if isinstance(etag, str):
            self._etags[str(data["id"])] = etag
        return MailboxRecord(str(data["id"]), dict(data))

    def candidates(
        self, connection: Connection, kind: ObjectKind, keys: Sequence[Mapping[str, Any]]
    ) -> list[MailboxRecord]:
        """Contacts of the sync folder, events of the sync window: the core picks the match among them."""
        user = connection.mailbox_user
        if kind == "contact":
            emails = {str(k["email"]).lower() for k in keys if k.get("email")}
            names = {(str(k.get("first_name")).lower(), str(k.get("last_name")).lower()) for k in keys}
            items = self.client.list_contacts(user, self._folder(connection))
            return [
                self._record(item)
                for item in items
                if {str(a.get("address", "")).lower() for a in item.get("emailAddresses") or []} & emails
                or (str(item.get("givenName")).lower(), str(item.get("surname")).lower()) in names
            ]
        if kind == "event":
            options = connection.options
            now = datetime.now(UTC)
            start = now - timedelta(days=options.event_window_past_days or 365)
            end = now + timedelta(days=options.event_window_future_days or 365)
            uids = {k.get("ical_uid") for k in keys if k.get("ical_uid")}
            subjects = {str(k.get("subject")).lower() for k in keys if k.get("subject")}
            return [
                self._record(item)
                for item in self.client.list_events(user, start, end)
                if item.get("iCalUId") in uids or str(item.get("subject")).lower() in subjects
            ]
        return []

    def apply(
        self,
        connection: Connection,
        kind: ObjectKind,
        operations: Sequence[Operation],
        keys: Sequence[str | None] = (),
    ) -> list[WriteResult]:
        """Creates with a key through the client's idempotent batch creates, updates and deletes through
        ``$batch`` (20 a call, ``If-Match`` on each update), anything else one call at a time."""
        padded = list(keys) + [None] * (len(operations) - len(keys))
        results: list[WriteResult | None] = [None] * len(operations)
        pairs = list(zip(operations, padded, strict=True))
        keyed = {key: i for i, (op, key) in enumerate(pairs) if op.action == "create" and key}
        if keyed and kind in ("contact", "event"):
            self._create_in_batch(connection, kind, {key: operations[i] for key, i in keyed.items()}, keyed, results)
        self._write_in_batch(connection, kind, operations, results)
        for i, (op, key) in enumerate(pairs):
            if results[i] is None:
                results[i] = self._apply_one(connection, kind, op, key)
        return [result for result in results if result is not None]

    def _create_in_batch(
        self,
        connection: Connection,
        kind: ObjectKind,
        creates: Mapping[str, Operation],
        index: Mapping[str, int],
        results: list[WriteResult | None],
    ) -> None:
        user = connection.mailbox_user
        bodies = {key: op.body for key, op in creates.items()}
        try:
            if kind == "contact":
                answers = self.client.create_contacts(user, self._folder(connection), bodies)
            else:
                answers = self.client.create_events(user, bodies)
        except ConnectorError as exc:
            for key, op in creates.items():
                results[index[key]] = failed_write(op, exc)
            return
        for key, op in creates.items():
            answer = answers.get(key)
            if answer is None:
                continue  # left for the one-by-one path
            results[index[key]] = self._batch_outcome(op, answer)

    def _write_in_batch(
        self,
        connection: Connection,
        kind: ObjectKind,
        operations: Sequence[Operation],
        results: list[WriteResult | None],
    ) -> None:
        user = connection.mailbox_user
        requests: list[BatchRequest] = []
        for i, op in enumerate(operations):
            if results[i] is not None or op.action not in ("update", "delete") or op.record_id is None:
                continue
            url = f"/users/{user}/{self._path(kind)}/{op.record_id}"
            if op.action == "delete":
                requests.append(BatchRequest(str(i), "DELETE", url))
                continue
            etag = self._etags.get(op.record_id)
            headers = {**(_UTC if kind == "event" else {}), **({"If-Match": etag} if etag else {})}
            requests.append(BatchRequest(str(i), "PATCH", url, body=dict(op.body), headers=headers))
        if not requests:
            return
        try:
            answers = self.client.batch(requests)
        except ConnectorError as exc:
            for request in requests:
                results[int(request.id)] = failed_write(operations[int(request.id)], exc)
            return
        for request in requests:
            op = operations[int(request.id)]
            results[int(request.id)] = self._batch_outcome(op, answers[request.id])

    @staticmethod
    def _batch_outcome(op: Operation, answer: BatchResult) -> WriteResult:
        if answer.error is not None:
            return failed_write(op, answer.error)
        body = answer.body if isinstance(answer.body, Mapping) else None
        return made_write(op, body, id_key="id", version_keys=("changeKey", "@odata.etag"))

    def _apply_one(self, connection: Connection, kind: ObjectKind, op: Operation, key: str | None) -> WriteResult:
        return write_result(
            op, lambda: self._write(connection, kind, op, key), id_key="id", version_keys=("changeKey", "@odata.etag")
        )

    def _write(self, connection: Connection, kind: ObjectKind, op: Operation, key: str | None) -> dict[str, Any] | None:
        user = connection.mailbox_user
        contact = kind == "contact"
        if op.action == "create":
            if contact:
                return self.client.create_contact(user, self._folder(connection), op.body, key=key)
            return self.client.create_event(user, op.body, key=key)
        assert op.record_id is not None
        if op.action == "update":
            etag = self._etags.get(op.record_id)
            update = self.client.update_contact if contact else self.client.update_event
            return update(user, op.record_id, op.body, etag=etag)
        if op.action == "delete":
            (self.client.delete_contact if contact else self.client.delete_event)(user, op.record_id)
            return None
        raise ValueError(f"Graph cannot {op.action} a {kind}")
