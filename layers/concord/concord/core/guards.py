"""The mass-delete guard: a batch that would delete more than a set count or share of a connection's
links stops and reports until on-call approves (``ConnectionOptions.mass_delete_approved``).

It works on a batch of plans because one plan cannot know how many deletes its neighbours make. The
worker calls :func:`check_mass_delete` before executing a batch and, when it trips, executes
:func:`hold_deletes`'s plans instead (everything but the deletes) and reports the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from concord.core.plan import Operation, Plan

if TYPE_CHECKING:
    from collections.abc import Sequence

    from concord.core.state import ConnectionOptions, DeleteLimits

__all__ = ["GuardVerdict", "check_mass_delete", "hold_deletes"]


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    """``tripped`` with a reason, the planned delete count and the limits that applied."""

    tripped: bool
    deletes: int
    links: int
    limits: DeleteLimits | None
    reason: str


def check_mass_delete(plans: Sequence[Plan], links: int, kind: str, options: ConnectionOptions) -> GuardVerdict:
    """Would this batch delete too much of a connection's ``links`` (its current link count)?"""
    deletes = sum(p.deletes for p in plans if p.kind == kind)
    limits = options.delete_limits.get(kind)
    if limits is None or deletes == 0:
        return GuardVerdict(False, deletes, links, limits, "no guard applies")
    if options.mass_delete_approved:
        return GuardVerdict(False, deletes, links, limits, "mass delete approved by on-call")
    if deletes > limits.count:
        return GuardVerdict(
            True,
            deletes,
            links,
            limits,
            f"mass-delete guard: {deletes} {kind} deletes exceed the limit of {limits.count}",
        )
    if deletes >= limits.minimum and deletes > limits.share * links:
        return GuardVerdict(
            True,
            deletes,
            links,
            limits,
            f"mass-delete guard: {deletes} of {links} {kind} links ({deletes / max(links, 1):.0%}) exceed "
            f"{limits.share:.0%}",
        )
    return GuardVerdict(False, deletes, links, limits, "within limits")


def hold_deletes(plans: Sequence[Plan], verdict: GuardVerdict) -> list[Plan]:
    """The plans with their deletes held back: a plan that deletes becomes a ``skip`` that keeps the
    old link (so the delete is planned again once approved). Unchanged when the guard did not trip."""
    if not verdict.tripped:
        return list(plans)
    held: list[Plan] = []
    for item in plans:
        if item.deletes == 0:
            held.append(item)
            continue
        skip = Operation("skip", "link", item.kind, None, reason=verdict.reason)
        held.append(replace(item, operations=(skip,), new_link=None, notes=(*item.notes, verdict.reason)))
    return held
