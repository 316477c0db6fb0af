"""Concord's pure sync core: what a sync does, decided without any I/O.

Start at :func:`plan` (plan.py's docstring walks through its steps). The pieces:

- ``records``: canonical Contact, Event, EmailActivity; ``normalize``/``timezones``: comparison forms;
- ``mapping`` (+ ``default_mapping.yaml``, ``catalog``, ``paths``, ``transforms``): the YAML field mapping,
  validated with file:line errors and compiled once;
- ``merge``: the three-way per-field merge, its conflict policies and clear policies;
- ``matching``: finding an existing record before creating one;
- ``state``: records, link state (JSON round-trip; ``with_ids``/``settle_relation``/``with_values`` for
  what the worker learns while executing a plan) and connection options;
- ``guards``: the mass-delete guard over a batch of plans.

Nothing here imports boto3, botocore, httpx, pynamodb or Powertools (a lint rule enforces it).
"""

from __future__ import annotations

from concord.core.guards import GuardVerdict, check_mass_delete, hold_deletes
from concord.core.mapping import MappingError, MappingSet, ObjectKind, default_mapping, load_mapping
from concord.core.merge import Clears, Direction, Policy
from concord.core.normalize import Value
from concord.core.plan import Action, Decision, Operation, Plan, plan
from concord.core.records import Contact, EmailActivity, Event
from concord.core.state import ConnectionOptions, DeleteLimits, LinkState, MailboxRecord, SalesforceRecord, Side

__all__ = [
    "Action",
    "Clears",
    "ConnectionOptions",
    "Contact",
    "Decision",
    "DeleteLimits",
    "Direction",
    "EmailActivity",
    "Event",
    "GuardVerdict",
    "LinkState",
    "MailboxRecord",
    "MappingError",
    "MappingSet",
    "ObjectKind",
    "Operation",
    "Plan",
    "Policy",
    "SalesforceRecord",
    "Side",
    "Value",
    "check_mass_delete",
    "default_mapping",
    "hold_deletes",
    "load_mapping",
    "plan",
]
