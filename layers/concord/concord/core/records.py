"""Canonical records: what a Contact, an Event and a logged email *are* to Concord, whichever system
they came from. Frozen, slotted dataclasses (cheap to build, safe to share).

The plan works on canonical *values* keyed by the mapping's field names (``normalize.Value``: plain,
JSON-friendly); these classes are the typed view of the same data, for code and people that read a
plan (``Plan.record``), with datetimes and dates as real ``datetime``/``date`` objects.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from concord.core.normalize import Value

__all__ = ["Contact", "EmailActivity", "Event", "record_from_values"]


def _text(values: Mapping[str, Value], name: str) -> str | None:
    value = values.get(name)
    return value if isinstance(value, str) else None


def _tuple(values: Mapping[str, Value], name: str) -> tuple[str, ...]:
    value = values.get(name)
    return value if isinstance(value, tuple) else ()


def _when(values: Mapping[str, Value], name: str) -> datetime | date | None:
    value = values.get(name)
    if not isinstance(value, str):
        return None
    if len(value) == 10:
        return date.fromisoformat(value)
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Contact:
    """A person: a Salesforce Contact or Lead, a Graph contact, a Google person."""

    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    business_phone: str | None = None
    mobile_phone: str | None = None
    home_phone: str | None = None
    title: str | None = None
    department: str | None = None
    company: str | None = None
    #: (street, city, state, postal code, country); ``""`` for a blank part
    mailing_address: tuple[str, ...] = ()
    birthday: date | None = None

    @classmethod
    def from_values(cls, values: Mapping[str, Value]) -> Contact:
        birthday = values.get("birthday")
        return cls(
            **{f.name: _text(values, f.name) for f in fields(cls) if f.type == "str | None"},
            mailing_address=_tuple(values, "mailing_address"),
            birthday=date.fromisoformat(birthday) if isinstance(birthday, str) else None,
        )


@dataclass(frozen=True, slots=True)
class Event:
    """A calendar event. ``start``/``end`` are aware UTC datetimes, or dates when ``all_day`` (then
    ``end`` is exclusive, as in both mailboxes)."""

    subject: str | None = None
    start: datetime | date | None = None
    end: datetime | date | None = None
    all_day: bool = False
    location: str | None = None
    description: str | None = None
    private: bool = False
    show_as: str | None = None
    attendees: tuple[str, ...] = ()
    ical_uid: str | None = None

    @classmethod
    def from_values(cls, values: Mapping[str, Value]) -> Event:
        return cls(
            subject=_text(values, "subject"),
            start=_when(values, "start"),
            end=_when(values, "end"),
            all_day=values.get("all_day") is True,
            location=_text(values, "location"),
            description=_text(values, "description"),
            private=values.get("private") is True,
            show_as=_text(values, "show_as"),
            attendees=_tuple(values, "attendees"),
            ical_uid=_text(values, "ical_uid"),
        )


@dataclass(frozen=True, slots=True)
class EmailActivity:
    """An email as logged to Salesforce (a Task): subject, participants' emails, date and snippet."""

    subject: str | None = None
    participants: tuple[str, ...] = ()
    date: date | None = None
    snippet: str | None = None

    @classmethod
    def from_values(cls, values: Mapping[str, Value]) -> EmailActivity:
        day = values.get("date")
        return cls(
            subject=_text(values, "subject"),
            participants=_tuple(values, "participants"),
            date=date.fromisoformat(day) if isinstance(day, str) else None,
            snippet=_text(values, "snippet"),
        )


def record_from_values(kind: str, values: Mapping[str, Value]) -> Contact | Event | EmailActivity:
    """The typed record for ``kind`` (``contact``, ``event``, ``email``) from canonical values."""
    if kind == "contact":
        return Contact.from_values(values)
    if kind == "event":
        return Event.from_values(values)
    return EmailActivity.from_values(values)
