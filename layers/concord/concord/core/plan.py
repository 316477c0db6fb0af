"""``plan()``: what one sync of one record pair does. Pure: records and link state in, a :class:`Plan` out.

The worker fetches both records (and match candidates), calls :func:`plan`, executes the operations
through its adapters (coalescing writes in bulk), fills in ids and versions the writes returned
(``plan.new_link.with_ids(...)``) and stores ``new_link`` with an optimistic lock. The plan is also what
the sync log shows and what the CLI's dry run prints (:meth:`Plan.explain`).

The steps, in order:

1. **Tombstone**: a pair unlinked by a delete plans nothing, ever: a late or repeated notice cannot bring
   a deleted record back, nor make a second copy of its survivor.
2. **Deletes** of a linked record: with ``propagate_deletes`` the other side is deleted too (never a
   meeting the user does not organise, never a logged email's Task), else the pair is only unlinked. The
   link becomes a tombstone either way. The mass-delete guard (guards.py) works on a batch of plans.
3. **Version check**: both versions equal to the stored ones (same mapping) → nothing, without reading a
   field. A version bump alone reads and compares the content and writes nothing if it is unchanged.
4. **Filters** (Lightning Sync's): private events, default calendar only, the contact sync folder/group,
   the event time window. Out of scope: nothing is created or written (an existing link is kept).
5. **No link yet**: match the record against ``candidates`` from the other side before any create
   (matching.py: contacts by email, Contact before Lead, then first + last name + company; events by
   iCalendar UID, then subject + start + end). One match → link and merge as a first sync; two or more →
   an ambiguity, logged, nothing written; none → create on the other side and link.
6. **Merge** every mapped field three ways (merge.py) with the per-connection, per-object and per-field
   direction; only fields whose value differs are written (update patches are provider JSON).
7. **Meetings** (events with attendees, mailbox side): the user's own meetings only; Salesforce → mailbox
   updates only in ``invitation_mode`` and only when a field attendees see changed (``attendee_visible``
   in the mapping). Held writes are reported and remembered in the snapshot, so they are not retried.

Echo safety: the new snapshot holds, per side, the canonical value each side holds *after* the writes
(settled through the transform), so planning again with the written records plans nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

from concord.core.mapping import FieldRule, MappingSet, ObjectKind, ObjectMapping, default_mapping
from concord.core.matching import find_match
from concord.core.merge import Merged, Policy, merge_values
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
    written (``None``: nowhere), the rule that applied (``kind``: flow, conflict, blank, policy,
    direction, first_sync, held) and a reason a person can read, e.g.
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


# ---------------------------------------------------------------- construction


def _linked(  # noqa: PLR0913 (one argument per field of a live link)
    kind: ObjectKind,
    salesforce_object: str,
    salesforce_id: str | None,
    mailbox_id: str | None,
    salesforce_version: str | None,
    mailbox_version: str | None,
    salesforce_values: Mapping[str, Value],
    mailbox_values: Mapping[str, Value],
    mapping_fingerprint: str | None,
) -> LinkState:
    """A live link (``status`` linked, no ``deleted_side``)."""
    return LinkState(
        kind=kind,
        salesforce_object=salesforce_object,
        salesforce_id=salesforce_id,
        mailbox_id=mailbox_id,
        salesforce_version=salesforce_version,
        mailbox_version=mailbox_version,
        salesforce_values=salesforce_values,
        mailbox_values=mailbox_values,
        status="linked",
        deleted_side=None,
        mapping_fingerprint=mapping_fingerprint,
    )


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
    if link is not None and link.is_tombstone:
        return _skip(kind, link, f"deleted earlier ({link.deleted_side} side); a tombstone stops late notices")
    sf_gone = salesforce is None or salesforce.deleted
    mb_gone = mailbox is None or mailbox.deleted
    if link is not None and (sf_gone or mb_gone):
        return _plan_delete(kind, link, salesforce, mailbox, options, mapping)
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

    __slots__ = ("ctx", "fields", "mb_readers", "sf_readers")

    def __init__(self, om: ObjectMapping, options: ConnectionOptions, kind: ObjectKind) -> None:
        ctx = self.ctx = Context(provider=options.provider, sobject=om.sobject, region=options.phone_region)
        self.sf_readers = tuple((rule.name, rule.transform.sf_reader(rule, ctx)) for rule in om.fields)
        self.mb_readers = tuple((rule.name, rule.transform.mb_reader(rule, ctx)) for rule in om.fields)
        #: (rule, may write Salesforce, may write the mailbox) per field, in mapping order
        self.fields = tuple((rule, *_can(options, kind, rule)) for rule in om.fields)

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


def _is_organiser(mailbox: MailboxRecord, options: ConnectionOptions) -> bool:
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
    return True


def _out_of_scope(
    kind: ObjectKind,
    mailbox: MailboxRecord | None,
    values: Mapping[str, Value],
    options: ConnectionOptions,
    now: datetime | None,
) -> str | None:
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
    if not options.sync_private_events and values.get("private") is True:
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
        elif kind == "event" and not _is_organiser(mailbox, options):
            notes.append(f"{reason}; the user does not organise this meeting → unlink only")
        else:
            ops.append(Operation("delete", "mailbox", kind, mailbox.id, reason=f"{reason} → delete in mailbox"))
            deleted_side = "both"
    else:
        assert salesforce is not None
        deleted_side = "mailbox"
        reason = "mailbox item deleted"
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


def _plan_create(
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
            relates.append(
                Operation(
                    "relate",
                    "salesforce",
                    om.sobject,
                    None,
                    body=rule.transform.relation(rule, None, value, ctx),
                    fields=(rule.name,),
                    reason=f"{rule.label}: relate the new record",
                )
            )
            target_values[rule.name] = value
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
        )
        ops = (create, *relates)
    link_op = Operation("link", "link", kind, None, reason="link the new record")
    return Plan(
        kind=kind,
        operations=(*ops, link_op),
        new_link=link,
        values=values if source_side == "salesforce" else target_values,
    )


# ---------------------------------------------------------------- the pair


type _Pending = tuple[FieldRule, Merged, Value, Value]
"""A field the merge decided something about: (rule, merge outcome, Salesforce value, mailbox value)."""


def _plan_pair(
    kind: ObjectKind,
    link: LinkState | None,
    salesforce: SalesforceRecord,
    mailbox: MailboxRecord,
    options: ConnectionOptions,
    mapping: MappingSet,
    now: datetime | None,
    created: None,
) -> Plan:
    """Read both records, merge every field (:func:`_merge_fields`), write the outcomes
    (:func:`_write_outcomes`) and link the pair with the snapshot after the writes."""
    om = mapping.compile(kind, salesforce.sobject, options.provider)
    bound = _bind(om, options, kind)
    sf_values = bound.read("salesforce", salesforce.data)
    mb_values = bound.read("mailbox", mailbox.data)
    scope = _out_of_scope(kind, mailbox, sf_values, options, now) or (
        _out_of_scope(kind, None, mb_values, options, now) if kind == "event" else None
    )
    if scope is not None:
        if link is None:
            return _skip(kind, None, scope)
        kept = LinkState(
            **{
                **_link_fields(link),
                "salesforce_version": salesforce.current_version,
                "mailbox_version": mailbox.current_version,
            }
        )
        return _skip(kind, kept, scope)

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
    new_link = _linked(
        kind,
        salesforce.sobject,
        salesforce.id,
        mailbox.id,
        None if (sf_patch or written.relates) else salesforce.current_version,
        None if mb_patch else mailbox.current_version,
        new_sf,
        new_mb,
        om.fingerprint,
    )
    decisions = written.decisions
    notes = (f"meeting: {held}",) if held is not None and any(d.kind == "held" for d in decisions) else ()
    return Plan(kind, tuple(ops), tuple(decisions), new_link, new_sf, notes)


def _merge_fields(
    bound: _Bound,
    link: LinkState | None,
    salesforce: SalesforceRecord,
    mailbox: MailboxRecord,
    sf_values: Mapping[str, Value],
    mb_values: Mapping[str, Value],
) -> list[_Pending]:
    """The three-way merge (merge.py) of every field whose values differ and changed since the
    snapshot; equal or already-decided fields are skipped without building anything."""
    pending: list[_Pending] = []
    newer: bool | None = None
    timed = False  # record times only matter to a conflict: parse them lazily, once
    if link is None:  # first sync: every difference is a conflict
        for rule, to_sf, to_mb in bound.fields:
            name = rule.name
            s = sf_values[name]
            m = mb_values[name]
            if s == m:
                continue
            if not timed:
                newer, timed = _salesforce_newer(salesforce, mailbox), True
            outcome = merge_values(rule.label, s, m, None, None, False, rule.policy, to_sf, to_mb, newer)
            if outcome is not None:
                pending.append((rule, outcome, s, m))
        return pending
    base_sf = link.salesforce_values
    base_mb = link.mailbox_values
    if sf_values == base_sf and mb_values == base_mb:
        return pending  # neither side changed anything since the last sync
    for rule, to_sf, to_mb in bound.fields:
        name = rule.name
        s = sf_values[name]
        m = mb_values[name]
        if s == m:
            continue
        bs = base_sf.get(name)
        bm = base_mb.get(name)
        if s == bs and m == bm:
            continue
        if not timed and s != bs and m != bm:
            newer, timed = _salesforce_newer(salesforce, mailbox), True
        outcome = merge_values(rule.label, s, m, bs, bm, True, rule.policy, to_sf, to_mb, newer)
        if outcome is not None:
            pending.append((rule, outcome, s, m))
    return pending


class _Written:
    """What :func:`_write_outcomes` produced: the patches, relate operations and decisions."""

    __slots__ = ("decisions", "mb_fields", "mb_patch", "relates", "sf_fields", "sf_patch")

    def __init__(self) -> None:
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
                out.relates.append(
                    Operation(
                        "relate",
                        "salesforce",
                        salesforce.sobject,
                        salesforce.id,
                        body=rule.transform.relation(rule, s, result, ctx),
                        fields=(rule.name,),
                        reason=reason,
                    )
                )
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


def _link_fields(link: LinkState) -> dict[str, Any]:
    return {name: getattr(link, name) for name in LinkState.__dataclass_fields__}


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
    if not _is_organiser(mailbox, options):
        return "the user does not organise this meeting, so it is never written"
    attendees = mailbox.data.get("attendees")
    if not attendees:
        return None
    if not options.invitation_mode:
        return "a meeting with attendees; Salesforce → mailbox updates are off (invitation mode)"
    if not any(rule.attendee_visible for rule in to_mailbox):
        return "a meeting with attendees and no change they would see (subject, time, location, body)"
    return None
