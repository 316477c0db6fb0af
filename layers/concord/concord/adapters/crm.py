"""``Crm`` on the Salesforce REST client: the worker's reads and writes, each as few calls as possible.

- **Reads** are SOQL through ``queryAll`` (deleted rows included, so a delete is seen as ``IsDeleted``
  instead of a missing record), ``Id IN (...)`` in chunks that keep the URL short, selecting every field
  the mapping reads (relationship fields as ``Account.Name``, attendee lists as child subqueries).
- **Candidates**: one query per sObject for all the batch's keys (emails, names, iCalendar UIDs), every
  value escaped by :mod:`concord.adapters.soql`.
- **Writes**: sObject Collections, up to 200 records a call, creates and updates per sObject, with
  ``Sforce-Call-Options: client=concord`` (the client sends it) so change events of our own writes are
  recognised. Relations (attendees, an email's people, a Contact's Account) are resolved in bulk: one
  query per sObject for all the addresses, then EventRelation / TaskRelation writes in bulk.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from concord.adapters.http import ConnectorError, TransientError
from concord.adapters.soql import in_list, quote
from concord.core import SalesforceRecord
from concord.ports import WriteResult

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from concord.adapters.salesforce import RecordResult, RelationType, SalesforceClient
    from concord.core import MappingSet, ObjectKind, Operation

__all__ = ["SalesforceCrm"]

_ID_CHUNK = 300  # ids per SOQL IN list: 300 x 21 characters keeps a GET well under 16 KB
_SYSTEM_FIELDS = ("Id", "OwnerId", "IsDeleted", "SystemModstamp", "LastModifiedDate")
_EXTRA_FIELDS = {"Lead": ("IsConverted", "ConvertedContactId"), "Event": ("IsRecurrence2",)}
_CHILD_QUERIES = {
    "EventRelations": "(SELECT RelationId, Relation.Email, IsInvitee FROM EventRelations)",
    "TaskWhoRelations": "(SELECT RelationId, Relation.Email FROM TaskWhoRelations)",
}
_KIND_SOBJECTS: Mapping[ObjectKind, tuple[str, ...]] = {
    "contact": ("Contact", "Lead"),
    "event": ("Event",),
    "email": ("Task",),
}
_PEOPLE = ("Contact", "Lead", "User")
#: The field whose value finds a create that may have happened after an ambiguous failure (timeout, 5xx
#: after commit): the mailbox's iCalendar UID on Events, the email's Message-ID on Tasks.
_MARKERS = {"Event": "Concord_ICalUID__c", "Task": "Concord_Message_ID__c"}


def _result(answer: RecordResult) -> WriteResult:
    if answer.success:
        return WriteResult(True, record_id=answer.id)
    error = "; ".join(f"{e.code}: {e.message}" for e in answer.errors) or "failed"
    return WriteResult(False, record_id=answer.id, error=error, transient=answer.transient)


class SalesforceCrm:
    """The worker's view of Salesforce (see the module docstring)."""

    def __init__(self, client: SalesforceClient, mapping: MappingSet) -> None:
        self.client = client
        self.mapping = mapping
        self._fields: dict[str, str] = {}

    def calls(self) -> int:
        return self.client.calls

    def budget_left(self) -> float | None:
        usage = self.client.api_usage
        if usage is None or usage.limit <= 0:
            return None
        return max(0.0, 1.0 - usage.used / usage.limit)

    # ------------------------------------------------------------ reads

    def select(self, sobject: str) -> str:
        """The SELECT list for ``sobject``: what the mapping reads, plus the system fields."""
        cached = self._fields.get(sobject)
        if cached is not None:
            return cached
        names: list[str] = list(_SYSTEM_FIELDS) + list(_EXTRA_FIELDS.get(sobject, ()))
        for kind, sobjects in _KIND_SOBJECTS.items():
            if sobject not in sobjects:
                continue
            om = self.mapping.compile(kind, sobject, "graph")  # Salesforce paths are the same for any provider
            for rule in om.fields:
                for path in rule.sf_paths:
                    text = path.text
                    names.append(_CHILD_QUERIES.get(text, text))
        select = ", ".join(dict.fromkeys(names))
        self._fields[sobject] = select
        return select

    def fetch(self, sobject: str, ids: Sequence[str]) -> dict[str, SalesforceRecord]:
        found: dict[str, SalesforceRecord] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), _ID_CHUNK):
            chunk = unique[start : start + _ID_CHUNK]
            soql = f"SELECT {self.select(sobject)} FROM {sobject} WHERE Id IN {in_list(chunk)}"
            for row in self.client.query_all(soql):
                found[row["Id"]] = self._record(sobject, row)
        return found

    @staticmethod
    def _record(sobject: str, row: Mapping[str, Any]) -> SalesforceRecord:
        data = {key: value for key, value in row.items() if key != "attributes"}
        return SalesforceRecord(str(row["Id"]), sobject, data, deleted=bool(row.get("IsDeleted")))

    def candidates(self, kind: ObjectKind, keys: Sequence[Mapping[str, Any]]) -> list[SalesforceRecord]:
        if kind == "contact":
            return self._people_candidates(keys)
        if kind == "event":
            return self._event_candidates(keys)
        ids = sorted({str(k["message_id"]) for k in keys if k.get("message_id")})
        if not ids:
            return []
        soql = f"SELECT {self.select('Task')} FROM Task WHERE Concord_Message_ID__c IN {in_list(ids)}"
        return [self._record("Task", row) for row in self.client.query(soql)]

    def converted_from(self, contact_ids: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        unique = list(dict.fromkeys(contact_ids))
        for start in range(0, len(unique), _ID_CHUNK):
            chunk = in_list(unique[start : start + _ID_CHUNK])
            for row in self.client.query(
                f"SELECT Id, ConvertedContactId FROM Lead WHERE ConvertedContactId IN {chunk}"
            ):
                found[str(row["ConvertedContactId"])] = str(row["Id"])
        return found

    def people(self, emails: Iterable[str]) -> dict[str, str]:
        return self._people_by_email({email.lower() for email in emails})

    def _people_candidates(self, keys: Sequence[Mapping[str, Any]]) -> list[SalesforceRecord]:
        emails = sorted({str(k["email"]).lower() for k in keys if k.get("email")})
        names = sorted(
            {(str(k["first_name"]), str(k["last_name"])) for k in keys if k.get("first_name") and k.get("last_name")}
        )
        found: list[SalesforceRecord] = []
        for sobject in ("Contact", "Lead"):
            clauses = []
            if emails:
                clauses.append(f"Email IN {in_list(emails)}")
            clauses += [f"(FirstName = {quote(first)} AND LastName = {quote(last)})" for first, last in names]
            if not clauses:
                continue
            where = " OR ".join(clauses)
            if sobject == "Lead":
                where = f"({where}) AND IsConverted = false"
            soql = f"SELECT {self.select(sobject)} FROM {sobject} WHERE {where}"
            found += [self._record(sobject, row) for row in self.client.query(soql)]
        return found

    def _event_candidates(self, keys: Sequence[Mapping[str, Any]]) -> list[SalesforceRecord]:
        uids = sorted({str(k["ical_uid"]) for k in keys if k.get("ical_uid")})
        spans = sorted(
            {(str(k["subject"]), str(k["start"]), str(k["end"])) for k in keys if k.get("subject") and k.get("start")}
        )
        clauses = [f"Concord_ICalUID__c IN {in_list(uids)}"] if uids else []
        clauses += [
            f"(Subject = {quote(subject)} AND StartDateTime = {start})" for subject, start, _ in spans if "T" in start
        ]
        if not clauses:
            return []
        soql = f"SELECT {self.select('Event')} FROM Event WHERE {' OR '.join(clauses)}"
        return [self._record("Event", row) for row in self.client.query(soql)]

    # ------------------------------------------------------------ writes

    def apply(self, operations: Sequence[Operation]) -> list[WriteResult]:
        results: list[WriteResult | None] = [None] * len(operations)
        groups: dict[tuple[str, str], list[int]] = defaultdict(list)
        relates: list[int] = []
        for index, op in enumerate(operations):
            if op.action == "relate":
                relates.append(index)
            else:
                groups[(op.action, op.object_type)].append(index)
        for (action, sobject), indexes in groups.items():
            self._write_group(action, sobject, [operations[i] for i in indexes], indexes, results)
        if relates:
            self._relate([operations[i] for i in relates], relates, results)
        return [result or WriteResult(False, error="not executed") for result in results]

    def _write_group(
        self,
        action: str,
        sobject: str,
        ops: list[Operation],
        indexes: list[int],
        results: list[WriteResult | None],
    ) -> None:
        try:
            if action == "create":
                records = [dict(op.body) for op in ops]
                marker = _MARKERS.get(sobject)
                if marker is None or not all(record.get(marker) for record in records):
                    marker = None  # without a marker an ambiguous failure is reported, never resent
                answers = self.client.create(sobject, records, marker=marker)
            elif action == "update":
                answers = self.client.update(sobject, [{**op.body, "Id": op.record_id} for op in ops])
            elif action == "delete":
                answers = self.client.delete([op.record_id or "" for op in ops])
            else:
                raise ValueError(f"unknown Salesforce action {action!r}")
        except ConnectorError as exc:
            for index in indexes:
                results[index] = _failure(exc)
            return
        for index, answer in zip(indexes, answers, strict=True):
            results[index] = _result(answer)

    def _relate(self, ops: list[Operation], indexes: list[int], results: list[WriteResult | None]) -> None:
        """Resolve every address and Account name at once, then write the relations in bulk: one query of
        the current relations, one create and one delete call per relation type, one Account update."""
        accounts_ops = [(op, i) for op, i in zip(ops, indexes, strict=True) if op.body.get("relation") == "Account"]
        people_ops = [(op, i) for op, i in zip(ops, indexes, strict=True) if op.body.get("relation") != "Account"]
        try:
            self._relate_accounts(accounts_ops, results)
            people = self._people_by_email({e for op, _ in people_ops for e in op.body.get("emails", ())})
            for relation in ("EventRelation", "TaskRelation"):
                group = [(op, i) for op, i in people_ops if _relation_of(op) == relation]
                if group:
                    self._relate_people(relation, group, people, results)
        except ConnectorError as exc:
            for index in indexes:
                if results[index] is None:
                    results[index] = _failure(exc)

    def _relate_accounts(self, pairs: list[tuple[Operation, int]], results: list[WriteResult | None]) -> None:
        """A Contact's company is its Account: the one Account of that name, never a guess between two."""
        if not pairs:
            return
        accounts = self._accounts_by_name({str(op.body["name"]) for op, _ in pairs})
        updates: list[tuple[Operation, int, str]] = []
        for op, index in pairs:
            found = accounts.get(str(op.body.get("name") or "").casefold(), [])
            if len(found) == 1:
                updates.append((op, index, found[0]))
            else:
                why = "no Account" if not found else f"{len(found)} Accounts"
                note = f"company: {why} of that name; the Contact keeps its Account"
                results[index] = WriteResult(True, record_id=op.record_id, declined=True, note=note)
        by_sobject: dict[str, list[tuple[Operation, int, str]]] = defaultdict(list)
        for update in updates:
            by_sobject[update[0].object_type].append(update)
        for sobject, group in by_sobject.items():
            records = [{"Id": op.record_id, str(op.body["field"]): account} for op, _, account in group]
            for (_, index, _), answer in zip(group, self.client.update(sobject, records), strict=True):
                results[index] = _result(answer)

    def _relate_people(
        self,
        relation: RelationType,
        pairs: list[tuple[Operation, int]],
        people: Mapping[str, str],
        results: list[WriteResult | None],
    ) -> None:
        """Make each activity relate exactly the people its operation names who exist in Salesforce; the
        owner's and other Users' relations are never removed."""
        parent = "EventId" if relation == "EventRelation" else "TaskId"
        parents = [str(op.record_id) for op, _ in pairs]
        current: dict[str, dict[str, str]] = defaultdict(dict)  # activity → relation id → row id
        for start in range(0, len(parents), _ID_CHUNK):
            chunk = in_list(parents[start : start + _ID_CHUNK])
            soql = f"SELECT Id, {parent}, RelationId FROM {relation} WHERE {parent} IN {chunk}"
            for row in self.client.query(soql):
                current[str(row[parent])][str(row["RelationId"])] = str(row["Id"])
        adds: list[tuple[str, str]] = []
        removes: list[tuple[str, str]] = []  # (activity, relation row id)
        for op, _ in pairs:
            activity = str(op.record_id)
            target = {people[email] for email in op.body.get("emails", ()) if email in people}
            have = current[activity]
            adds += [(activity, rid) for rid in sorted(target - set(have))]
            removes += [(activity, have[rid]) for rid in sorted(set(have) - target) if not rid.startswith("005")]
        failed: dict[str, str] = {}
        if adds:
            for (activity, _), answer in zip(adds, self.client.relate(relation, adds), strict=True):
                if not answer.success:
                    failed.setdefault(activity, f"{relation}: {_result(answer).error}")
        if removes:
            answers = self.client.delete([row for _, row in removes])
            for (activity, _), answer in zip(removes, answers, strict=True):
                if not answer.success:
                    failed.setdefault(activity, f"{relation}: {_result(answer).error}")
        for op, index in pairs:
            activity = str(op.record_id)
            if activity in failed:
                results[index] = WriteResult(False, record_id=activity, error=failed[activity])
            else:
                held = tuple(sorted(e for e in op.body.get("emails", ()) if e in people))
                results[index] = WriteResult(True, record_id=activity, held=held)

    def _people_by_email(self, emails: set[str]) -> dict[str, str]:
        """Address → Contact, else Lead, else User id (the first sObject that has it wins)."""
        found: dict[str, str] = {}
        if not emails:
            return found
        for sobject in _PEOPLE:
            rest = sorted(e for e in emails if e not in found)
            if not rest:
                break
            extra = " AND IsConverted = false" if sobject == "Lead" else ""
            for row in self.client.query(f"SELECT Id, Email FROM {sobject} WHERE Email IN {in_list(rest)}{extra}"):
                email = str(row.get("Email") or "").lower()
                found.setdefault(email, str(row["Id"]))
        return found

    def _accounts_by_name(self, names: set[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = defaultdict(list)
        if names:
            for row in self.client.query(f"SELECT Id, Name FROM Account WHERE Name IN {in_list(sorted(names))}"):
                found[str(row["Name"]).casefold()].append(str(row["Id"]))
        return found


def _relation_of(op: Operation) -> RelationType:
    return "EventRelation" if op.body.get("relation") == "EventRelations" else "TaskRelation"


def _failure(exc: ConnectorError) -> WriteResult:
    transient = isinstance(exc, TransientError)
    return WriteResult(False, error=str(exc), transient=transient, retry_after=getattr(exc, "retry_after", None))
