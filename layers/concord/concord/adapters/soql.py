"""SOQL literals built from data: the one way a value enters a query.

Mailbox data (sender addresses, names, subjects) is written by anyone who can send an email, so every
value put into SOQL goes through :func:`literal` (or :func:`quote`, :func:`like`, :func:`in_list`), never
through string formatting of the raw value.

What Salesforce accepts, from the SOQL and SOSL Reference ("Quoted String Escape Sequences", "Reserved
Characters", "Date Formats and Date Literals"):

- a string literal is single-quoted; the escape character is ``\\``; ``\\'``, ``\\"``, ``\\\\``, ``\\n``,
  ``\\r``, ``\\t``, ``\\b``, ``\\f`` and ``\\uXXXX`` are the only escapes, any other backslash is an error;
- ``\\%`` and ``\\_`` are valid in a ``LIKE`` pattern only, where they match a literal ``%`` or ``_``;
- dates are ``YYYY-MM-DD`` and datetimes ``YYYY-MM-DDThh:mm:ssZ`` (or with a ``+hh:mm`` offset), unquoted.

Control characters other than newline, carriage return, tab and form feed are written as ``\\uXXXX``: the
docs name ``\\b`` "bell" in one place and it means backspace in Java, so neither is relied upon.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["in_list", "like", "literal", "quote"]

_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f"}
_WILDCARDS = frozenset("%_")

Value = str | bool | int | float | date | datetime | None


def _escape(text: str) -> str:
    out = []
    for char in text:
        escaped = _ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)  # unicode goes as itself: the query travels UTF-8 encoded in the URL
    return "".join(out)


def quote(value: str) -> str:
    """``value`` as a SOQL string literal for ``=``, ``!=``, ``IN``: ``O'Brien`` → ``'O\\'Brien'``."""
    if not isinstance(value, str):
        raise TypeError(f"quote() takes text, not {type(value).__name__}; use literal()")
    return "'" + _escape(value) + "'"


def like(value: str, *, prefix: str = "", suffix: str = "") -> str:
    """A ``LIKE`` pattern matching ``value`` literally, with wildcards only where the caller puts them.

    ``like("50%", suffix="%")`` → ``'50\\%%'`` (starts with ``50%``). ``prefix`` and ``suffix`` may hold
    only ``%`` and ``_``: they are the pattern, ``value`` is data.
    """
    if not isinstance(value, str):
        raise TypeError(f"like() takes text, not {type(value).__name__}")
    if not set(prefix + suffix) <= _WILDCARDS:
        raise ValueError("prefix and suffix may hold only the wildcards % and _")
    body = "".join("\\" + c if c in _WILDCARDS else c for c in _escape(value))
    return "'" + prefix + body + suffix + "'"


def literal(value: Value) -> str:
    """Any value as a SOQL literal: text quoted, ``true``/``false``, ``null``, numbers, dates, datetimes.

    A naive datetime is refused: SOQL compares instants, and a guessed time zone would move the bound.
    Datetimes are sent in UTC to the second (the documented form); a fraction is dropped, which moves a
    bound back by less than a second.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int: bool is an int
        return "true" if value else "false"
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("SOQL has no literal for NaN or infinity")
        return repr(value)
    if isinstance(value, datetime):  # before date: datetime is a date
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("a naive datetime has no instant; give it a time zone")
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, str):
        return quote(value)
    raise TypeError(f"no SOQL literal for {type(value).__name__}")


def in_list(values: Iterable[Value]) -> str:
    """``('a','b')`` for ``IN`` / ``NOT IN``; duplicates dropped, order kept.

    An empty list raises: ``IN ()`` is a malformed query, and the caller must decide what "none" means.
    """
    items = list(dict.fromkeys(literal(v) for v in values))
    if not items:
        raise ValueError("IN needs at least one value")
    return "(" + ",".join(items) + ")"
