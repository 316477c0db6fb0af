"""Three-way merge of one field against the last-synced snapshot, with the conflict policies as named
strategies.

The snapshot keeps, per field, the value *each side* held after the last successful sync (usually the
same; they differ where a write was deliberately not made: a one-way field, a meeting the user may not
update, a value a system cannot hold exactly). So "changed" is always judged per side, against what that
side held, and a divergence that was decided once is never re-decided.

Rules, in order (a decision names the one that applied):
1. Equal values need nothing.
2. A side *changed* when its value differs from its snapshot value (on first sync, with no snapshot,
   both count as changed). Only one side changed: that side wins. Both changed: a conflict, settled by
   the policy: ``most_recent`` (default; the side with the later last-modified time; a tie or a missing
   time goes to Salesforce), ``salesforce_wins_unless_blank`` / ``mailbox_wins_unless_blank`` (that side
   wins the conflict), ``salesforce_always`` / ``mailbox_always`` (that side wins whenever the values
   differ, even when only the other side changed: the other side's edits are reverted).
3. Blanks. A *deliberate clear*, which only the snapshot can prove (the field held a value on the side
   that blanked it, and the other side did not change since the last sync), is a change like any other
   with ``clears: propagate`` (the default, decision ``clear``): the other side is cleared too, except
   a required Salesforce field, which is never blanked (decision ``required``, nothing written, the
   divergence remembered). Every other blank loses to a value (decision ``blank``): a blank never wins a
   conflict, a first sync, or a clear under ``clears: keep``; the value is restored on the blank side.
   ``overridden`` then names the blank side when its blank was an edit (a conflict, ``keep``), and no
   side on a first sync: with no snapshot a blank is not known to be an edit, so filling it in discards
   nothing, whichever side's record is newer (DESIGN.md: "a blank never wins ... a first sync").
4. Direction: a winner is written only where the field's effective direction lets it flow (a read-only
   Salesforce field flows only toward the mailbox). Otherwise nothing is written and the divergence is
   remembered in the snapshot.

Sets of related records (attendees, email participants) are not merged here: plan.py merges them by
membership (each side receives the other side's additions and removals).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

if TYPE_CHECKING:
    from concord.core.normalize import Value

__all__ = [
    "CLEARS",
    "DIRECTIONS",
    "POLICIES",
    "Clears",
    "Direction",
    "FieldOutcome",
    "Policy",
    "fmt",
    "merge_field",
    "merge_values",
]

type Direction = Literal["both", "to_salesforce", "to_mailbox"]
type Policy = Literal[
    "most_recent",
    "salesforce_wins_unless_blank",
    "mailbox_wins_unless_blank",
    "salesforce_always",
    "mailbox_always",
]
type Winner = Literal["salesforce", "mailbox"]
type Clears = Literal["propagate", "keep"]

DIRECTIONS: Final = ("both", "to_salesforce", "to_mailbox")
CLEARS: Final = ("propagate", "keep")
POLICIES: Final = (
    "most_recent",
    "salesforce_wins_unless_blank",
    "mailbox_wins_unless_blank",
    "salesforce_always",
    "mailbox_always",
)

_OTHER: Final[dict[Winner, Winner]] = {"salesforce": "mailbox", "mailbox": "salesforce"}
_FORCED: Final[dict[str, Winner]] = {"salesforce_always": "salesforce", "mailbox_always": "mailbox"}
_NAME: Final[dict[Winner, str]] = {"salesforce": "Salesforce", "mailbox": "mailbox"}


@dataclass(frozen=True, slots=True)
class FieldOutcome:
    """What the merge decided for one field.

    ``write_to`` is the side to write ``value`` to (or ``None``); ``kind`` is ``flow`` (a one-sided
    change), ``conflict``, ``blank`` (a blank lost to a value), ``clear`` (a deliberate clear
    propagated), ``required`` (a clear not written to a required Salesforce field), ``direction`` (not
    written: the direction forbids it), ``first_sync`` or ``policy`` (an ``*_always`` policy reverted
    an edit); ``overridden`` is the side whose new value was discarded, if any.
    """

    value: Value
    write_to: Winner | None
    kind: str
    reason: str
    overridden: Winner | None = None


def fmt(value: Value) -> str:
    """A value as a person reads it in a reason: ``'CTO'``, ``blank``, ``'a@x.com, b@y.com'``."""
    if value is None:
        return "blank"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple):
        return repr(", ".join(part for part in value if part))
    return repr(value)


def _blank(value: Value) -> bool:
    return value is None or value in ("", ())


def merge_field(
    label: str,
    *,
    salesforce: Value,
    mailbox: Value,
    base_salesforce: Value,
    base_mailbox: Value,
    has_base: bool,
    policy: Policy,
    can_write_salesforce: bool,
    can_write_mailbox: bool,
    salesforce_newer: bool | None,
    clears: Clears = "propagate",
    salesforce_required: bool = False,
) -> FieldOutcome | None:
    """Merge one field (see the module docstring). ``None`` means nothing to do or say.

    ``salesforce_newer`` is the comparison of the two records' last-modified times (``None`` when
    unknown or equal) and only matters to ``most_recent``. ``clears`` is the field's clear policy;
    ``salesforce_required``: the Salesforce field may not be blanked.
    """
    merged = merge_values(
        label,
        salesforce,
        mailbox,
        base_salesforce,
        base_mailbox,
        has_base,
        policy,
        can_write_salesforce,
        can_write_mailbox,
        salesforce_newer,
        clears,
        salesforce_required,
    )
    return None if merged is None else FieldOutcome(*merged)


type Merged = tuple[Value, Winner | None, str, str, Winner | None]
""":class:`FieldOutcome`'s fields as a tuple: ``(value, write_to, kind, reason, overridden)``."""


def merge_values(  # noqa: PLR0912, PLR0913 (positional on purpose: the plan's hot path; the docstring's rules in order)
    label: str,
    salesforce: Value,
    mailbox: Value,
    base_salesforce: Value,
    base_mailbox: Value,
    has_base: bool,
    policy: Policy,
    can_write_salesforce: bool,
    can_write_mailbox: bool,
    salesforce_newer: bool | None,
    clears: Clears = "propagate",
    salesforce_required: bool = False,
) -> Merged | None:
    """:func:`merge_field` with positional arguments and a plain tuple result (the plan's hot path)."""
    if salesforce == mailbox:
        return None
    sf_changed = not has_base or salesforce != base_salesforce
    mb_changed = not has_base or mailbox != base_mailbox
    if not sf_changed and not mb_changed:
        return None  # a divergence decided before (see module docstring)

    kind: str
    overridden: Winner | None = None
    winner: Winner
    if not has_base:
        winner, why = _settle_conflict(policy, salesforce_newer)
        kind = "first_sync"
        # With no snapshot an edit cannot be told from a value long held, so the losing side's value,
        # if it had one, is recorded as overridden: the sync log must show what was replaced.
        if not _blank(mailbox if winner == "salesforce" else salesforce):
            overridden = _OTHER[winner]
        story = f"first sync, Salesforce has {fmt(salesforce)} and mailbox has {fmt(mailbox)}; {why}"
    elif sf_changed and mb_changed:
        winner, why = _settle_conflict(policy, salesforce_newer)
        kind = "conflict"
        overridden = _OTHER[winner]
        story = (
            f"conflict, Salesforce changed {fmt(base_salesforce)} → {fmt(salesforce)} and mailbox changed "
            f"{fmt(base_mailbox)} → {fmt(mailbox)}; {why}"
        )
    else:
        if sf_changed:
            story = f"Salesforce changed {fmt(base_salesforce)} → {fmt(salesforce)}, mailbox unchanged since last sync"
            winner = "salesforce"
        else:
            story = f"mailbox changed {fmt(base_mailbox)} → {fmt(mailbox)}, Salesforce unchanged since last sync"
            winner = "mailbox"
        kind = "flow"
        forced = _FORCED.get(policy)
        if forced is not None and forced != winner:
            winner, kind, overridden = forced, "policy", winner
            kept = salesforce if forced == "salesforce" else mailbox
            story += f"; {policy}: keep {_NAME[forced]}'s {fmt(kept)}"

    value = salesforce if winner == "salesforce" else mailbox
    if _blank(value):
        held = base_salesforce if winner == "salesforce" else base_mailbox
        if kind == "flow" and clears == "propagate" and not _blank(held):
            if winner == "mailbox" and salesforce_required:
                return (
                    value,
                    None,
                    "required",
                    f"{label}: {story} → not written to Salesforce (a required field is never cleared)",
                    None,
                )
            kind = "clear"
            story += f"; a deliberate clear of {fmt(held)}"
        else:
            # A blank loses to a value; a first-sync blank is not known to be an edit, so filling it in
            # discards nothing.
            kind, overridden, winner = "blank", winner if has_base else None, _OTHER[winner]
            value = salesforce if winner == "salesforce" else mailbox
            story += f"; a blank never overwrites data, keep {_NAME[winner]}'s {fmt(value)}"

    target = _OTHER[winner]
    if not (can_write_mailbox if target == "mailbox" else can_write_salesforce):
        return (
            value,
            None,
            "direction",
            f"{label}: {story} → not written to {_NAME[target]} (direction of this field)",
            None,
        )
    return value, target, kind, f"{label}: {story} → write to {_NAME[target]}", overridden


def _settle_conflict(policy: Policy, salesforce_newer: bool | None) -> tuple[Winner, str]:
    if policy == "most_recent":
        if salesforce_newer is False:
            return "mailbox", "most_recent: mailbox modified later"
        if salesforce_newer is True:
            return "salesforce", "most_recent: Salesforce modified later"
        return "salesforce", "most_recent: same or unknown modification times, Salesforce wins ties"
    if policy in ("salesforce_wins_unless_blank", "salesforce_always"):
        return "salesforce", f"{policy}: Salesforce wins"
    return "mailbox", f"{policy}: mailbox wins"
