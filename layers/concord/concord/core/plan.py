"""``plan()``: what one sync of one record pair does. Pure: records and link state in, a :class:`Plan` out.

The worker fetches both records (and match candidates), calls :func:`plan`, executes the operations
through its adapters (coalescing writes in bulk), fills in ids and versions the writes returned
(``plan.new_link.with_ids(...)``) and stores ``new_link`` with an optimistic lock. The plan is also what
the sync log shows and what the CLI's dry run prints (:meth:`Plan.explain`).

The steps, in order:

0. **Unsyncable data**: ``plan`` never raises for data it cannot sync. A value no transform can read
   (``transforms.UnsyncableValue`` or any other ``ValueError``: an unknown time zone, a malformed date)
   makes the plan a ``skip`` whose reason starts ``cannot sync:``; the stored link is kept unchanged.
1. **Tombstone**: a pair unlinked by a delete plans nothing, ever: a late or repeated notice cannot bring
   a deleted record back, nor make a second copy of its survivor.
2. **Series and cancellations** (events): a series master, an occurrence or an exception (Graph ``type``
   seriesMaster/occurrence/exception or ``seriesMasterId``; Google ``recurrence`` or
   ``recurringEventId``; Salesforce ``IsRecurrence2`` and its kin) is never written anywhere as a
   stand-alone event until series are supported: a ``skip`` with the reason, link kept. Recurring
   candidates are never matched. A cancelled mailbox meeting (Graph ``isCancelled``, Google ``status:
   "cancelled"``) is handled exactly as a deleted mailbox record (step 3); unlinked, it plans nothing.
3. **Deletes** of a linked record: with ``propagate_deletes`` the other side is deleted too (never a
   meeting the user does not organise or whose organiser cannot be established, never a logged email's
   Task), else the pair is only unlinked. The link becomes a tombstone either way. The mass-delete guard
   (guards.py) works on a batch of plans.
4. **Version check**: both versions equal to the stored ones (same mapping) → nothing, without reading a
   field. A version bump alone reads and compares the content and writes nothing if it is unchanged.
5. **Filters** (Lightning Sync's): private events (new ones only, see step 7), default calendar only, the
   contact sync folder/group, the event time window. Out of scope: nothing is created or written (an
   existing link is kept).
6. **No link yet**: match the record against ``candidates`` from the other side before any create
   (matching.py: contacts by email, Contact before Lead, then first + last name + company; events by
   iCalendar UID, then subject + start + end). One match → link and merge as a first sync; two or more →
   an ambiguity, logged, nothing written; none → create on the other side and link. A create in
   Salesforce fills required fields left blank from the mapping's ``required_defaults`` (mapping.py).
7. **Left alone** (with a note saying why; no write either way, snapshot unchanged):
   - a field the Salesforce integration user cannot read (field-level security). Contract for the
     worker: the Salesforce record's ``data`` holds every mapped field the user can read, ``null`` when
     empty (as the REST API returns it); a key *absent* from ``data`` means "cannot read", never blank;
   - with ``sync_private_events`` off, the ``private_content`` fields (subject, location, description,
     attendees) of a linked event that is private on either side. The private flag itself still syncs,
     so an event that turns private after linking sends ``IsPrivate: true`` to Salesforce (where private
     events are visible only to their owner) and stops exposing later changes of what it is about; the
     content Salesforce already held is not masked (it was shared while public; masking it would only
     destroy it). With the option on, a private event syncs every field as usual.
8. **Merge** every other mapped field three ways (merge.py: deliberate clears, blanks, policies) with the
   per-connection, per-object and per-field direction; only fields whose value differs are written
   (update patches are provider JSON). Sets of related records (attendees, participants) merge by
   membership (:func:`_merge_set`): each side receives the other's additions and removals and keeps what
   only it holds, so an attendee Salesforce cannot hold is never removed from the meeting.
9. **Meetings** (events, mailbox side): the user's own meetings only (an organiser that cannot be
   established is someone else's); Salesforce → mailbox updates only in ``invitation_mode`` and only when
   a field attendees see changed (``attendee_visible`` in the mapping). Held writes are reported and
   remembered in the snapshot, so they are not retried.

Echo safety: the new snapshot holds, per side, the canonical value each side holds *after* the writes
(settled through the transform), so planning again with the written records plans nothing.

Relations, the worker's contract. Salesforce relates an attendee or participant only when the address
resolves to a Contact, Lead or User (``EventRelation``/``TaskWhoRelation``). A ``relate`` operation's
body is ``{"relation", "emails" (the whole set wanted), "add", "remove"}``; the plan stores the wanted set
as Salesforce's snapshot and remembers ``add`` in ``new_link.unconfirmed``. After executing it, the worker
should call ``new_link.settle_relation(field, held)`` with the addresses of ``body["emails"]`` that
Salesforce now relates (``field`` is the operation's ``fields[0]``). If it does not (a crash, an old
worker), the next plan still treats an unconfirmed address missing from Salesforce as never held, not as
removed. ``LinkState.with_values(side, {field: value})`` records any other value the worker learnt a side
holds after a write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Final, Literal

from concord.core.mapping import FieldRule, MappingSet, ObjectKind, ObjectMapping, default_mapping
from concord.core.matching import find_match
from concord.core.merge import Merged, Policy, fmt, merge_values
from concord.core.normalize import Value, parse_datetime
from concord.core.records import Contact, EmailActivity, Event, record_from_values
from concord.core.state import ConnectionOptions, LinkState, MailboxRecord, SalesforceRecord, Side
from concord.core.transforms import Context

__all__ = ["Action", "Decision", "Operation", "Plan", "plan"]

type Action = Literal["create", "update", "delete", "relate", "link", "unlink", "skip"]
type OpSide = Literal["salesforce", "mailbox", "link"]


@dataclass(frozen=True, slots=True)
class Operation:
    """One thing to do.

    - ``side``: ``salesforce``, ``mailbox`` or ``link`` (the link store: ``link``, ``unlink``, ``skip``);
    - ``action``: ``create`` (``body`` is the new record's JSON), ``update`` (``body`` is a patch of only
      the changed top-level properties), ``delete``, ``relate`` (``body`` describes related records to
      set: ``{"relation", "emails", "add", "remove"}`` or ``{"relation": "Account", "field", "name"}``;
      ``record_id`` ``None`` means the record this plan creates), ``link``, ``unlink``, ``skip``;
    - ``object_type``: the Salesforce sObject (``Contact``, ``Lead``, ``Event``, ``Task``) or the mailbox
      kind (``contact``, ``event``, ``email``);
    - ``fields``: the canonical fields concerned; ``reason``: one line for the sync log.
    """

    action: Action
    side: OpSide
    object_type: str
    record_id: str | None
    body: Mapping[str, Any] = field(default_factory=dict)
    fields: tuple[str, ...] = ()
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    """The merge's verdict on one field that changed: both sides' values, the result, where it is
    written (``None``: nowhere), the rule that applied (``kind``: flow, conflict, blank, clear,
    required, policy, direction, first_sync, held; merge.py explains each) and a reason a person can
    read, e.g.
    ``Title: mailbox changed 'CTO' → 'CEO', Salesforce unchanged since last sync → write to Salesforce``.
    ``overridden`` names the side whose new value was discarded (a conflict loser, a blank)."""

    field: str
    label: str
    kind: str
    reason: str
    salesforce: Value
    mailbox: Value
    result: Value
    write_to: Side | None
    overridden: Side | None
    policy: Policy


@dataclass(frozen=True, slots=True)
class Plan:
    """The outcome of :func:`plan`.

    ``operations`` run in order (Salesforce, then mailbox, then the link store). ``new_link`` is the link
    to store after executing them (``None``: no link to store); ``values`` are the canonical field values
    after the plan (Salesforce's view). ``notes`` explain skips, matches and held writes.
    """

    kind: ObjectKind
    operations: tuple[Operation, ...]
    decisions: tuple[Decision, ...] = ()
    new_link: LinkState | None = None
    values: Mapping[str, Value] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def new_snapshot(self) -> dict[str, Any] | None:
        """The field snapshot to store (JSON-serialisable), or ``None`` when there is no link."""
        return self.new_link.snapshot() if self.new_link is not None else None

    @property
    def writes(self) -> tuple[Operation, ...]:
        """The operations that change Salesforce or the mailbox."""
        return tuple(op for op in self.operations if op.side != "link")

    @property
    def is_noop(self) -> bool:
        """True when nothing is written to either side."""
        return not self.writes

    @property
    def deletes(self) -> int:
        """How many records this plan deletes (for the mass-delete guard)."""
        return sum(1 for op in self.operations if op.action == "delete")

    @property
    def record(self) -> Contact | Event | EmailActivity:
        """The canonical record after the plan."""
        return record_from_values(self.kind, self.values)

    def explain(self) -> str:
        """The plan as text for people: operations, then decisions, then notes."""
        lines = [
            f"{op.side} {op.action} {op.object_type} {op.record_id or '(new)'}: {op.reason}".rstrip(": ")
            for op in self.operations
        ]
        lines += [decision.reason for decision in self.decisions]
        lines += self.notes
        return "\n".join(lines)


_EMPTY: Mapping[str, Value] = {}


def plan(
    kind: ObjectKind,
    link: LinkState | None,
    salesforce: SalesforceRecord | None,
    mailbox: MailboxRecord | None,
    options: ConnectionOptions,
    *,
    candidates: Sequence[SalesforceRecord | MailboxRecord] = (),
    mapping: MappingSet | None = None,
    now: datetime | None = None,
) -> Plan:
    """Decide what one sync of one record pair does (see the module docstring for the steps).

    Args:
        kind: ``contact``, ``event`` or ``email``.
        link: the stored link for this pair, or ``None`` when there is none.
        salesforce: the Salesforce record, ``None`` when there is none, or one with ``deleted=True``.
        mailbox: the mailbox record, likewise.
        options: the connection's options (directions, filters, delete propagation, guards).
        candidates: for an unlinked record, records of the *other* side that may be the same (the worker
            finds them by email/name/UID/subject; already-linked records must be left out).
        mapping: the field mapping (default: the shipped ``default_mapping.yaml``).
        now: the current time, for the event window (default: the wall clock).

    Returns:
        A :class:`Plan`. ``plan`` never raises for data it cannot sync: it plans a ``skip`` with a reason.
    """
    mapping = mapping or default_mapping()
    try:
        return _settled(_plan(kind, link, salesforce, mailbox, options, candidates, mapping, now), now)
    except ValueError as error:
        # Data no transform can read (transforms.UnsyncableValue, an unknown time zone, a malformed
        # date): this pair is skipped and logged; the rest of the batch goes on.
        return _skip(kind, link, f"cannot sync: {error}")


def _plan(  # noqa: PLR0913 (plan()'s arguments, passed on)
    kind: ObjectKind,
    link: LinkState | None,
    salesforce: SalesforceRecord | None,
    mailbox: MailboxRecord | None,
    options: ConnectionOptions,
    candidates: Sequence[SalesforceRecord | MailboxRecord],
    mapping: MappingSet,
    now: datetime | None,
) -> Plan:
    if link is not None and link.is_tombstone:
        return _skip(kind, link, f"deleted earlier ({link.deleted_side} side); a tombstone stops late notices")
    cancelled = False
    if kind == "event":
        series = _series(salesforce) or _series(mailbox)
        if series is not None:
            return _skip(kind, link, f"{series}: recurring series are not synced yet, never as stand-alone events")
        if mailbox is not None and not mailbox.deleted and _cancelled(mailbox):
            if link is None:
                return _skip(kind, None, "meeting cancelled in the mailbox: nothing to create or link")
            cancelled = True
            mailbox = replace(mailbox, deleted=True)
        candidates = [candidate for candidate in candidates if _series(candidate) is None]
    sf_gone = salesforce is None or salesforce.deleted
    mb_gone = mailbox is None or mailbox.deleted
    if link is not None and (sf_gone or mb_gone):
        return _plan_delete(kind, link, salesforce, mailbox, options, mapping, cancelled=cancelled)
    if link is None:
        if sf_gone and mb_gone:
            return _skip(kind, None, "no record on either side")
        return _plan_unlinked(kind, salesforce, mailbox, options, mapping, candidates, now)
    assert salesforce is not None and mailbox is not None
    if (
        link.salesforce_version is not None
        and link.mailbox_version is not None
        and link.salesforce_version == salesforce.current_version
        and link.mailbox_version == mailbox.current_version
        and link.mapping_fingerprint == mapping.fingerprint
    ):
        unchanged = Operation("skip", "link", kind, None, {}, (), "unchanged since last sync (versions)")
        return Plan(kind, (unchanged,), (), link, link.salesforce_values, ())
    return _plan_pair(kind, link, salesforce, mailbox, options, mapping, now, created=None)


def _settled(result: Plan, now: datetime | None) -> Plan:
    """The plan, with a Salesforce version the next sync cannot trust left out of its link.

    ``SystemModstamp`` holds whole seconds: an edit made later in the same second as the read leaves it
    unchanged, so an equal version proves nothing then. A version is kept only when it is from a second
    before ``now`` (the batch started before the read, so any later edit lands in a later second);
    otherwise the link stores none and the next sync compares content."""
    link = result.new_link
    if link is None or link.salesforce_version is None or link.status != "linked":
        return result
    try:
        stamp = parse_datetime(link.salesforce_version)
    except ValueError:
        return result
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    if stamp is not None and stamp.replace(microsecond=0) < moment.replace(microsecond=0):
        return result
    return replace(result, new_link=replace(link, salesforce_version=None))


# ---------------------------------------------------------------- helpers


def _skip(kind: ObjectKind, link: LinkState | None, reason: str) -> Plan:
    return Plan(
        kind=kind,
        operations=(Operation("skip", "link", kind, None, reason=reason),),
        new_link=link,
        values=link.salesforce_values if link is not None else _EMPTY,
        notes=(reason,),
    )


def _sobject_for(kind: ObjectKind, options: ConnectionOptions) -> str:
    if kind == "contact":
        return options.new_contact_object
    return "Event" if kind == "event" else "Task"


class _Bound:
    """A compiled object mapping bound to one connection's context (phone region) and direction, built
    once per (mapping, region, direction) and kept on the :class:`ObjectMapping`: each field's readers
    with the context bound, and whether the field may be written to each side (:func:`_can`)."""

    __slots__ = ("ctx", "fields", "mb_readers", "sf_readers", "sf_tops")

    def __init__(self, om: ObjectMapping, options: ConnectionOptions, kind: ObjectKind) -> None:
        ctx = self.ctx = Context(provider=options.provider, sobject=om.sobject, region=options.phone_region)
        self.sf_readers = tuple((rule.name, rule.transform.sf_reader(rule, ctx)) for rule in om.fields)
        self.mb_readers = tuple((rule.name, rule.transform.mb_reader(rule, ctx)) for rule in om.fields)
        #: (rule, may write Salesforce, may write the mailbox) per field, in mapping order
        self.fields = tuple((rule, *_can(options, kind, rule)) for rule in om.fields)
        #: every top-level Salesforce key the fields read: all present means every field is readable
        self.sf_tops = frozenset(top for rule in om.fields for top in rule.sf_tops)

    def read(self, side: Side, data: Mapping[str, Any]) -> dict[str, Value]:
        """Every field's canonical value on one side."""
        readers = self.sf_readers if side == "salesforce" else self.mb_readers
        return {name: read(data) for name, read in readers}


def _bind(om: ObjectMapping, options: ConnectionOptions, kind: ObjectKind) -> _Bound:
    key = (options.provider, options.phone_region, options.direction(kind))
    bound: _Bound | None = om.bound.get(key)
    if bound is None:
        bound = om.bound[key] = _Bound(om, options, kind)
    return bound


def _is_organiser(mailbox: MailboxRecord, options: ConnectionOptions) -> bool | None:
    """Does the mailbox user organise this event? ``None`` when the record cannot tell: Graph's
    ``isOrganizer`` is missing, and Google left out ``organizer.self`` (it omits it when false) with no
    ``user_email`` to compare the organiser's address with. Callers treat ``None`` as someone else's."""
    data = mailbox.data
    flag = data.get("isOrganizer")
    if isinstance(flag, bool):
        return flag
    organizer = data.get("organizer")
    if isinstance(organizer, Mapping):
        if isinstance(organizer.get("self"), bool):
            return bool(organizer["self"])
        address = organizer.get("email")
        inner = organizer.get("emailAddress")
        if isinstance(inner, Mapping):
            address = inner.get("address")
        if isinstance(address, str) and options.user_email:
            return address.strip().lower() == options.user_email.strip().lower()
    return None


def _not_organised(mailbox: MailboxRecord, options: ConnectionOptions) -> str | None:
    """Why this event is someone else's, or ``None`` when the user organises it."""
    mine = _is_organiser(mailbox, options)
    if mine is None:
        return "the meeting's organiser cannot be established, so it is treated as someone else's"
    return None if mine else "the user does not organise this meeting"


_SERIES_TYPES: Final = frozenset({"seriesMaster", "occurrence", "exception"})
_SF_SERIES_FLAGS: Final = ("IsRecurrence", "IsRecurrence2", "IsRecurrence2Exception", "IsRecurrence2Exclusion")


def _series(record: SalesforceRecord | MailboxRecord | None) -> str | None:
    """Why an event belongs to a recurring series, or ``None``. Graph: ``type`` seriesMaster /
    occurrence / exception, or a ``seriesMasterId``; Google: ``recurrence`` rules (a series) or a
    ``recurringEventId`` (an instance); Salesforce (Event field reference): ``IsRecurrence`` /
    ``RecurrenceActivityId`` (legacy series and occurrences), ``IsRecurrence2`` and its exception and
    exclusion flags, or a ``Recurrence2PatternText``."""
    if record is None or record.deleted:
        return None
    data = record.data
    if isinstance(record, SalesforceRecord):
        flags = [flag for flag in _SF_SERIES_FLAGS if data.get(flag) is True]
        if flags:
            return f"Salesforce recurring event ({flags[0]})"
        if data.get("RecurrenceActivityId") or data.get("Recurrence2PatternText"):
            return "Salesforce recurring event (occurrence of a series)"
        return None
    kind = data.get("type")
    if isinstance(kind, str) and kind in _SERIES_TYPES:
        return f"mailbox recurring event ({kind})"
    if data.get("seriesMasterId") or data.get("recurringEventId"):
        return "mailbox recurring event (an instance of a series)"
    if data.get("recurrence"):
        return "mailbox recurring event (series)"
    return None


def _cancelled(mailbox: MailboxRecord) -> bool:
    """Graph ``isCancelled`` or Google ``status: "cancelled"``: handled as a delete of the meeting."""
    return mailbox.data.get("isCancelled") is True or mailbox.data.get("status") == "cancelled"


def _out_of_scope(
    kind: ObjectKind,
    mailbox: MailboxRecord | None,
    values: Mapping[str, Value],
    options: ConnectionOptions,
    now: datetime | None,
    *,
    linked: bool = False,
) -> str | None:
    """Why a record is out of the connection's scope (Lightning Sync's filters), or ``None``. The
    private filter only keeps *new* private events out: a linked event that turns private stays in
    scope so that ``IsPrivate`` reaches Salesforce (plan.py's step 4)."""
    if kind == "contact" and mailbox is not None:
        if options.provider == "graph" and options.contact_folder_id is not None:
            folder = mailbox.data.get("parentFolderId")
            if folder is not None and folder != options.contact_folder_id:
                return "filter: contact is not in the sync contact folder"
        if options.provider == "google" and options.contact_group is not None:
            groups = mailbox.data.get("memberships")
            names = {
                group.get("contactGroupMembership", {}).get("contactGroupResourceName")
                for group in (groups if isinstance(groups, list) else [])
                if isinstance(group, Mapping)
            }
            if options.contact_group not in names:
                return "filter: contact is not in the sync contact group"
    if kind != "event":
        return None
    if not linked and not options.sync_private_events and values.get("private") is True:
        return "filter: private events do not sync (option off)"
    if options.default_calendar_only and mailbox is not None and not mailbox.in_default_calendar:
        return "filter: event is not in the default calendar"
    moment = now or datetime.now(UTC)
    start, end = values.get("start"), values.get("end") or values.get("start")
    if options.event_window_past_days is not None and isinstance(end, str):
        earliest = _window_edge(moment, -options.event_window_past_days)
        if end < earliest[: len(end)]:
            return f"filter: event ended before the sync window ({options.event_window_past_days} days back)"
    if options.event_window_future_days is not None and isinstance(start, str):
        latest = _window_edge(moment, options.event_window_future_days)
        if start > latest[: len(start)]:
            return f"filter: event starts after the sync window ({options.event_window_future_days} days ahead)"
    return None


@lru_cache(maxsize=64)
def _window_edge(moment: datetime, days: int) -> str:
    """``moment`` moved by ``days``, as canonical date-time text (cached: ``now`` repeats in a batch)."""
    return (moment + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _can(options: ConnectionOptions, kind: ObjectKind, rule: FieldRule) -> tuple[bool, bool]:
    """(may write Salesforce, may write the mailbox) for a field, all directions combined."""
    connection = options.direction(kind)
    to_sf = connection != "to_mailbox" and rule.direction != "to_mailbox" and not rule.read_only
    to_mb = connection != "to_salesforce" and rule.direction != "to_salesforce" and rule.mb_path is not None
    return to_sf, to_mb


def _salesforce_newer(salesforce: SalesforceRecord, mailbox: MailboxRecord) -> bool | None:
    try:
        sf_time = parse_datetime(salesforce.modified_at)
        mb_time = parse_datetime(mailbox.modified_at)
    except ValueError:
        return None
    if sf_time is None or mb_time is None or sf_time == mb_time:
        return None
    return sf_time > mb_time


# ---------------------------------------------------------------- deletes


def _plan_delete(
    kind: ObjectKind,
    link: LinkState,
    salesforce: SalesforceRecord | None,
    mailbox: MailboxRecord | None,
    options: ConnectionOptions,
    mapping: MappingSet,
    *,
    cancelled: bool = False,
) -> Plan:
    sf_gone = salesforce is None or salesforce.deleted
    mb_gone = mailbox is None or mailbox.deleted
    ops: list[Operation] = []
    notes: list[str] = []
    deleted_side: Literal["salesforce", "mailbox", "both"]
    if sf_gone and mb_gone:
        deleted_side = "both"
        notes.append("deleted on both sides")
    elif sf_gone:
        assert mailbox is not None
        deleted_side = "salesforce"
        reason = "Salesforce record deleted"
        if not options.propagate_deletes:
            notes.append(f"{reason}; delete propagation is off → unlink only")
        elif options.direction(kind) == "to_salesforce" or kind == "email":
            notes.append(f"{reason}; the direction does not reach the mailbox → unlink only")
        elif kind == "event" and (someone_else := _not_organised(mailbox, options)) is not None:
            notes.append(f"{reason}; {someone_else} → unlink only")
        else:
            ops.append(Operation("delete", "mailbox", kind, mailbox.id, reason=f"{reason} → delete in mailbox"))
            deleted_side = "both"
    else:
        assert salesforce is not None
        deleted_side = "mailbox"
        reason = "meeting cancelled in the mailbox (handled as a delete)" if cancelled else "mailbox item deleted"
        if not options.propagate_deletes:
            notes.append(f"{reason}; delete propagation is off → unlink only")
        elif options.direction(kind) == "to_mailbox" or kind == "email":
            notes.append(f"{reason}; the direction does not reach Salesforce → unlink only")
        else:
            ops.append(
                Operation(
                    "delete", "salesforce", salesforce.sobject, salesforce.id, reason=f"{reason} → delete in Salesforce"
                )
            )
            deleted_side = "both"
    tombstone = LinkState(
        kind=link.kind,
        salesforce_object=link.salesforce_object,
        salesforce_id=link.salesforce_id,
        mailbox_id=link.mailbox_id,
        salesforce_version=link.salesforce_version,
        mailbox_version=link.mailbox_version,
        salesforce_values=link.salesforce_values,
        mailbox_values=link.mailbox_values,
        status="tombstone",
        deleted_side=deleted_side,
        mapping_fingerprint=mapping.fingerprint,
        unconfirmed=link.unconfirmed,
    )
    ops.append(Operation("unlink", "link", kind, None, reason="; ".join(notes) or "deleted → unlink"))
    return Plan(kind=kind, operations=tuple(ops), new_link=tombstone, values=link.salesforce_values, notes=tuple(notes))


# ---------------------------------------------------------------- first sight


def _plan_unlinked(
    kind: ObjectKind,
    salesforce: SalesforceRecord | None,
    mailbox: MailboxRecord | None,
    options: ConnectionOptions,
    mapping: MappingSet,
    candidates: Sequence[SalesforceRecord | MailboxRecord],
    now: datetime | None,
) -> Plan:
    sf_live = salesforce is not None and not salesforce.deleted
    mb_live = mailbox is not None and not mailbox.deleted
    if sf_live and mb_live:
        assert salesforce is not None and mailbox is not None
        return _plan_pair(kind, None, salesforce, mailbox, options, mapping, now, created=None)
    if sf_live:
        assert salesforce is not None
        source_side: Side = "salesforce"
        sobject = salesforce.sobject
    else:
        assert mailbox is not None
        source_side = "mailbox"
        sobject = _sobject_for(kind, options)
    if kind == "email" and source_side == "salesforce":
        return _skip(kind, None, "logged emails flow only from the mailbox to Salesforce")
    om = mapping.compile(kind, sobject, options.provider)
    bound = _bind(om, options, kind)
    ctx = bound.ctx
    source = salesforce if source_side == "salesforce" else mailbox
    assert source is not None
    values = bound.read(source_side, source.data)
    scope = _out_of_scope(kind, mailbox if source_side == "mailbox" else None, values, options, now)
    if scope is not None:
        return _skip(kind, None, scope)
    match = find_match(kind, source_side, values, candidates, mapping, options)
    if match.ambiguous:
        return _skip(kind, None, match.reason)
    if match.record is not None:
        if isinstance(match.record, SalesforceRecord):
            assert mailbox is not None
            paired = _plan_pair(kind, None, match.record, mailbox, options, mapping, now, created=None)
        else:
            assert salesforce is not None
            paired = _plan_pair(kind, None, salesforce, match.record, options, mapping, now, created=None)
        return Plan(
            kind=kind,
            operations=paired.operations,
            decisions=paired.decisions,
            new_link=paired.new_link,
            values=paired.values,
            notes=(match.reason, *paired.notes),
        )
    connection = options.direction(kind)
    target: Side = "mailbox" if source_side == "salesforce" else "salesforce"
    if connection == ("to_salesforce" if target == "mailbox" else "to_mailbox"):
        return _skip(kind, None, f"no match; the direction does not create in {target}")
    return _plan_create(kind, om, source_side, source, values, options, ctx)


def _plan_create(  # noqa: C901, PLR0912 (one pass over the fields, per side)
    kind: ObjectKind,
    om: ObjectMapping,
    source_side: Side,
    source: SalesforceRecord | MailboxRecord,
    values: dict[str, Value],
    options: ConnectionOptions,
    ctx: Context,
) -> Plan:
    body: dict[str, Any] = {}
    relates: list[Operation] = []
    unconfirmed: dict[str, tuple[str, ...]] = {}
    target_values: dict[str, Value] = {}
    written: list[str] = []
    for rule in om.fields:
        value = values[rule.name]
        to_sf, to_mb = _can(options, kind, rule)
        allowed = to_mb if source_side == "salesforce" else to_sf
        if value is None or not allowed:
            target_values[rule.name] = None
            continue
        if source_side == "salesforce":
            if kind == "event" and rule.name == "attendees" and not options.invitation_mode:
                target_values[rule.name] = None  # creating with attendees would send invitations
                continue
            rule.transform.write_mb(rule, value, body, None, ctx)
            target_values[rule.name] = rule.transform.settle_mb(value, ctx)
        elif rule.relates:
            relation = rule.transform.relation(rule, None, value, ctx)
            relates.append(
                Operation(
                    "relate",
                    "salesforce",
                    om.sobject,
                    None,
                    body=relation,
                    fields=(rule.name,),
                    reason=f"{rule.label}: relate the new record",
                )
            )
            target_values[rule.name] = value
            if rule.relation_set and relation.get("add"):
                unconfirmed[rule.name] = tuple(relation["add"])
        else:
            rule.transform.write_sf(rule, value, body, None, ctx)
            target_values[rule.name] = rule.transform.settle_sf(value, ctx)
        written.append(rule.name)
    if source_side == "salesforce":
        assert isinstance(source, SalesforceRecord)
        create = Operation(
            "create",
            "mailbox",
            kind,
            None,
            body=body,
            fields=tuple(written),
            reason=f"new in Salesforce ({source.sobject} {source.id}), no match → create in mailbox",
        )
        link = LinkState(
            kind=kind,
            salesforce_object=source.sobject,
            salesforce_id=source.id,
            mailbox_id=None,
            salesforce_version=source.current_version,
            salesforce_values=values,
            mailbox_values=target_values,
            mapping_fingerprint=om.fingerprint,
        )
        ops: tuple[Operation, ...] = (create,)
    else:
        body = {**om.salesforce_defaults, **body}
        notes = _fill_required(om, source, values, body, target_values, ctx)
        create = Operation(
            "create",
            "salesforce",
            om.sobject,
            None,
            body=body,
            fields=tuple(written),
            reason=f"new in mailbox ({source.id}), no match → create {om.sobject} in Salesforce",
        )
        link = LinkState(
            kind=kind,
            salesforce_object=om.sobject,
            salesforce_id=None,
            mailbox_id=source.id,
            mailbox_version=source.current_version,
            salesforce_values=target_values,
            mailbox_values=values,
            mapping_fingerprint=om.fingerprint,
            unconfirmed=unconfirmed,
        )
        ops = (create, *relates)
    link_op = Operation("link", "link", kind, None, reason="link the new record")
    return Plan(
        kind=kind,
        operations=(*ops, link_op),
        new_link=link,
        values=values if source_side == "salesforce" else target_values,
        notes=notes if source_side == "mailbox" else (),
    )


def _fill_required(
    om: ObjectMapping,
    source: SalesforceRecord | MailboxRecord,
    values: Mapping[str, Value],
    body: dict[str, Any],
    target_values: dict[str, Value],
    ctx: Context,
) -> tuple[str, ...]:
    """Fill the required Salesforce fields a create would leave blank (``required_defaults``, mapping.py)
    so that it is never refused with ``REQUIRED_FIELD_MISSING``; the snapshot holds what was written."""
    notes: list[str] = []
    filled: set[str] = set()
    for field_name, default in om.required_defaults.items():
        current = body.get(field_name)
        if isinstance(current, str) and current.strip():
            continue
        found: str | None = None
        for name in default.sources:
            found = _required_source(name, source, values)
            if found:
                break
        body[field_name] = found or default.value
        filled.add(field_name)
        notes.append(f"{field_name}: required by Salesforce and blank → filled with {body[field_name]!r}")
    for rule in om.fields:
        if any(path.top in filled for path in rule.sf_paths):
            target_values[rule.name] = rule.transform.read_sf(rule, body, ctx)
    return tuple(notes)


def _required_source(name: str, source: SalesforceRecord | MailboxRecord, values: Mapping[str, Value]) -> str | None:
    """One source of a required default (mapping.py's ``required_defaults``), or ``None``."""
    if name == "email_local_part":
        address = values.get("email")
        local = address.split("@", 1)[0].strip() if isinstance(address, str) else ""
        return local or None
    if name == "display_name":
        data = source.data
        shown = data.get("displayName")
        names = data.get("names")
        if shown is None and isinstance(names, list) and names and isinstance(names[0], Mapping):
            shown = names[0].get("displayName")
        if not isinstance(shown, str) or not shown.strip():
            return None
        words = shown.split()
        first = values.get("first_name")
        if isinstance(first, str) and words[: len(first.split())] == first.split():
            words = words[len(first.split()) :]  # "Ada Lovelace" with first name "Ada" → "Lovelace"
        return " ".join(words) or None
    value = values.get(name)
    return value if isinstance(value, str) and value.strip() else None


# ---------------------------------------------------------------- the pair


type _Pending = tuple[FieldRule, Merged, Value, Value]
"""A field the merge decided something about: (rule, merge outcome, Salesforce value, mailbox value)."""


def _plan_pair(  # noqa: PLR0913 (the pair, its link and the plan's context)
    kind: ObjectKind,
    link: LinkState | None,
    salesforce: SalesforceRecord,
    mailbox: MailboxRecord,
    options: ConnectionOptions,
    mapping: MappingSet,
    now: datetime | None,
    created: None,
) -> Plan:
    """Read both records, leave alone the fields that may not be compared (:func:`_left_alone`), merge
    every other field (:func:`_merge_fields`), write the outcomes (:func:`_write_outcomes`) and link the
    pair with the snapshot after the writes."""
    om = mapping.compile(kind, salesforce.sobject, options.provider)
    bound = _bind(om, options, kind)
    sf_values = bound.read("salesforce", salesforce.data)
    mb_values = bound.read("mailbox", mailbox.data)
    scope = _out_of_scope(kind, mailbox, sf_values, options, now, linked=link is not None) or (
        _out_of_scope(kind, None, mb_values, options, now, linked=link is not None) if kind == "event" else None
    )
    if scope is not None:
        if link is None:
            return _skip(kind, None, scope)
        kept = replace(link, salesforce_version=salesforce.current_version, mailbox_version=mailbox.current_version)
        return _skip(kind, kept, scope)

    left_alone = _left_alone(bound, om, link, salesforce, sf_values, mb_values, options)
    pending = _merge_fields(bound, link, salesforce, mailbox, sf_values, mb_values)
    held = _meeting_hold(kind, mailbox, pending, options)
    # The values read become the snapshot, changed in place by the writes (pending holds the originals).
    new_sf, new_mb = sf_values, mb_values
    written = _write_outcomes(pending, held, salesforce, mailbox, new_sf, new_mb, bound.ctx)
    sf_patch, mb_patch = written.sf_patch, written.mb_patch

    ops: list[Operation] = []
    if link is None:
        ops.append(
            Operation(
                "link",
                "link",
                kind,
                None,
                body={"salesforce_id": salesforce.id, "mailbox_id": mailbox.id},
                reason="matched existing records → link",
            )
        )
    if sf_patch:
        ops.append(
            Operation(
                "update",
                "salesforce",
                salesforce.sobject,
                salesforce.id,
                sf_patch,
                tuple(written.sf_fields),
                _summary(written.sf_fields, "Salesforce"),
            )
        )
    ops.extend(written.relates)
    if mb_patch:
        ops.append(
            Operation(
                "update",
                "mailbox",
                kind,
                mailbox.id,
                mb_patch,
                tuple(written.mb_fields),
                _summary(written.mb_fields, "mailbox"),
            )
        )
    if not ops:
        ops.append(Operation("skip", "link", kind, None, {}, (), "no field changed"))
    # A relation read this time settles what was unconfirmed; one left alone keeps it for later.
    unconfirmed = {name: found for name, found in (link.unconfirmed if link else {}).items() if name in left_alone}
    unconfirmed.update(written.unconfirmed)
    new_link = LinkState(
        kind=kind,
        salesforce_object=salesforce.sobject,
        salesforce_id=salesforce.id,
        mailbox_id=mailbox.id,
        salesforce_version=None if (sf_patch or written.relates) else salesforce.current_version,
        mailbox_version=None if mb_patch else mailbox.current_version,
        salesforce_values=new_sf,
        mailbox_values=new_mb,
        mapping_fingerprint=om.fingerprint,
        unconfirmed=unconfirmed,
    )
    decisions = written.decisions
    notes = tuple(left_alone.values())
    if held is not None and any(d.kind == "held" for d in decisions):
        notes += (f"meeting: {held}",)
    return Plan(kind, tuple(ops), tuple(decisions), new_link, new_sf, notes)


def _left_alone(  # noqa: PLR0913 (the pair's mapping, link, record and values)
    bound: _Bound,
    om: ObjectMapping,
    link: LinkState | None,
    salesforce: SalesforceRecord,
    sf_values: dict[str, Value],
    mb_values: dict[str, Value],
    options: ConnectionOptions,
) -> dict[str, str]:
    """The fields this sync must neither compare nor write, each with its reason; their values read are
    replaced by the snapshot's (``None`` before the first sync), so the merge sees no change and the
    snapshot stays as it was.

    - A Salesforce field the integration user cannot read (field-level security): the REST record leaves
      the key out, where a readable empty field is present with ``null``. Its absence is not a blank.
    - A linked event that is private with ``sync_private_events`` off: its ``private_content`` fields
      (the private flag itself still syncs, so Salesforce learns that it is private).
    - An event whose mailbox copy has no attendees, with ``invitation_mode`` off: its attendees (adding
      them to the mailbox copy would invite them; from the mailbox there is nothing to relate)."""
    data = salesforce.data
    found: dict[str, str] = {}
    for rule in () if bound.sf_tops <= data.keys() else om.fields:
        if not all(top in data for top in rule.sf_tops):
            found[rule.name] = (
                f"{rule.label}: not readable by the Salesforce integration user (field-level security) → left alone"
            )
    if (
        om.kind == "event"
        and link is not None
        and not options.sync_private_events
        and (sf_values.get("private") is True or mb_values.get("private") is True)
    ):
        for rule in om.fields:
            if rule.private_content:
                found.setdefault(
                    rule.name,
                    f"{rule.label}: a private event (private events do not sync) → no longer updated either way",
                )
    if om.kind == "event" and not options.invitation_mode:
        for rule in om.fields:
            never_had = not (link is not None and link.mailbox_values.get(rule.name))
            if rule.relation_set and not mb_values.get(rule.name) and never_had:
                # Concord makes a meeting from Salesforce without its attendees (adding them invites
                # them); a later match or reset must not add them either.
                found.setdefault(
                    rule.name,
                    f"{rule.label}: the mailbox copy has none, and adding them would invite them "
                    "(invitation mode off) → left alone",
                )
    for name in found:
        sf_values[name] = link.salesforce_values.get(name) if link is not None else None
        mb_values[name] = link.mailbox_values.get(name) if link is not None else None
    return found


def _merge_fields(
    bound: _Bound,
    link: LinkState | None,
    salesforce: SalesforceRecord,
    mailbox: MailboxRecord,
    sf_values: Mapping[str, Value],
    mb_values: Mapping[str, Value],
) -> list[_Pending]:
    """The three-way merge (merge.py) of every field whose values differ and changed since the
    snapshot; equal or already-decided fields are skipped without building anything. Relation sets
    (attendees, participants) are merged by membership (:func:`_merge_set`)."""
    if link is None:
        return _merge_first_sync(bound, salesforce, mailbox, sf_values, mb_values)
    pending: list[_Pending] = []
    newer: bool | None = None
    timed = False  # record times only matter to a conflict: parse them lazily, once
    base_sf = link.salesforce_values
    base_mb = link.mailbox_values
    if sf_values == base_sf and mb_values == base_mb:
        return pending  # neither side changed anything since the last sync
    for rule, to_sf, to_mb in bound.fields:
        name = rule.name
        s = sf_values[name]
        m = mb_values[name]
        bs = base_sf.get(name)
        bm = base_mb.get(name)
        if rule.relation_set:
            if s != bs or m != bm:
                pending += _merge_set(rule, s, m, bs, bm, link.unconfirmed.get(name, ()), to_sf, to_mb)
            continue
        if s == m:
            continue
        if s == bs and m == bm:
            continue
        if not timed and s != bs and m != bm:
            newer, timed = _salesforce_newer(salesforce, mailbox), True
        outcome = merge_values(
            rule.label, s, m, bs, bm, True, rule.policy, to_sf, to_mb, newer, rule.clears, rule.required
        )
        if outcome is not None:
            pending.append((rule, outcome, s, m))
    return pending


def _merge_first_sync(
    bound: _Bound,
    salesforce: SalesforceRecord,
    mailbox: MailboxRecord,
    sf_values: Mapping[str, Value],
    mb_values: Mapping[str, Value],
) -> list[_Pending]:
    """:func:`_merge_fields` with no snapshot: every difference is a conflict."""
    pending: list[_Pending] = []
    newer: bool | None = None
    timed = False
    for rule, to_sf, to_mb in bound.fields:
        name = rule.name
        s = sf_values[name]
        m = mb_values[name]
        if s == m:
            continue
        if rule.relation_set:
            pending += _merge_set(rule, s, m, None, None, None, to_sf, to_mb)
            continue
        if not timed:
            newer, timed = _salesforce_newer(salesforce, mailbox), True
        outcome = merge_values(
            rule.label, s, m, None, None, False, rule.policy, to_sf, to_mb, newer, rule.clears, rule.required
        )
        if outcome is not None:
            pending.append((rule, outcome, s, m))
    return pending


def _merge_set(  # noqa: PLR0913 (one field's values, snapshot and directions)
    rule: FieldRule,
    s: Value,
    m: Value,
    bs: Value,
    bm: Value,
    unconfirmed: tuple[str, ...] | None,
    to_sf: bool,
    to_mb: bool,
) -> list[_Pending]:
    """Merge a set of related records (attendees, participants) by membership: each side receives the
    other side's additions and removals since the snapshot, and keeps what only it holds. Salesforce
    holds only addresses that resolve to a Contact, Lead or User, so the sides legitimately differ by
    the addresses it cannot hold: copying one side's set over the other would remove them from the
    meeting. An address a relate asked for (``unconfirmed``) and Salesforce does not hold was never
    held, so its absence is no removal. ``unconfirmed`` ``None``: a first sync, where both sets are
    additions (the result is their union)."""
    sf_now = set(s) if isinstance(s, tuple) else set()
    mb_now = set(m) if isinstance(m, tuple) else set()
    if unconfirmed is None:
        sf_base: set[str] = set()
        mb_base: set[str] = set()
        kind = "first_sync"
    else:
        sf_base = (set(bs) if isinstance(bs, tuple) else set()) - (set(unconfirmed) - sf_now)
        mb_base = set(bm) if isinstance(bm, tuple) else set()
        kind = "flow"
    sf_added, sf_removed = sf_now - sf_base, sf_base - sf_now
    mb_added, mb_removed = mb_now - mb_base, mb_base - mb_now
    if unconfirmed is not None and (sf_added or sf_removed) and (mb_added or mb_removed):
        kind = "conflict"  # both changed: each side's changes still reach the other, none is lost
    pending: list[_Pending] = []
    sides: tuple[tuple[Side, set[str], set[str], set[str], bool], ...] = (
        ("mailbox", mb_now, sf_added, sf_removed, to_mb),
        ("salesforce", sf_now, mb_added, mb_removed, to_sf),
    )
    for target, now_set, added, removed, allowed in sides:
        result = (now_set | added) - removed
        if result == now_set:
            continue
        source = "Salesforce" if target == "mailbox" else "mailbox"
        change = "; ".join(
            part
            for part in (
                f"added {fmt(tuple(sorted(added - now_set)))}" if added - now_set else "",
                f"removed {fmt(tuple(sorted(removed & now_set)))}" if removed & now_set else "",
            )
            if part
        )
        story = f"{rule.label}: {'first sync, ' if kind == 'first_sync' else ''}{source} {change}"
        value: Value = tuple(sorted(result)) or None
        name = "Salesforce" if target == "salesforce" else "mailbox"
        merged: Merged = (
            (value, target, kind, f"{story} → write to {name}", None)
            if allowed
            else (value, None, "direction", f"{story} → not written to {name} (direction of this field)", None)
        )
        pending.append((rule, merged, s, m))
    return pending


class _Written:
    """What :func:`_write_outcomes` produced: the patches, relate operations and decisions."""

    __slots__ = ("decisions", "mb_fields", "mb_patch", "relates", "sf_fields", "sf_patch", "unconfirmed")

    def __init__(self) -> None:
        #: relation-set field → the addresses its relate adds (LinkState.unconfirmed)
        self.unconfirmed: dict[str, tuple[str, ...]] = {}
        self.sf_patch: dict[str, Any] = {}
        self.mb_patch: dict[str, Any] = {}
        self.relates: list[Operation] = []
        self.decisions: list[Decision] = []
        self.sf_fields: list[str] = []
        self.mb_fields: list[str] = []


def _write_outcomes(
    pending: list[_Pending],
    held: str | None,
    salesforce: SalesforceRecord,
    mailbox: MailboxRecord,
    new_sf: dict[str, Value],
    new_mb: dict[str, Value],
    ctx: Context,
) -> _Written:
    """Turn each outcome into a patch (or relate operation) and a :class:`Decision`, and settle the
    written values into ``new_sf``/``new_mb`` (the next snapshot)."""
    out = _Written()
    for rule, (result, merged_to, merged_kind, merged_reason, overridden), s, m in pending:
        write_to, kind_of, reason = merged_to, merged_kind, merged_reason
        if write_to == "mailbox" and held is not None:
            write_to, kind_of = None, "held"
            reason = f"{reason.rsplit(' → write to', 1)[0]} → held: {held}"
        if write_to == "salesforce":
            if rule.relates:
                body = rule.transform.relation(rule, s, result, ctx)
                out.relates.append(
                    Operation("relate", "salesforce", salesforce.sobject, salesforce.id, body, (rule.name,), reason)
                )
                if rule.relation_set and body.get("add"):
                    out.unconfirmed[rule.name] = tuple(body["add"])
            else:
                rule.transform.write_sf(rule, result, out.sf_patch, salesforce.data, ctx)
                out.sf_fields.append(rule.name)
            new_sf[rule.name] = rule.transform.settle_sf(result, ctx)
        elif write_to == "mailbox":
            rule.transform.write_mb(rule, result, out.mb_patch, mailbox.data, ctx)
            out.mb_fields.append(rule.name)
            new_mb[rule.name] = rule.transform.settle_mb(result, ctx)
        out.decisions.append(
            Decision(rule.name, rule.label, kind_of, reason, s, m, result, write_to, overridden, rule.policy)
        )
    return out


def _summary(fields: list[str], side: str) -> str:
    return f"write {', '.join(fields)} to {side}"


def _meeting_hold(
    kind: ObjectKind,
    mailbox: MailboxRecord,
    pending: list[_Pending],
    options: ConnectionOptions,
) -> str | None:
    """Why mailbox writes to this event are held back, or ``None`` when they may go ahead."""
    if kind != "event":
        return None
    to_mailbox = [rule for rule, outcome, _, _ in pending if outcome[1] == "mailbox"]
    if not to_mailbox:
        return None
    someone_else = _not_organised(mailbox, options)
    if someone_else is not None:
        return f"{someone_else}, so it is never written"
    attendees = mailbox.data.get("attendees")
    if not attendees:
        return None
    if not options.invitation_mode:
        return "a meeting with attendees; Salesforce → mailbox updates are off (invitation mode)"
    if not any(rule.attendee_visible for rule in to_mailbox):
        return "a meeting with attendees and no change they would see (subject, time, location, body)"
    return None
