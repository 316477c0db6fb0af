"""One batch of change notices, end to end: the sync worker's use case.

:meth:`SyncService.handle` takes the SQS messages of one invocation and returns which to retry and which
went to the dead-letter queue. In between, for all the batch's notices together (so every read and write
is a bulk call):

1. **Decode** each message (a body that is not notices goes to the DLQ at once) and drop duplicate
   notices; group the rest into *items*, one per record pair, per connection and object kind.
2. **Connections**: a mailbox notice names its connection; a Salesforce notice names none, so the record
   is read first and its owner's connections found. A suspended connection's notices are logged as
   skipped; one that needs re-authorisation parks its notices in the DLQ with that reason.
3. **Links** for every item, in one BatchGetItem per 100 keys (by either side's id, strongly consistent).
4. **Records** of both sides in bulk: Salesforce per sObject, the mailbox per connection and kind.
5. **Candidates** for unlinked records, in bulk (one Salesforce query per kind for the whole batch), less
   those already linked: matching always comes before creating.
6. **Plans** from the pure core, one per item; a plan never runs twice for one record in a batch.
7. **Guard**: planned deletes are counted per connection over a rolling window in the store (not per
   batch); past the limits they are held (logged ``held``) until on-call approves.
8. **Claims**: before a create, the new link is stored (lock version 0, by the source's id), so two
   workers that see the same new record cannot both create it: the loser retries later and then finds
   the link. A claim left by a worker that died is taken over after :data:`CLAIM_LEASE_S`, and the
   create it may have made is found by matching (and by the adapters' idempotent creates).
9. **Execute** writes coalesced per side, then relations (they need the ids creates returned).
10. **Store** each link with its optimistic lock; a lost lock re-reads and re-plans that item once.
11. **Log** one entry per item: what was done or not, and every per-field reason the core gave.

Failures: a transient one (429, 5xx, timeouts, lock contention) retries the item's messages through
SQS; a permanent one (validation, a mapping that cannot apply) is logged ``failed`` and its messages go
to the DLQ at once with the reason. One bad record never fails its batch-mates.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from concord.adapters.http import ConnectorError, TransientError
from concord.core import LinkState, MappingSet, default_mapping, plan
from concord.core.matching import MATCH_KEYS
from concord.core.transforms import Context
from concord.notices import MalformedMessage, decode_message
from concord.ports import LinkConflict, LinkKey, LogEntry, StoredLink

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from concord.core import (
        ConnectionOptions,
        MailboxRecord,
        ObjectKind,
        Operation,
        Plan,
        SalesforceRecord,
    )
    from concord.notices import ChangeNotice
    from concord.ports import (
        Connection,
        ConnectionStore,
        Crm,
        DeadLetters,
        LinkStore,
        LogStatus,
        Mailbox,
        SyncLog,
        WriteResult,
    )
    from concord.service.catchup import CatchUpOutcome, CatchUpService
    from concord.service.channels import ChannelsService

__all__ = ["CLAIM_LEASE_S", "BatchOutcome", "QueueMessage", "SyncService"]

#: How long a create's claim protects it; after that the claim is taken over (its worker died).
CLAIM_LEASE_S = 300
#: Stop starting new work when less than this many seconds of the invocation remain.
TIME_MARGIN_S = 10.0
#: The rolling window over which planned deletes are counted per connection and kind.
DELETE_WINDOW_S = 3600

_KIND_OF: Mapping[str, ObjectKind] = {
    "contact": "contact",
    "lead": "contact",
    "event": "event",
    "task": "email",
    "email": "email",
}
_SOBJECT_OF: Mapping[str, str] = {"contact": "Contact", "lead": "Lead", "event": "Event", "task": "Task"}


@dataclass(frozen=True, slots=True)
class QueueMessage:
    """One SQS message of the batch: its id (what a batch item failure names), body and receive count."""

    message_id: str
    body: str
    receive_count: int = 1


@dataclass
class BatchOutcome:
    """What the handler reports: messages to retry (with a delay hint in seconds, ``None``: the
    queue's own backoff), messages already sent to the DLQ (with the reason), and what was logged."""

    retry: dict[str, float | None] = field(default_factory=dict)
    dead_lettered: dict[str, str] = field(default_factory=dict)
    entries: list[LogEntry] = field(default_factory=list)
    #: records written, per (object kind, ``to_salesforce`` | ``to_mailbox``)
    written: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: fields whose changes on both sides were settled by a conflict policy
    conflicts: int = 0
    #: seconds from the oldest synced notice's arrival to its write (the sync lag on-call watches)
    lag_s: float | None = None
    #: API calls this batch made, per system (``salesforce``, ``graph``, ``google``)
    calls: Counter[str] = field(default_factory=Counter)
    #: what the batch's ``catch_up`` notices did (queued, re-syncs, alarms, drift), if it had any
    catch_up: CatchUpOutcome | None = None

    def count(self, status: LogStatus) -> int:
        return sum(1 for entry in self.entries if entry.status == status)


@dataclass
class _Item:
    """One record pair to sync for one connection: what the notices named, then what was read."""

    connection: Connection
    kind: ObjectKind
    source: str
    notice: ChangeNotice
    messages: set[str]
    salesforce_id: str | None = None
    sobject: str | None = None
    mailbox_id: str | None = None
    stored: StoredLink | None = None
    salesforce: SalesforceRecord | None = None
    mailbox: MailboxRecord | None = None
    candidates: list[Any] = field(default_factory=list)
    plan: Plan | None = None
    claim: StoredLink | None = None
    org_claim: StoredLink | None = None
    failure: str | None = None
    transient: bool = False
    retry_after: float | None = None
    held: str | None = None
    #: why the worker, not the core, decided to leave this record alone (emails nobody in Salesforce is in)
    skip: str | None = None
    results: list[tuple[Operation, WriteResult]] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, str, str]:
        """Identity within a batch: the Salesforce id when known, else the mailbox id."""
        if self.salesforce_id is not None:
            return (self.connection.connection_id, self.kind, "salesforce", self.salesforce_id)
        return (self.connection.connection_id, self.kind, "mailbox", self.mailbox_id or "")

    def fail(self, reason: str, *, transient: bool, retry_after: float | None = None) -> None:
        if self.failure is None or (self.transient and not transient):
            self.failure, self.transient = reason, transient
        if retry_after is not None:
            self.retry_after = max(self.retry_after or 0.0, retry_after)


class SyncService:
    """The worker's use case, built once per process by ``bootstrap`` (tests build it with fakes)."""

    def __init__(
        self,
        *,
        crm: Crm,
        mailboxes: Mapping[str, Mailbox],
        links: LinkStore,
        connections: ConnectionStore,
        log: SyncLog,
        dead_letters: DeadLetters,
        mapping: MappingSet | None = None,
        catch_up: CatchUpService | None = None,
        channels: ChannelsService | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.crm = crm
        self.catch_up = catch_up
        self.channels = channels
        self.mailboxes = mailboxes
        self.links = links
        self.connections = connections
        self.log = log
        self.dead_letters = dead_letters
        self.mapping = mapping or default_mapping()
        self.clock = clock

    # ------------------------------------------------------------ the batch

    def handle(self, messages: Sequence[QueueMessage], time_left: Callable[[], float] = lambda: 900.0) -> BatchOutcome:
        """Sync one batch; see the module docstring for the steps."""
        outcome = BatchOutcome()
        now = self.clock()
        calls_before = self._calls()
        bodies = {message.message_id: message.body for message in messages}
        notices = self._decode(messages, outcome)
        self._scheduled_work([(m, n) for m, n in notices if n.kind != "change"], outcome, now)
        items = self._items(notices, outcome, now)
        if items and time_left() > TIME_MARGIN_S:
            self._sync(items, now, time_left, replan=True)
        elif items:
            for item in items:
                item.fail("the invocation ran out of time before this record was synced", transient=True)
        self._finish(items, outcome, bodies, now)
        outcome.calls = self._calls() - calls_before
        return outcome

    def _scheduled_work(self, notices: list[tuple[str, ChangeNotice]], outcome: BatchOutcome, now: datetime) -> None:
        """``catch_up`` notices go to the catch-up (what it finds comes back as ``change`` notices),
        ``reauthorize`` and ``recreate_subscription`` to the channels; a catch-up that failed transiently
        hands its message back. Without those services (a worker built for changes only) they go to the
        DLQ with the reason, to be redriven."""
        catch_ups = [(m, n) for m, n in notices if n.kind == "catch_up"]
        channel_work = [(m, n) for m, n in notices if n.kind != "catch_up"]
        for message_id, notice in (catch_ups if self.catch_up is None else []) + (
            channel_work if self.channels is None else []
        ):
            self._dead_letter(
                outcome, message_id, None, f"this worker has no service for {notice.kind} notices", notice=notice
            )
        if self.catch_up is not None and catch_ups:
            done = self.catch_up.handle([n for _, n in catch_ups])
            outcome.entries.extend(done.entries)
            outcome.catch_up = done
            for message_id, notice in catch_ups:
                if notice.id in done.retry:
                    delay = max(outcome.retry.get(message_id) or 0.0, done.retry[notice.id] or 0.0) or None
                    outcome.retry[message_id] = delay
        if self.channels is not None:
            for _, notice in channel_work:
                result = self.channels.handle_notice(notice)
                failed = "; ".join(f.reason for f in result.failures)
                status: LogStatus = "failed" if failed else "synced"
                reason = failed or f"{notice.kind}: " + ", ".join(f"{k} {v}" for k, v in result.summary().items() if v)
                outcome.entries.append(self._entry_for_notice(notice, status, reason or notice.kind, now))

    def _calls(self) -> Counter[str]:
        calls = Counter({"salesforce": self.crm.calls()})
        for provider, mailbox in self.mailboxes.items():
            calls[provider] += mailbox.calls()
        return calls

    def _decode(self, messages: Sequence[QueueMessage], outcome: BatchOutcome) -> list[tuple[str, ChangeNotice]]:
        seen: set[tuple[Any, ...]] = set()
        notices: list[tuple[str, ChangeNotice]] = []
        for message in messages:
            try:
                decoded = decode_message(message.body)
            except MalformedMessage as exc:
                self._dead_letter(outcome, message.message_id, message.body, f"malformed message: {exc}")
                continue
            for notice in decoded:
                identity = (
                    notice.source,
                    notice.connection_id,
                    notice.object_type,
                    notice.kind,
                    notice.record_id,
                    notice.resync,
                )
                if identity in seen:
                    continue
                seen.add(identity)
                notices.append((message.message_id, notice))
        return notices

    def _items(self, notices: list[tuple[str, ChangeNotice]], outcome: BatchOutcome, now: datetime) -> list[_Item]:
        """Notices to items, with their connections resolved (step 2)."""
        items: dict[tuple[str, str, str, str], _Item] = {}
        sf_notices: list[tuple[str, ChangeNotice]] = []
        mb_notices: list[tuple[str, ChangeNotice]] = []
        for message_id, notice in notices:
            if notice.kind != "change":
                continue  # catch-up and channel work: _scheduled_work
            elif notice.source == "salesforce":
                sf_notices.append((message_id, notice))
            else:
                mb_notices.append((message_id, notice))
        connections = self.connections.get_many({n.connection_id for _, n in mb_notices if n.connection_id})
        for message_id, notice in mb_notices:
            connection = connections.get(notice.connection_id or "")
            if connection is None:
                outcome.entries.append(
                    self._entry_for_notice(notice, "skipped", "the connection no longer exists", now)
                )
                continue
            self._add(items, connection, notice, message_id, outcome, now, mailbox_id=notice.record_id)
        self._salesforce_items(sf_notices, items, outcome, now)
        return list(items.values())

    def _salesforce_items(
        self,
        sf_notices: list[tuple[str, ChangeNotice]],
        items: dict[tuple[str, str, str, str], _Item],
        outcome: BatchOutcome,
        now: datetime,
    ) -> None:
        """A Salesforce record syncs to its owner's connections: read the records to learn the owners."""
        by_sobject: dict[str, set[str]] = defaultdict(set)
        for _, notice in sf_notices:
            by_sobject[_SOBJECT_OF.get(notice.object_type, "Task")].add(notice.record_id or "")
        records: dict[str, SalesforceRecord] = {}
        unread: set[str] = set()
        for sobject, ids in by_sobject.items():
            try:
                records.update(self.crm.fetch(sobject, sorted(ids)))
            except ConnectorError as exc:
                unread |= ids
                self._unread(outcome, [(m, n) for m, n in sf_notices if n.record_id in ids], exc, now)
        sf_notices = [(m, n) for m, n in sf_notices if n.record_id not in unread]
        owners = {str(r.data.get("OwnerId")) for r in records.values() if r.data.get("OwnerId")}
        connections = self.connections.by_salesforce_user(sorted(owners)) if owners else {}
        for message_id, notice in sf_notices:
            record = records.get(notice.record_id or "")
            if record is None:
                reason = "the Salesforce record does not exist (never synced, or purged from the recycle bin)"
                outcome.entries.append(self._entry_for_notice(notice, "skipped", reason, now))
                continue
            owned = connections.get(str(record.data.get("OwnerId")), [])
            if not owned:
                reason = "the record's owner has no connection"
                outcome.entries.append(self._entry_for_notice(notice, "skipped", reason, now))
                continue
            for connection in owned:
                item = self._add(
                    items, connection, notice, message_id, outcome, now, salesforce_id=record.id, sobject=record.sobject
                )
                if item is not None:
                    item.salesforce = record

    def _unread(
        self, outcome: BatchOutcome, notices: list[tuple[str, ChangeNotice]], exc: ConnectorError, now: datetime
    ) -> None:
        """Salesforce could not be read for these notices: a transient failure hands their messages back,
        any other (a refused login, a query Salesforce rejects) sends them to the DLQ with the reason."""
        for message_id, notice in notices:
            if isinstance(exc, TransientError):
                delay = max(outcome.retry.get(message_id) or 0.0, exc.retry_after or 0.0) or None
                outcome.retry[message_id] = delay
                outcome.entries.append(self._entry_for_notice(notice, "failed", f"will retry: {exc}", now))
            else:
                self._dead_letter(outcome, message_id, None, str(exc), notice=notice)

    def _add(
        self,
        items: dict[tuple[str, str, str, str], _Item],
        connection: Connection,
        notice: ChangeNotice,
        message_id: str,
        outcome: BatchOutcome,
        now: datetime,
        **ids: Any,
    ) -> _Item | None:
        if connection.status == "suspended":
            outcome.entries.append(self._entry_for_notice(notice, "skipped", "the connection is suspended", now))
            return None
        if connection.status == "needs_reauth":
            self._dead_letter(
                outcome,
                message_id,
                None,
                "the connection needs re-authorisation; redrive after it is re-authorised",
                notice=notice,
            )
            return None
        item = _Item(connection, _KIND_OF[notice.object_type], notice.source, notice, {message_id}, **ids)
        existing = items.get(item.key)
        if existing is not None:
            existing.messages.add(message_id)
            return existing
        items[item.key] = item
        return item

    # ------------------------------------------------------------ read, plan, write

    def _sync(self, items: list[_Item], now: datetime, time_left: Callable[[], float], *, replan: bool) -> None:
        self._load_links(items)
        items[:] = self._merge_same_links(items)
        self._fetch(items)
        items[:] = self._merge_same_links(items)  # a converted Lead's item may now be its Contact's
        self._find_candidates(items)
        for item in items:
            self._plan(item, now)
        items[:] = self._one_plan_per_record(items)
        self._keep_emails_to_known_people(items)
        self._guard(items, now)
        if time_left() <= TIME_MARGIN_S:
            for item in items:
                item.fail("the invocation ran out of time before this record was written", transient=True)
            return
        self._claim(items, now)
        self._execute(items)
        conflicted = self._store(items, now)
        self._release_org_claims(items)
        if conflicted and replan:
            for item in conflicted:
                item.stored = item.claim = item.plan = None
                item.failure, item.transient = None, False
            self._sync(conflicted, now, time_left, replan=False)
        for item in conflicted if not replan else ():
            item.fail("another worker stored this link at the same time", transient=True)

    def _load_links(self, items: list[_Item]) -> None:
        keys = {self._own_key(item): item for item in items}
        found = self.links.get_many(keys)
        for key, item in keys.items():
            item.stored = found.get(key)

    @staticmethod
    def _own_key(item: _Item) -> LinkKey:
        side: Literal["salesforce", "mailbox"] = "salesforce" if item.salesforce_id else "mailbox"
        record_id = item.salesforce_id or item.mailbox_id or ""
        return LinkKey(item.connection.connection_id, item.kind, side, record_id)

    @staticmethod
    def _merge_same_links(items: list[_Item]) -> list[_Item]:
        """Fill in each item's other id from its link; two notices of one linked pair become one item."""
        merged: dict[tuple[str, str, str, str], _Item] = {}
        for item in items:
            link = item.stored.link if item.stored is not None else None
            if link is not None:
                item.salesforce_id = item.salesforce_id or link.salesforce_id
                item.sobject = item.sobject or link.salesforce_object
                item.mailbox_id = item.mailbox_id or link.mailbox_id
            twin = merged.get(item.key)
            if twin is None:
                merged[item.key] = item
                continue
            twin.messages |= item.messages
            twin.stored = twin.stored or item.stored
            twin.mailbox_id = twin.mailbox_id or item.mailbox_id
            twin.salesforce = twin.salesforce or item.salesforce
            twin.mailbox = twin.mailbox or item.mailbox
        return list(merged.values())

    def _fetch(self, items: list[_Item]) -> None:
        self._fetch_salesforce([item for item in items if item.salesforce_id and item.salesforce is None])
        self._follow_converted_leads(items)
        by_mailbox: dict[tuple[str, ObjectKind], list[_Item]] = defaultdict(list)
        for item in items:
            if item.mailbox_id:
                by_mailbox[(item.connection.connection_id, item.kind)].append(item)
        for (_, kind), group in by_mailbox.items():
            connection = group[0].connection
            mailbox = self.mailboxes[connection.provider]
            wanted_ids = sorted({item.mailbox_id for item in group if item.mailbox_id})
            records = self._guarded(group, mailbox.fetch, connection, kind, wanted_ids) or {}
            for item in group:
                item.mailbox = records.get(item.mailbox_id or "")

    def _fetch_salesforce(self, items: list[_Item]) -> None:
        """One read per sObject for all these items; a failed read fails only its sObject's items."""
        by_sobject: dict[str, list[_Item]] = defaultdict(list)
        for item in items:
            by_sobject[item.sobject or _default_sobject(item)].append(item)
        for sobject, group in by_sobject.items():
            ids = sorted({item.salesforce_id for item in group if item.salesforce_id})
            found = self._guarded(group, self.crm.fetch, sobject, ids) or {}
            for item in group:
                item.salesforce = found.get(item.salesforce_id or "")

    def _follow_converted_leads(self, items: list[_Item]) -> None:
        """A linked Lead that was converted is followed to its Contact: the link moves to the Contact (the
        store re-keys it), so no update ever meets ``CANNOT_UPDATE_CONVERTED_LEAD``. The Contact's own
        notice may come first: an unlinked Contact made by a conversion takes over its Lead's link, or it
        would miss its mailbox twin (linked to the Lead) and create a second one."""
        self._adopt_converted_leads_links(items)
        for item in items:
            record = item.salesforce
            if (
                item.stored is None
                and record is not None
                and record.sobject == "Lead"
                and record.data.get("IsConverted")
            ):
                item.skip = "a converted Lead is read-only; its Contact syncs instead"
        converted = [
            item
            for item in items
            if item.salesforce is not None
            and item.salesforce.sobject == "Lead"
            and item.salesforce.data.get("IsConverted")
            and item.salesforce.data.get("ConvertedContactId")
            and item.stored is not None
        ]
        if not converted:
            return
        for item in converted:
            assert item.salesforce is not None and item.stored is not None
            contact_id = str(item.salesforce.data["ConvertedContactId"])
            link = replace(item.stored.link, salesforce_object="Contact", salesforce_id=contact_id)
            item.stored = replace(item.stored, link=link)
            item.salesforce_id, item.sobject, item.salesforce = contact_id, "Contact", None
        self._fetch_salesforce(converted)

    def _adopt_converted_leads_links(self, items: list[_Item]) -> None:
        orphans = [
            item
            for item in items
            if item.stored is None
            and item.kind == "contact"
            and item.salesforce is not None
            and item.salesforce.sobject == "Contact"
            and not item.salesforce.deleted
        ]
        if not orphans:
            return
        leads = self._guarded(orphans, self.crm.converted_from, [item.salesforce_id for item in orphans]) or {}
        keys = {
            id(item): LinkKey(item.connection.connection_id, "contact", "salesforce", leads[item.salesforce_id])
            for item in orphans
            if item.salesforce_id in leads
        }
        found = self.links.get_many(keys.values()) if keys else {}
        for item in orphans:
            stored = found.get(keys[id(item)]) if id(item) in keys else None
            if stored is not None and not stored.link.is_tombstone:
                link = replace(stored.link, salesforce_object="Contact", salesforce_id=item.salesforce_id)
                item.stored = replace(stored, link=link)
                item.mailbox_id = item.mailbox_id or link.mailbox_id

    def _find_candidates(self, items: list[_Item]) -> None:
        """Step 5: match keys of every unlinked record, one lookup per side and kind, linked ones left out."""
        to_crm: dict[ObjectKind, list[tuple[_Item, dict[str, Any]]]] = defaultdict(list)
        to_mailbox: dict[tuple[str, ObjectKind], list[tuple[_Item, dict[str, Any]]]] = defaultdict(list)
        for item in items:
            if item.failure or item.stored is not None:
                continue
            options = item.connection.options
            if item.mailbox is not None and not item.mailbox.deleted and item.salesforce is None:
                keys = match_values(item.kind, item.mailbox, self.mapping, options)
                to_crm[item.kind].append((item, keys))
            elif item.salesforce is not None and not item.salesforce.deleted and item.mailbox is None:
                keys = match_values(item.kind, item.salesforce, self.mapping, options)
                to_mailbox[(item.connection.connection_id, item.kind)].append((item, keys))
        for kind, wanted in to_crm.items():
            group = [item for item, _ in wanted]
            found = self._guarded(group, self.crm.candidates, kind, [keys for _, keys in wanted])
            self._assign_candidates(wanted, found or [], "salesforce")
        for (_, kind), wanted in to_mailbox.items():
            connection = wanted[0][0].connection
            mailbox = self.mailboxes[connection.provider]
            group = [item for item, _ in wanted]
            found = self._guarded(group, mailbox.candidates, connection, kind, [keys for _, keys in wanted])
            self._assign_candidates(wanted, found or [], "mailbox")

    def _assign_candidates(
        self, wanted: list[tuple[_Item, dict[str, Any]]], found: Sequence[Any], side: Literal["salesforce", "mailbox"]
    ) -> None:
        if not found:
            return
        keys = [
            LinkKey(item.connection.connection_id, item.kind, side, candidate.id)
            for item, _ in wanted
            for candidate in found
        ]
        linked = self.links.get_many(keys)
        for item, _ in wanted:
            item.candidates = [
                candidate
                for candidate in found
                if LinkKey(item.connection.connection_id, item.kind, side, candidate.id) not in linked
            ]

    def _plan(self, item: _Item, now: datetime) -> None:
        if item.failure or item.skip:
            return
        link = item.stored.link if item.stored is not None else None
        if link is not None and not link.is_tombstone and (link.salesforce_id is None or link.mailbox_id is None):
            if item.stored is not None and not _claim_expired(item.stored, now):
                item.fail("another worker is creating this record", transient=True)
                return
            link = None  # a dead worker's claim: plan afresh; matching finds what it may have created
        try:
            item.plan = plan(
                item.kind,
                link,
                item.salesforce,
                item.mailbox,
                item.connection.options,
                candidates=item.candidates,
                mapping=self.mapping,
                now=now,
            )
        except Exception as exc:  # the core promises not to raise; if it does, this record alone fails
            item.fail(f"could not plan: {type(exc).__name__}: {exc}", transient=False)

    @staticmethod
    def _one_plan_per_record(items: list[_Item]) -> list[_Item]:
        """Two notices of one batch can meet in one pair by matching (a new Salesforce record and its
        mailbox twin, each finding the other): only the first plan runs, with both items' messages."""
        kept: list[_Item] = []
        owner: dict[tuple[str, str, str, str], _Item] = {}
        for item in items:
            link = item.plan.new_link if item.plan is not None else None
            ids = [] if link is None else [("salesforce", link.salesforce_id), ("mailbox", link.mailbox_id)]
            keys = [(item.connection.connection_id, item.kind, side, rid) for side, rid in ids if rid]
            first = next((owner[key] for key in keys if key in owner), None)
            if first is not None:
                first.messages |= item.messages
                continue
            owner.update(dict.fromkeys(keys, item))
            kept.append(item)
        return kept

    def _keep_emails_to_known_people(self, items: list[_Item]) -> None:
        """An email becomes a Task only when someone outside the user's domain in it is a Contact or Lead
        (Salesforce's Users and the user's colleagues never count), and received mail only when the
        connection logs it. Nothing is ever created for an address: an email never makes a Contact."""
        wanted: dict[int, set[str]] = {}
        for item in items:
            if item.kind != "email" or item.plan is None or item.mailbox is None:
                continue
            if not any(op.action == "create" for op in item.plan.writes):
                continue  # already a Task (another mailbox's, or ours): relate, never skip
            options = item.connection.options
            found = item.plan.values.get("participants")
            participants = set(found) if isinstance(found, tuple) else set()
            user = (options.user_email or item.connection.mailbox_user).lower()
            domain = user.rpartition("@")[2]
            if not options.log_received_email and _sender(item.mailbox.data) != user:
                item.skip = "received mail is not logged for this connection (log_received_email off)"
                continue
            wanted[id(item)] = {p for p in participants if p.rpartition("@")[2] != domain}
            if not wanted[id(item)]:
                item.skip = "every participant is the user or a colleague: internal mail is not logged"
        addresses = set().union(*wanted.values()) if wanted else set()
        if addresses:
            people = self._guarded([i for i in items if id(i) in wanted], self.crm.people, sorted(addresses)) or {}
            known = {email for email, record_id in people.items() if not record_id.startswith("005")}
            for item in items:
                if id(item) in wanted and item.skip is None and item.failure is None and not wanted[id(item)] & known:
                    item.skip = "no participant is a Contact or Lead in Salesforce; nothing is created for an address"
        for item in items:
            if item.skip is not None:
                item.plan = None  # nothing to claim, write or link

    def _guard(self, items: list[_Item], now: datetime) -> None:
        """Step 7: hold deletes past the connection's limits over the rolling window."""
        deleting: dict[tuple[str, ObjectKind], list[_Item]] = defaultdict(list)
        for item in items:
            if item.plan is not None and item.plan.deletes:
                deleting[(item.connection.connection_id, item.kind)].append(item)
        for (connection_id, kind), group in deleting.items():
            options = group[0].connection.options
            limits = options.delete_limits.get(kind)
            if limits is None or options.mass_delete_approved:
                continue
            planned = sum(item.plan.deletes for item in group if item.plan is not None)
            earlier = self.connections.record_deletes(connection_id, kind, 0, now, DELETE_WINDOW_S)
            total = earlier + planned
            links = self.links.count(connection_id, kind)
            if total > limits.count or (total >= limits.minimum and total > limits.share * max(links, 1)):
                reason = (
                    f"mass-delete guard: {total} {kind} deletes within {DELETE_WINDOW_S // 60} min "
                    f"(limit {limits.count} or {limits.share:.0%} of {links} links); held until on-call approves"
                )
                for item in group:
                    item.held = reason
                    item.plan = None
            else:
                self.connections.record_deletes(connection_id, kind, planned, now, DELETE_WINDOW_S)

    def _claim(self, items: list[_Item], now: datetime) -> None:
        """Step 8: store the link of every planned create before creating anything, and for a Salesforce
        create also an org-wide claim on what the record is (its email, iCalendar UID or Message-ID): two
        mailboxes holding one person, meeting or email make one Salesforce record, even in two workers."""
        self._claim_in_org(items, now)
        claims: list[_Item] = []
        for item in items:
            if item.plan is None or item.plan.new_link is None or item.failure is not None:
                continue
            if any(op.action == "create" for op in item.plan.writes):
                lock = item.stored.lock_version if item.stored is not None else 0
                item.claim = StoredLink(item.connection.connection_id, item.plan.new_link, lock, claimed_at=_epoch(now))
                claims.append(item)
        if not claims:
            return
        try:
            self.links.put_many([item.claim for item in claims if item.claim is not None])
            lost: set[LinkKey] = set()
        except LinkConflict as exc:
            lost = set(exc.keys)
        for item in claims:
            assert item.claim is not None
            if _keys_of(item.claim) & lost:
                item.fail("another worker is creating this record", transient=True)
                item.plan = None
            else:
                item.stored = replace(item.claim, lock_version=item.claim.lock_version + 1)

    def _claim_in_org(self, items: list[_Item], now: datetime) -> None:
        wanted = self._org_identities(items)
        if not wanted:
            return
        held = self.links.get_many(wanted)
        for key, item in wanted.items():
            current = held.get(key)
            if current is not None and not _claim_expired(current, now):
                item.fail(_CREATED_ELSEWHERE, transient=True)
                item.plan = None
                continue
            link = LinkState(item.kind, _default_sobject(item), None, key.record_id)
            lock = current.lock_version if current is not None else 0
            item.org_claim = StoredLink(key.connection_id, link, lock, claimed_at=_epoch(now))
        claiming = {key: item for key, item in wanted.items() if item.org_claim is not None}
        try:
            self.links.put_many([item.org_claim for item in claiming.values() if item.org_claim is not None])
            lost: set[LinkKey] = set()
        except LinkConflict as exc:
            lost = set(exc.keys)
        for key, item in claiming.items():
            assert item.org_claim is not None
            if key in lost:
                item.fail(_CREATED_ELSEWHERE, transient=True)
                item.plan, item.org_claim = None, None
            else:
                item.org_claim = replace(item.org_claim, lock_version=item.org_claim.lock_version + 1)

    def _org_identities(self, items: list[_Item]) -> dict[LinkKey, _Item]:
        """The org-wide identity of every mailbox record a plan creates in Salesforce; a second one with the
        same identity in this batch waits for a retry, which matches the first one's record."""
        wanted: dict[LinkKey, _Item] = {}
        for item in items:
            creates = item.plan is not None and any(
                op.action == "create" and op.side == "salesforce" for op in item.plan.writes
            )
            if not creates or item.mailbox is None or item.failure is not None:
                continue
            key = _org_key(item, self.mapping)
            if key is None:
                continue
            if key in wanted:
                item.fail(_CREATED_ELSEWHERE, transient=True)
                item.plan = None
                continue
            wanted[key] = item
        return wanted

    def _release_org_claims(self, items: list[_Item]) -> None:
        """Once the create ran (or failed), matching finds the record: the org-wide claim has done its job."""
        for item in items:
            if item.org_claim is not None:
                self.links.delete(item.org_claim)
                item.org_claim = None

    def _execute(self, items: list[_Item]) -> None:
        """Step 9: Salesforce writes, then relations, then mailbox writes, each coalesced in bulk."""
        live = [item for item in items if item.plan is not None and item.failure is None]
        sf_ops = [(item, op) for item in live if item.plan for op in item.plan.writes if op.side == "salesforce"]
        first = [(item, _owned(item, op)) for item, op in sf_ops if op.action != "relate"]
        self._apply_crm(first)
        relates = [
            (item, op if op.record_id else replace(op, record_id=_created_id(item, "salesforce")))
            for item, op in sf_ops
            if op.action == "relate" and item.failure is None
        ]
        self._apply_crm([(item, op) for item, op in relates if op.record_id])
        by_mailbox: dict[tuple[str, ObjectKind], list[tuple[_Item, Operation]]] = defaultdict(list)
        for item in live:
            if item.failure is None and item.plan is not None:
                for op in item.plan.writes:
                    if op.side == "mailbox":
                        by_mailbox[(item.connection.connection_id, item.kind)].append((item, op))
        for (_, kind), pairs in by_mailbox.items():
            connection = pairs[0][0].connection
            mailbox = self.mailboxes[connection.provider]
            ops = [op for _, op in pairs]
            keys = [item.salesforce_id if op.action == "create" else None for item, op in pairs]
            results = self._guarded([i for i, _ in pairs], mailbox.apply, connection, kind, ops, keys)
            if results is not None:
                self._record_results(pairs, results, "mailbox")

    def _apply_crm(self, pairs: list[tuple[_Item, Operation]]) -> None:
        if not pairs:
            return
        results = self._guarded([item for item, _ in pairs], self.crm.apply, [op for _, op in pairs])
        if results is not None:
            self._record_results(pairs, results, "salesforce")

    @staticmethod
    def _record_results(pairs: list[tuple[_Item, Operation]], results: Sequence[WriteResult], side: str) -> None:
        for (item, op), result in zip(pairs, results, strict=True):
            item.results.append((op, result))
            if not result.ok:
                what = f"{side} {op.action} {op.object_type}"
                item.fail(f"{what}: {result.error}", transient=result.transient, retry_after=result.retry_after)

    def _store(self, items: list[_Item], now: datetime) -> list[_Item]:
        """Step 10: the new links, with ids the writes returned. Returns the items whose lock was lost."""
        writing: list[tuple[_Item, StoredLink]] = []
        taken: set[LinkKey] = set()
        for item in items:
            link = self._link_to_store(item)
            if link is None:
                continue
            lock = item.stored.lock_version if item.stored is not None else 0
            stored = StoredLink(item.connection.connection_id, link, lock)
            if _keys_of(stored) & taken:
                # Two records of this batch became one pair (a match made twice): the second waits a round.
                item.fail("another record of this batch was linked to the same record", transient=True)
                continue
            taken |= _keys_of(stored)
            writing.append((item, stored))
        self._release_failed_claims(items)
        if not writing:
            return []
        conflicted: list[_Item] = []
        try:
            self.links.put_many([stored for _, stored in writing])
        except LinkConflict as exc:
            lost = set(exc.keys)
            conflicted = [item for item, stored in writing if _keys_of(stored) & lost]
        return conflicted

    def _release_failed_claims(self, items: list[_Item]) -> None:
        """A claim whose create did not happen is removed, so the retry is not held off by its own claim."""
        for item in items:
            if item.claim is None or item.stored is None or item.failure is None:
                continue
            if not any(op.action == "create" and result.ok for op, result in item.results):
                self.links.delete(item.stored)

    @staticmethod
    def _link_to_store(item: _Item) -> LinkState | None:
        if item.plan is None or item.plan.new_link is None:
            return None
        results = item.results
        created = {op.side: result for op, result in results if op.action == "create" and result.ok}
        if item.failure is not None and not created:
            return None  # nothing new exists: the retry plans again from the old link
        link = item.plan.new_link.with_ids(
            salesforce_id=created["salesforce"].record_id if "salesforce" in created else None,
            mailbox_id=created["mailbox"].record_id if "mailbox" in created else None,
            mailbox_version=created["mailbox"].version if "mailbox" in created else None,
        )
        for op, result in results:
            if op.action == "relate" and result.ok and result.held is not None and op.fields:
                link = link.settle_relation(op.fields[0], result.held)  # what Salesforce could relate
            if result.declined and item.plan is not None:
                # The record keeps what it held: remember that, so the next sync sees no change to redo.
                kept = {d.field: d.salesforce for d in item.plan.decisions if d.field in op.fields}
                link = link.with_values("salesforce", kept)
        if item.failure is None:
            return link
        # A create worked and a later write did not: keep the new id (a retry must not create again) and
        # forget the failed fields on both sides, so the next plan writes them again.
        failed = {name for op, result in results if not result.ok for name in op.fields}
        return replace(
            link,
            salesforce_values={k: (None if k in failed else v) for k, v in link.salesforce_values.items()},
            mailbox_values={k: (None if k in failed else v) for k, v in link.mailbox_values.items()},
        )

    # ------------------------------------------------------------ failures and the log

    def _guarded(self, items: Iterable[_Item], call: Callable[..., Any], *args: Any) -> Any:
        """``call(*args)``, one bulk call for ``items``; a connector error fails those items (and only those)."""
        try:
            return call(*args)
        except TransientError as exc:
            for item in items:
                item.fail(str(exc), transient=True, retry_after=exc.retry_after)
        except ConnectorError as exc:
            for item in items:
                item.fail(str(exc), transient=False)
        return None

    def _finish(self, items: list[_Item], outcome: BatchOutcome, bodies: Mapping[str, str], now: datetime) -> None:
        """Step 11: one log entry per item; retries and dead letters per message."""
        permanent: dict[str, str] = {}
        for item in items:
            outcome.entries.append(self._entry(item, now))
            if item.failure is None:
                self._count(item, outcome)
                continue
            for message_id in item.messages:
                if item.transient:
                    if message_id not in permanent:
                        delay = outcome.retry.get(message_id)
                        outcome.retry[message_id] = max(delay or 0.0, item.retry_after or 0.0) or None
                else:
                    permanent.setdefault(message_id, item.failure)
        for message_id, reason in permanent.items():
            outcome.retry.pop(message_id, None)
            self._dead_letter(outcome, message_id, bodies.get(message_id), reason)
        if outcome.entries:
            self.log.append(outcome.entries)
        self._record_health(items, now)

    def _record_health(self, items: list[_Item], now: datetime) -> None:
        """Each connection's health after the batch, for on-call: its last success, its last error and
        how many of its records wait for a retry (one UpdateItem per connection, not per record)."""
        by_connection: dict[str, list[_Item]] = defaultdict(list)
        for item in items:
            by_connection[item.connection.connection_id].append(item)
        stamp = now.isoformat().replace("+00:00", "Z")
        for connection_id, mine in by_connection.items():
            failed = [item for item in mine if item.failure is not None]
            health: dict[str, Any] = {"pending": sum(1 for item in failed if item.transient)}
            if len(failed) < len(mine):
                health["last_success_at"] = stamp
            if failed:
                health["last_error"] = failed[0].failure
                health["last_error_at"] = stamp
            self.connections.update_health(connection_id, **health)

    def _count(self, item: _Item, outcome: BatchOutcome) -> None:
        if item.plan is None:
            return
        sides = {op.side for op in item.plan.writes}
        for side in sides:
            outcome.written[(item.kind, f"to_{side}")] += 1
        outcome.conflicts += sum(1 for decision in item.plan.decisions if decision.kind == "conflict")
        if sides:
            lag = (self.clock() - item.notice.received_at).total_seconds()
            outcome.lag_s = max(outcome.lag_s or 0.0, lag)

    def _dead_letter(
        self,
        outcome: BatchOutcome,
        message_id: str,
        body: str | None,
        reason: str,
        *,
        notice: ChangeNotice | None = None,
    ) -> None:
        """Send to the DLQ at once: the whole message body, or the one notice that cannot be synced."""
        if message_id in outcome.dead_lettered and notice is None:
            return
        payload = notice.to_message() if notice is not None else body or ""
        self.dead_letters.send(payload, reason, message_id=message_id)
        if notice is None:
            outcome.dead_lettered[message_id] = reason
        if notice is not None:
            outcome.entries.append(self._entry_for_notice(notice, "failed", reason, self.clock()))

    def _entry(self, item: _Item, now: datetime) -> LogEntry:
        current = item.plan
        reasons: tuple[str, ...] = ()
        action = "none"
        status: LogStatus
        if current is not None:
            reasons = tuple(d.reason for d in current.decisions) + current.notes
            writes = [f"{op.side} {op.action}" for op in current.writes]
            links = [str(op.action) for op in current.operations if op.side == "link" and op.action != "skip"]
            action = ", ".join(writes + links) or "skip"
        if item.failure is not None:
            status, reason = "failed", item.failure
            if item.transient:
                reason = f"will retry: {reason}"
        elif item.held is not None:
            status, reason, action = "held", item.held, "delete held"
        elif item.skip is not None:
            status, reason, action = "skipped", item.skip, "skip"
        elif current is None:
            status, reason = "skipped", "nothing planned"
        elif any(d.kind == "held" for d in current.decisions):
            status, reason = "held", next(d.reason for d in current.decisions if d.kind == "held")
        elif current.is_noop and not any(op.action in ("link", "unlink") for op in current.operations):
            status, reason = "skipped", (current.notes or ("no change",))[0] if current.notes else _skip_reason(current)
        else:
            status, reason = "synced", _summary(current)
        link = current.new_link if current is not None else None
        reasons += tuple(result.note for _, result in item.results if result.note)
        return LogEntry(
            connection_id=item.connection.connection_id,
            status=status,
            action=action,
            object_type=item.kind,
            record_key=_record_key(item.notice),
            source=item.source,
            reason=reason,
            at=now,
            salesforce_id=_created_id(item, "salesforce") or (link.salesforce_id if link else None),
            mailbox_id=_created_id(item, "mailbox") or (link.mailbox_id if link else None),
            notice_id=item.notice.id,
            reasons=reasons,
            details={"messages": sorted(item.messages)},
        )

    @staticmethod
    def _entry_for_notice(notice: ChangeNotice, status: LogStatus, reason: str, now: datetime) -> LogEntry:
        return LogEntry(
            connection_id=notice.connection_id or "-",
            status=status,
            action="none",
            object_type=notice.object_type,
            record_key=_record_key(notice),
            source=notice.source,
            reason=reason,
            at=now,
            notice_id=notice.id,
        )


def match_values(
    kind: ObjectKind, record: SalesforceRecord | MailboxRecord, mapping: MappingSet, options: ConnectionOptions
) -> dict[str, Any]:
    """The canonical values of the fields matching keys on (email, names, iCalendar UID, ...): what the
    candidate lookups search by."""
    from concord.core import SalesforceRecord as _Sf

    wanted = {name for names in MATCH_KEYS.get(kind, ()) for name in names}
    if isinstance(record, _Sf):
        om = mapping.compile(kind, record.sobject, options.provider)
        ctx = Context(provider=options.provider, sobject=record.sobject, region=options.phone_region)
        return {r.name: r.transform.read_sf(r, record.data, ctx) for r in om.fields if r.name in wanted}
    sobject = {"contact": options.new_contact_object, "event": "Event"}.get(kind, "Task")
    om = mapping.compile(kind, sobject, options.provider)
    ctx = Context(provider=options.provider, sobject=sobject, region=options.phone_region)
    return {
        r.name: r.transform.read_mb(r, record.data, ctx)
        for r in om.fields
        if r.name in wanted and r.mb_path is not None
    }


def _sender(message: Mapping[str, Any]) -> str:
    """The From address of a Graph message or a Gmail message's headers, lower-cased ("" if none)."""
    sender = message.get("from")
    if isinstance(sender, Mapping):
        return str((sender.get("emailAddress") or {}).get("address") or "").lower()
    headers = (message.get("payload") or {}).get("headers") or []
    for header in headers if isinstance(headers, list) else []:
        if isinstance(header, Mapping) and str(header.get("name", "")).lower() == "from":
            from email.utils import parseaddr

            return parseaddr(str(header.get("value", "")))[1].lower()
    return ""


def _record_key(notice: ChangeNotice) -> str:
    return f"{notice.source}#{notice.object_type}#{notice.record_id or '*'}"


def _summary(current: Plan) -> str:
    """What a plan did, in one line: each write (or the link) with its reason."""
    parts = [
        f"{op.side} {op.action} {op.object_type}: {op.reason}" if op.side != "link" else op.reason
        for op in current.operations
        if op.action != "skip" and op.reason
    ]
    return "; ".join(parts) or "synced"


def _skip_reason(current: Plan) -> str:
    skips = [op.reason for op in current.operations if op.action == "skip" and op.reason]
    return skips[0] if skips else "no change"


def _default_sobject(item: _Item) -> str:
    if item.kind == "contact":
        return item.connection.options.new_contact_object
    return "Event" if item.kind == "event" else "Task"


_CREATED_ELSEWHERE = "the same record is being created from another mailbox; a retry matches it"
#: The org-wide claims live in the links table under this pseudo-connection, one per record identity.
ORG_CLAIMS = "org-claims"
_IDENTITY = {"contact": "email", "event": "ical_uid", "email": "message_id"}


def _org_key(item: _Item, mapping: MappingSet) -> LinkKey | None:
    """What a Salesforce record made from this mailbox item is, across mailboxes: a contact's email, an
    event's iCalendar UID, an email's Message-ID (``None``: nothing identifies it beyond this mailbox)."""
    assert item.mailbox is not None
    value = match_values(item.kind, item.mailbox, mapping, item.connection.options).get(_IDENTITY[item.kind])
    if not isinstance(value, str) or not value:
        return None
    return LinkKey(ORG_CLAIMS, item.kind, "mailbox", value.lower())


def _owned(item: _Item, op: Operation) -> Operation:
    """A Salesforce create is owned by the connection's user, not the integration user, so that later
    changes to it reach this connection (Salesforce notices are routed by owner)."""
    if op.action != "create" or "OwnerId" in op.body:
        return op
    return replace(op, body={**op.body, "OwnerId": item.connection.salesforce_user_id})


def _created_id(item: _Item, side: str) -> str | None:
    for op, result in item.results:
        if op.side == side and op.action == "create" and result.ok:
            return result.record_id
    return item.salesforce_id if side == "salesforce" else item.mailbox_id


def _keys_of(stored: StoredLink) -> set[LinkKey]:
    link = stored.link
    keys: set[LinkKey] = set()
    if link.salesforce_id:
        keys.add(LinkKey(stored.connection_id, link.kind, "salesforce", link.salesforce_id))
    if link.mailbox_id:
        keys.add(LinkKey(stored.connection_id, link.kind, "mailbox", link.mailbox_id))
    return keys


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _claim_expired(stored: StoredLink, now: datetime) -> bool:
    return stored.claimed_at is None or _epoch(now) - stored.claimed_at > CLAIM_LEASE_S
