"""Hypothesis state machine: two in-memory sides, human edits/creates/deletes on either, notices
duplicated, reordered and dropped, a periodic full reconcile, then quiesce and check the invariants:

- a deleted record never comes back, and no record is created twice for the same source;
- a quiet system stops writing (no ping-pong), at most one write per human edit (+1) per record;
- every live record is linked exactly once, no person exists twice on a side (records entered on both
  sides are matched, not duplicated), and both sides hold the same values;
- each link's snapshot holds what each side holds (echo safety: the next plan starts from the truth);
- the latest edit of a field survives unless a recorded decision overrode it; a clear made before the
  pair's first sync may also be filled in by a recorded first-sync ``blank`` decision (DESIGN.md: only
  the snapshot proves a deliberate clear; a blank never wins a first sync);
- a record deleted on one side is never re-created on that side, nor its survivor re-linked, by any
  later notice or reconcile (a tombstone stops late notices).

It runs twice: :class:`Sync` with delete propagation on, :class:`SyncWithoutDeletePropagation` with it
off. Off, a delete only unlinks: the other side's record (the survivor) stays, unlinked, and the end
checks expect exactly that; the pairing and equality checks then hold for the records still linked.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any, ClassVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from concord.core import ConnectionOptions, LinkState, MailboxRecord, Plan, SalesforceRecord, default_mapping, plan

NOW = datetime(2026, 1, 6, tzinfo=UTC)
# A Salesforce REST read returns every field the integration user can read, null when empty (a key
# left out means a field it cannot read: plan.py leaves such a field alone).
SF_READABLE = dict.fromkeys(
    top for rule in default_mapping().compile("contact", "Contact", "graph").fields for top in rule.sf_tops
)
# canonical field → (Salesforce field, Graph field); values drawn from a small lossless set
FIELDS = {
    "title": ("Title", "jobTitle"),
    "department": ("Department", "department"),
    "first_name": ("FirstName", "givenName"),
}
WORDS = st.sampled_from(["Ann", "Bob", "CTO", "CEO", "Sales", "Ops", ""])


class Sync(RuleBasedStateMachine):
    options: ClassVar[ConnectionOptions] = ConnectionOptions(propagate_deletes=True)

    def __init__(self) -> None:
        super().__init__()
        self.sf: dict[str, dict[str, Any]] = {}
        self.mb: dict[str, dict[str, Any]] = {}
        self.links: list[LinkState] = []
        self.notices: list[tuple[str, str]] = []
        self.clock = itertools.count(1)
        self.ids = itertools.count(1)
        self.edits: dict[tuple[str, str, str], tuple[str, int]] = {}  # (side, id, field) → (value, time)
        self.overrides: list[tuple[str | None, str | None, str, int]] = []
        self.first_sync_fills: list[tuple[str | None, str | None, str, int]] = []
        self.writes: dict[tuple[str, str], int] = {}
        self.human: dict[str, int] = {}
        self.created_for: dict[str, int] = {}
        self.deleted: set[str] = set()
        # survivor id → (side of its deleted partner, the deleted partner's id): the model's own record
        # of who was linked to a deleted record, independent of the tombstones plan() writes
        self.survivors: dict[str, tuple[str, str]] = {}

    def _stamp(self) -> str:
        tick = next(self.clock)
        return f"2026-01-05T{tick // 3600 % 24:02d}:{tick // 60 % 60:02d}:{tick % 60:02d}Z"

    def _touch_sf(self, sf_id: str) -> None:
        stamp = self._stamp()
        self.sf[sf_id]["LastModifiedDate"] = stamp
        self.sf[sf_id]["SystemModstamp"] = stamp + str(next(self.clock))

    def _touch_mb(self, mb_id: str) -> None:
        self.mb[mb_id]["lastModifiedDateTime"] = self._stamp()
        self.mb[mb_id]["changeKey"] = f"ck{next(self.clock)}"

    # ------------------------------------------------------------ humans
    @rule(name=WORDS, on_sf=st.booleans())
    def create(self, name: str, on_sf: bool) -> None:
        email = f"p{next(self.ids)}@example.com"
        if on_sf:
            sf_id = f"003{next(self.ids)}"
            self.sf[sf_id] = {"Id": sf_id, "LastName": "X", "FirstName": name or None, "Email": email}
            self._touch_sf(sf_id)
            self.notices.append(("salesforce", sf_id))
        else:
            mb_id = f"mb{next(self.ids)}"
            self.mb[mb_id] = {
                "id": mb_id,
                "surname": "X",
                "givenName": name or None,
                "emailAddresses": [{"address": email}],
            }
            self._touch_mb(mb_id)
            self.notices.append(("mailbox", mb_id))

    @rule(sf_name=WORDS, mb_name=WORDS)
    def create_on_both_sides(self, sf_name: str, mb_name: str) -> None:
        """The same person (same email) entered in both systems before any sync: one record each."""
        email = f"p{next(self.ids)}@example.com"
        sf_id, mb_id = f"003{next(self.ids)}", f"mb{next(self.ids)}"
        self.sf[sf_id] = {"Id": sf_id, "LastName": "X", "FirstName": sf_name or None, "Email": email}
        self.mb[mb_id] = {
            "id": mb_id,
            "surname": "X",
            "givenName": mb_name or None,
            "emailAddresses": [{"address": email}],
        }
        self._touch_sf(sf_id)
        self._touch_mb(mb_id)
        self.notices += [("salesforce", sf_id), ("mailbox", mb_id)]

    @precondition(lambda self: self.sf or self.mb)
    @rule(data=st.data(), field=st.sampled_from(sorted(FIELDS)), value=WORDS, on_sf=st.booleans())
    def edit(self, data: st.DataObject, field: str, value: str, on_sf: bool) -> None:
        side = self.sf if (on_sf and self.sf) or not self.mb else self.mb
        record_id = data.draw(st.sampled_from(sorted(side)))
        key = FIELDS[field][0 if side is self.sf else 1]
        side[record_id][key] = value or None
        name = "salesforce" if side is self.sf else "mailbox"
        (self._touch_sf if side is self.sf else self._touch_mb)(record_id)
        self.edits[(name, record_id, field)] = (value, next(self.clock))
        self.human[record_id] = self.human.get(record_id, 0) + 1
        self.notices.append((name, record_id))

    @precondition(lambda self: self.sf or self.mb)
    @rule(data=st.data(), on_sf=st.booleans())
    def delete(self, data: st.DataObject, on_sf: bool) -> None:
        side = self.sf if (on_sf and self.sf) or not self.mb else self.mb
        record_id = data.draw(st.sampled_from(sorted(side)))
        name = "salesforce" if side is self.sf else "mailbox"
        del side[record_id]
        self.deleted.add(record_id)
        for lk in self.links:
            if not lk.is_tombstone and record_id in (lk.salesforce_id, lk.mailbox_id):
                survivor = lk.mailbox_id if name == "salesforce" else lk.salesforce_id
                self.survivors[survivor or ""] = (name, record_id)
        self.notices.append((name, record_id))

    @precondition(lambda self: self.sf or self.mb)
    @rule(data=st.data())
    def touch_without_change(self, data: st.DataObject) -> None:
        sf_id = data.draw(st.sampled_from(sorted(self.sf))) if self.sf else None
        if sf_id is not None:
            self._touch_sf(sf_id)
            self.notices.append(("salesforce", sf_id))

    # ------------------------------------------------------------ the channel
    @precondition(lambda self: self.notices)
    @rule(data=st.data(), duplicate=st.booleans())
    def deliver(self, data: st.DataObject, duplicate: bool) -> None:
        index = data.draw(st.integers(0, len(self.notices) - 1))  # reordered
        side, record_id = self.notices[index] if duplicate else self.notices.pop(index)
        self.sync(side, record_id)

    @precondition(lambda self: self.notices)
    @rule(data=st.data())
    def drop(self, data: st.DataObject) -> None:
        self.notices.pop(data.draw(st.integers(0, len(self.notices) - 1)))

    @rule()
    def reconcile(self) -> None:
        for sf_id in sorted(self.sf):
            self.sync("salesforce", sf_id)
        for mb_id in sorted(self.mb):
            self.sync("mailbox", mb_id)
        for link in list(self.links):
            if not link.is_tombstone and link.salesforce_id is not None:
                self.sync("salesforce", link.salesforce_id)

    # ------------------------------------------------------------ the worker
    def _find(self, side: str, record_id: str) -> LinkState | None:
        for link in self.links:
            if (link.salesforce_id if side == "salesforce" else link.mailbox_id) == record_id:
                return link
        return None

    def sync(self, side: str, record_id: str) -> None:  # noqa: C901, PLR0912 (the fake worker: one branch per operation)
        link = self._find(side, record_id)
        sf_id = link.salesforce_id if link else (record_id if side == "salesforce" else None)
        mb_id = link.mailbox_id if link else (record_id if side == "mailbox" else None)
        sf = self._sf_record(sf_id)
        mb = self._mb_record(mb_id)
        linked_ids = {i for lk in self.links for i in (lk.salesforce_id, lk.mailbox_id)}
        candidates: list[SalesforceRecord | MailboxRecord] = []
        if link is None and sf is None and mb is not None:
            candidates = [r for i in self.sf if i not in linked_ids if (r := self._sf_record(i))]
        if link is None and mb is None and sf is not None:
            candidates = [r for i in self.mb if i not in linked_ids if (r := self._mb_record(i))]
        result = plan("contact", link, sf, mb, self.options, candidates=candidates, now=NOW)
        self._assert_not_recreated(result, sf_id, mb_id)
        new_sf, new_mb = sf_id, mb_id
        for op in result.operations:
            if op.side == "salesforce" and op.action == "create":
                new_sf = f"003{next(self.ids)}"
                self.sf[new_sf] = {"Id": new_sf, **op.body}
                self._touch_sf(new_sf)
                self.created_for[mb_id or ""] = self.created_for.get(mb_id or "", 0) + 1
            elif op.side == "mailbox" and op.action == "create":
                new_mb = f"mb{next(self.ids)}"
                self.mb[new_mb] = {"id": new_mb, **op.body}
                self._touch_mb(new_mb)
                self.created_for[sf_id or ""] = self.created_for.get(sf_id or "", 0) + 1
            elif op.action == "update" and op.side == "salesforce" and op.record_id in self.sf:
                new_sf = op.record_id  # a matched record: the update names it, the notice did not
                self.sf[new_sf].update(op.body)
                self._touch_sf(new_sf)
            elif op.action == "update" and op.side == "mailbox" and op.record_id in self.mb:
                new_mb = op.record_id
                self.mb[new_mb].update(op.body)
                self._touch_mb(new_mb)
            elif op.action == "delete":
                (self.sf if op.side == "salesforce" else self.mb).pop(op.record_id or "", None)
            elif op.action == "relate" and op.body.get("relation") == "Account":
                target = new_sf if op.record_id is None else op.record_id
                if target in self.sf:
                    self.sf[target]["Account"] = {"Name": op.body["name"]}
            if op.action in ("update", "delete") and op.side != "link":
                key = (op.side, (new_sf if op.side == "salesforce" else new_mb) or "")
                self.writes[key] = self.writes.get(key, 0) + 1
        for decision in result.decisions:
            if decision.overridden is not None:
                self.overrides.append((new_sf, new_mb, decision.field, next(self.clock)))
            elif decision.kind == "blank" and link is None:
                self.first_sync_fills.append((new_sf, new_mb, decision.field, next(self.clock)))
        if result.new_link is not None:
            stored = result.new_link.with_ids(
                salesforce_id=new_sf,
                mailbox_id=new_mb,
                salesforce_version=self.sf.get(new_sf or "", {}).get("SystemModstamp"),
                mailbox_version=self.mb.get(new_mb or "", {}).get("changeKey"),
            )
            self._assert_not_relinked(stored)
            self.links = [lk for lk in self.links if lk is not link] + [stored]

    def _assert_not_recreated(self, result: Plan, sf_id: str | None, mb_id: str | None) -> None:
        """A record deleted on one side is never re-created on that side from its survivor."""
        for op in result.operations:
            if op.action == "create":
                source = mb_id if op.side == "salesforce" else sf_id
                gone = self.survivors.get(source or "")
                assert gone is None or gone[0] != op.side, f"deleted {gone} re-created from {source} by a late sync"

    def _assert_not_relinked(self, stored: LinkState) -> None:
        """The survivor of a delete is never linked again (its tombstone is the only link it keeps)."""
        if not stored.is_tombstone:
            for survivor in (stored.salesforce_id, stored.mailbox_id):
                gone = self.survivors.get(survivor or "")
                assert gone is None, f"{survivor} re-linked after its partner {gone} was deleted"

    def _sf_record(self, sf_id: str | None) -> SalesforceRecord | None:
        if sf_id is None:
            return None
        if sf_id not in self.sf:
            return SalesforceRecord(id=sf_id, sobject="Contact", deleted=True)
        return SalesforceRecord(id=sf_id, sobject="Contact", data={**SF_READABLE, **self.sf[sf_id]})

    def _mb_record(self, mb_id: str | None) -> MailboxRecord | None:
        if mb_id is None:
            return None
        if mb_id not in self.mb:
            return MailboxRecord(id=mb_id, deleted=True)
        return MailboxRecord(id=mb_id, data=dict(self.mb[mb_id]))

    # ------------------------------------------------------------ invariants
    @invariant()
    def deleted_records_never_come_back(self) -> None:
        assert not (self.deleted & (set(self.sf) | set(self.mb)))
        assert all(count <= 1 for count in self.created_for.values())

    def teardown(self) -> None:
        for _ in range(3):  # quiesce
            self.notices.clear()
            self.reconcile()
        before = dict(self.writes)
        self.reconcile()
        assert self.writes == before, "ping-pong: a quiet system kept writing"
        live = [lk for lk in self.links if not lk.is_tombstone]
        # Off, a delete only unlinks: the survivor stays, unlinked (on, it is deleted too).
        survivors = {s for s in self.survivors if s in self.sf or s in self.mb}
        if self.options.propagate_deletes:
            assert not survivors, f"a delete did not propagate to {survivors}"
        linked_sf = {lk.salesforce_id for lk in live}
        linked_mb = {lk.mailbox_id for lk in live}
        assert not survivors & (linked_sf | linked_mb), "a survivor of a delete was linked again"
        sf_emails = [record.get("Email") for record in self.sf.values()]
        mb_emails = [record["emailAddresses"][0]["address"] for record in self.mb.values()]
        assert len(set(sf_emails)) == len(sf_emails), "a duplicate Salesforce record (matching skipped?)"
        assert len(set(mb_emails)) == len(mb_emails), "a duplicate mailbox record (matching skipped?)"
        assert len(linked_sf) == len(live) and len(linked_mb) == len(live), "a record linked twice"
        assert linked_sf | (survivors & set(self.sf)) == set(self.sf), "an unlinked Salesforce record"
        assert linked_mb | (survivors & set(self.mb)) == set(self.mb), "an unlinked mailbox record"
        for lk in live:
            sf, mb = self.sf[lk.salesforce_id or ""], self.mb[lk.mailbox_id or ""]
            for field, (sf_key, mb_key) in FIELDS.items():
                assert (sf.get(sf_key) or None) == (mb.get(mb_key) or None), (field, sf, mb)
                # echo safety: the snapshot holds what each side holds after the writes (plan.py)
                assert lk.salesforce_values.get(field) == (sf.get(sf_key) or None), ("stale snapshot", field, lk)
                assert lk.mailbox_values.get(field) == (mb.get(mb_key) or None), ("stale snapshot", field, lk)
                self._edit_kept(lk, field, sf.get(sf_key) or "")
            for side, record_id in (("salesforce", lk.salesforce_id), ("mailbox", lk.mailbox_id)):
                humans = self.human.get(lk.salesforce_id or "", 0) + self.human.get(lk.mailbox_id or "", 0)
                assert self.writes.get((side, record_id or ""), 0) <= humans + 1, "more writes than edits"

    def _edit_kept(self, link: LinkState, field: str, final: str) -> None:
        edits = [
            (when, value)
            for (side, record_id, name), (value, when) in self.edits.items()
            if name == field and record_id in (link.salesforce_id, link.mailbox_id)
        ]
        if not edits:
            return
        when, value = max(edits)
        if value == final:
            return
        decisions = self.overrides + (self.first_sync_fills if value == "" else [])
        decided = any(
            name == field and at > when and (sf_id == link.salesforce_id or mb_id == link.mailbox_id)
            for sf_id, mb_id, name, at in decisions
        )
        assert decided, f"edit {field}={value!r} lost without a recorded decision (final {final!r})"


Sync.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, derandomize=True, database=None, deadline=None
)
TestConvergence = Sync.TestCase


class SyncWithoutDeletePropagation(Sync):
    """The same machine with delete propagation off: a delete unlinks, the survivor stays unlinked."""

    options = ConnectionOptions(propagate_deletes=False)


SyncWithoutDeletePropagation.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, derandomize=True, database=None, deadline=None
)
TestConvergenceWithoutDeletePropagation = SyncWithoutDeletePropagation.TestCase
