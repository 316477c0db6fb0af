"""Matching before creating: is an unlinked record already on the other side?

Rules (DESIGN.md, "Matching before creating"), tried in order; the first rule that finds anything
decides:
- contacts: by email, then by first name + last name + company. Among Salesforce candidates, Contacts
  are tried before Leads: a Contact match wins over any number of Lead matches.
- events: by iCalendar UID (the Salesforce Event keeps the mailbox's UID in a custom field), then by
  subject + start + end.
- emails: by `Message-ID` (a Task keeps it in a custom field), so an email in several mailboxes is one Task.

A rule applies only when the source record has every key field (a contact without an email is not
matched by email). Text compares case-insensitively; emails, phones and times in canonical form. Exactly
one candidate is a match; two or more are an ambiguity, reported with their ids and never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from concord.core.state import ConnectionOptions, MailboxRecord, SalesforceRecord, Side
from concord.core.transforms import Context

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from concord.core.mapping import MappingSet, ObjectKind
    from concord.core.normalize import Value

__all__ = ["MATCH_KEYS", "Match", "find_match"]

type Candidate = SalesforceRecord | MailboxRecord

MATCH_KEYS: Final[dict[str, tuple[tuple[str, ...], ...]]] = {
    "contact": (("email",), ("first_name", "last_name", "company")),
    "event": (("ical_uid",), ("subject", "start", "end")),
    "email": (("message_id",),),
}


#: Salesforce objects searched for a mailbox record, in order: a Contact match wins over any Lead.
_SALESFORCE_TIERS: Final[dict[str, tuple[str, ...]]] = {
    "contact": ("Contact", "Lead"),
    "event": ("Event",),
    "email": ("Task",),
}


@dataclass(frozen=True, slots=True)
class Match:
    """The outcome: ``record`` (one match), ``ambiguous`` (the ids of several), or neither."""

    record: SalesforceRecord | MailboxRecord | None = None
    ambiguous: tuple[str, ...] = ()
    reason: str = ""


def _key(values: Mapping[str, Value], names: tuple[str, ...]) -> tuple[Value, ...] | None:
    key: list[Value] = []
    for name in names:
        value = values.get(name)
        if value is None:
            return None
        key.append(value.casefold() if isinstance(value, str) else value)
    return tuple(key)


def find_match(
    kind: ObjectKind,
    source_side: Side,
    values: Mapping[str, Value],
    candidates: Sequence[SalesforceRecord | MailboxRecord],
    mapping: MappingSet,
    options: ConnectionOptions,
) -> Match:
    """Find the one record among ``candidates`` (records of the side opposite ``source_side``) that is
    the same as the source record with canonical ``values``."""
    rules = MATCH_KEYS.get(kind, ())
    if not candidates or not rules:
        return Match()
    tiers: list[tuple[str, list[tuple[Candidate, dict[str, Value]]]]] = []
    if source_side == "mailbox":
        for sobject in _SALESFORCE_TIERS[kind]:
            tier: list[tuple[Candidate, dict[str, Value]]] = [
                (candidate, _values(kind, candidate, mapping, options))
                for candidate in candidates
                if isinstance(candidate, SalesforceRecord) and not candidate.deleted and candidate.sobject == sobject
            ]
            tiers.append((sobject, tier))
    else:
        sobject = "Contact" if kind == "contact" else "Event"
        tiers.append(
            (
                "mailbox",
                [
                    (candidate, _values(kind, candidate, mapping, options, sobject))
                    for candidate in candidates
                    if isinstance(candidate, MailboxRecord) and not candidate.deleted
                ],
            )
        )
    for names in rules:
        wanted = _key(values, names)
        if wanted is None:
            continue
        for tier_name, tier in tiers:
            hits = [candidate for candidate, found in tier if _key(found, names) == wanted]
            rule = " + ".join(names)
            if len(hits) == 1:
                return Match(record=hits[0], reason=f"matched {tier_name} {hits[0].id} by {rule}")
            if len(hits) > 1:
                ids = tuple(hit.id for hit in hits)
                return Match(
                    ambiguous=ids,
                    reason=f"ambiguous: {len(ids)} {tier_name} candidates by {rule} ({', '.join(ids)}); "
                    "nothing created or linked",
                )
    return Match()


def _values(
    kind: ObjectKind,
    record: SalesforceRecord | MailboxRecord,
    mapping: MappingSet,
    options: ConnectionOptions,
    sobject: str | None = None,
) -> dict[str, Value]:
    if isinstance(record, SalesforceRecord):
        om = mapping.compile(kind, record.sobject, options.provider)
        ctx = Context(provider=options.provider, sobject=record.sobject, region=options.phone_region)
        return {rule.name: rule.transform.read_sf(rule, record.data, ctx) for rule in om.fields}
    target = sobject or "Contact"
    om = mapping.compile(kind, target, options.provider)
    ctx = Context(provider=options.provider, sobject=target, region=options.phone_region)
    return {
        rule.name: rule.transform.read_mb(rule, record.data, ctx) if rule.mb_path is not None else None
        for rule in om.fields
    }
