"""Normalisation used for comparison: two values that mean the same thing compare equal.

Every canonical value is one of :data:`Value`'s plain, hashable, JSON-friendly shapes, so that a link's
snapshot can be stored as JSON and compared without conversion:

- text: ``str`` with whitespace collapsed and ends trimmed; multi-line text (bodies, descriptions) keeps
  its line breaks but collapses runs of spaces and of blank lines; HTML is reduced to text first;
- email: trimmed and lower-cased;
- phone: E.164 (``+14155550100``) when ``phonenumbers`` can parse it as a possible number in the
  connection's default region, else the text as entered (whitespace collapsed): an extension or a
  vanity number is kept, not dropped;
- date-time: an aware instant rendered in UTC as ``YYYY-MM-DDTHH:MM:SSZ`` (seconds precision: Graph's
  seven fractional digits and Salesforce's milliseconds would otherwise never compare equal);
- date (birthdays, all-day events): ``YYYY-MM-DD``;
- lists (attendees, participants, address parts): tuples.

A *blank* is ``None``, an empty string or an empty tuple; readers return ``None`` for every blank so that
``None`` is the only blank a comparison sees.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from functools import cache, lru_cache, partial
from html import unescape
from html.parser import HTMLParser
from typing import TYPE_CHECKING

import phonenumbers

from concord.core.timezones import resolve_zone

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "NO_YEAR",
    "Value",
    "date_key",
    "datetime_key",
    "datetime_text",
    "email",
    "email_str",
    "html_to_text",
    "is_blank",
    "multiline_str",
    "multiline_text",
    "parse_date",
    "parse_datetime",
    "phone",
    "phone_parser",
    "text",
    "text_str",
]

type Value = str | bool | int | tuple[str, ...] | None
"""A canonical field value (see the module docstring)."""

_SPACES = re.compile(r"[ \t\r\f\v\u00a0\u200b]+")
_ANY_SPACE = re.compile(r"\s+")
_BLANK_LINES = re.compile(r"\n{3,}")
_HTML_HINT = re.compile(r"<\s*(html|body|div|p|br|span|table|b|i|a|ul|ol|li|font|strong|em)\b", re.I)


def is_blank(value: object) -> bool:
    """True for ``None``, ``""`` (or only whitespace) and empty collections."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (tuple, list, dict)):
        return not value
    return False


def text(value: object) -> str | None:
    """Single-line text: whitespace collapsed, trimmed; blank → ``None``."""
    if value is None:
        return None
    return _text(value if type(value) is str else str(value))


@lru_cache(maxsize=16384)
def _text(value: str) -> str | None:
    # Cached: the same names, titles and cities are compared on every plan.
    collapsed = _ANY_SPACE.sub(" ", value).strip()
    return collapsed or None


text_str = _text
""":func:`text` of a ``str`` (cached)."""


def multiline_text(value: object) -> str | None:
    """Text that keeps its line breaks: each line collapsed and trimmed, at most one empty line in a
    row, ends trimmed; blank → ``None``."""
    if value is None:
        return None
    return _multiline(value if type(value) is str else str(value))


@lru_cache(maxsize=4096)
def _multiline(value: str) -> str | None:
    lines = [_SPACES.sub(" ", line).strip() for line in value.replace("\r\n", "\n").split("\n")]
    joined = _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
    return joined or None


multiline_str = _multiline
""":func:`multiline_text` of a ``str`` (cached)."""


class _TextExtractor(HTMLParser):
    _BLOCKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "hr"})
    _SKIP = frozenset({"style", "script", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCKS:
            self._break()

    def _break(self) -> None:
        # Adjacent block boundaries (</p><p>) make one line break, not an empty line.
        if self.parts and not self.parts[-1].endswith("\n"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCKS and tag != "br":
            self._break()

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            # In HTML a source line break is just a space; only tags make lines.
            self.parts.append(_ANY_SPACE.sub(" ", data))


@lru_cache(maxsize=1024)
def html_to_text(value: str) -> str | None:
    """The text of an HTML fragment or document, with block elements as line breaks, normalised like
    :func:`multiline_text`. Plain text (no tag-like markup) is only normalised."""
    if not _HTML_HINT.search(value):
        return multiline_text(unescape(value) if "&" in value else value)
    extractor = _TextExtractor()
    extractor.feed(value)
    extractor.close()
    return multiline_text("".join(extractor.parts))


def email(value: object) -> str | None:
    """An email address trimmed and lower-cased; blank → ``None``."""
    if not isinstance(value, str):
        return None if value is None else text(value)
    return email_str(value)


@lru_cache(maxsize=16384)
def email_str(value: str) -> str | None:
    """:func:`email` of a ``str`` (cached)."""
    cleaned = value.strip().lower()
    return cleaned or None


@cache
def phone_parser(region: str) -> Callable[[str], str | None]:
    """:func:`phone` of a ``str`` for one default ``region``: a cached function of the text alone
    (parsing with ``phonenumbers`` is the most expensive normalisation; each number is parsed once)."""
    return lru_cache(maxsize=8192)(partial(_parse_phone, region=region))


def _parse_phone(raw: str, region: str) -> str | None:
    cleaned = text(raw)
    if cleaned is None:
        return None
    try:
        number = phonenumbers.parse(cleaned, region)
    except phonenumbers.NumberParseException:
        return cleaned
    if number.extension or not phonenumbers.is_possible_number(number):
        return cleaned
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone(value: object, region: str = "US") -> str | None:
    """E.164 when the number parses (in ``region`` when it has no country code), else the text as
    entered; blank → ``None``. Cached: the same few numbers are compared over and over."""
    if value is None:
        return None
    return phone_parser(region)(value if isinstance(value, str) else str(value))


@lru_cache(maxsize=256)
def phone_display(e164: str) -> str:
    """How a canonical phone is written to a system: international format when it is E.164 (it reads
    back as the same canonical value), else unchanged."""
    if not e164.startswith("+"):
        return e164
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def parse_datetime(value: object, zone: str | None = None) -> datetime | None:
    """An aware UTC datetime (see :func:`_parse_datetime`); strings are parsed once and cached."""
    if type(value) is str and (zone is None or type(zone) is str):
        return _parse_datetime_cached(value, zone)
    return _parse_datetime(value, zone)


@lru_cache(maxsize=8192)
def _parse_datetime_cached(value: str, zone: str | None) -> datetime | None:
    return _parse_datetime(value, zone)


def _parse_datetime(value: object, zone: str | None = None) -> datetime | None:
    """An aware UTC datetime from an ISO-8601 string (any number of fractional digits, ``Z`` or an
    offset), epoch milliseconds (Salesforce change events, Gmail ``internalDate``) or a datetime.

    A naive value is read in ``zone`` (a Windows or IANA name; UTC when none).
    """
    if value is None or value == "":
        return None
    if zone is not None and not isinstance(zone, str):
        raise ValueError(f"a time zone is a {type(zone).__name__}, not text")
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        return _from_epoch_ms(value)
    elif isinstance(value, str):
        raw = value.strip()
        if raw.isdigit():
            return _from_epoch_ms(int(raw))
        moment = _parse_iso(raw)
    else:
        raise ValueError(f"a date-time is a {type(value).__name__}, not text or a number")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=resolve_zone(zone) if zone else UTC)
    return moment.astimezone(UTC)


def _from_epoch_ms(value: float) -> datetime:
    try:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError("epoch milliseconds out of range") from None


_FRACTION = re.compile(r"\.(\d+)")


def _parse_iso(raw: str) -> datetime:
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    # Python accepts 1-6 fractional digits; Graph sends 7 and Salesforce 3 (with a +0000 offset).
    raw = _FRACTION.sub(lambda match: "." + (match.group(1) + "000000")[:6], raw, count=1)
    if len(raw) > 5 and raw[-5] in "+-" and raw[-3] != ":" and "T" in raw:
        raw = raw[:-2] + ":" + raw[-2:]
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        # Python's message quotes the text; a reason must not.
        raise ValueError("not an ISO-8601 date-time") from None


def datetime_key(moment: datetime) -> str:
    """The canonical text of an aware instant: UTC, whole seconds, ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@lru_cache(maxsize=8192)
def datetime_text(value: str, zone: str | None = None) -> str | None:
    """``datetime_key(parse_datetime(value, zone))`` for a string (``None`` when it parses to
    nothing), cached: formatting an instant costs as much as parsing it."""
    moment = _parse_datetime(value, zone)
    return datetime_key(moment) if moment is not None else None


def parse_date(value: object) -> date | None:
    """A date from ``YYYY-MM-DD``, a date-time string (its date part, as written), a Google
    ``{year, month, day}`` object, or a date; blank → ``None``."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, dict):
        return _parse_date_parts(value)
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()[:10])
        except ValueError:
            raise ValueError("not a YYYY-MM-DD date") from None
    raise ValueError(f"a date is a {type(value).__name__}, not text or a {{year, month, day}} object")


NO_YEAR = 1604
"""The year of a date whose year is unknown (a Google birthday without one): the conventional leap
year that Outlook also uses, so that 29 February is valid."""


def _parse_date_parts(value: dict[str, object]) -> date | None:
    year, month, day = value.get("year"), value.get("month"), value.get("day")
    if month in (None, 0) or day in (None, 0):
        return None  # Google's empty Date, or a year on its own: no day to sync
    if type(month) is not int or type(day) is not int or (year is not None and type(year) is not int):
        raise ValueError("a {year, month, day} date has a part that is not a whole number")
    try:
        return date(year or NO_YEAR, month, day)
    except ValueError:
        raise ValueError("a {year, month, day} date that does not exist") from None


def date_key(day: date) -> str:
    """The canonical text of a date."""
    return day.isoformat()


def shift_date_key(key: str, days: int) -> str:
    """``key`` (``YYYY-MM-DD``) moved by ``days``."""
    return (date.fromisoformat(key) + timedelta(days=days)).isoformat()
