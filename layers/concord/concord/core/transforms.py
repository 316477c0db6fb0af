"""The named transforms a mapping entry may use, and the registry that finds them by name.

A transform turns one side's JSON into a canonical :data:`~concord.core.normalize.Value` (``read_*``)
and a canonical value back into a JSON patch (``write_*``). Contract, checked by the round-trip tests:
``read(write(v)) == settle(v)`` for every canonical ``v``; ``settle`` is the identity except where a
system cannot hold the value exactly (Salesforce ``ShowAs`` has no "tentative"), and the plan stores the
settled value in the snapshot so that a lossy write never looks like a new change.

Salesforce writes of relation-valued fields (attendees, email participants, a Contact's account) are not
field patches: :meth:`Transform.relation` describes them, and the plan emits a ``relate`` operation that
the worker resolves (emails to Contact/Lead ids, an account name to an ``AccountId``).

Unreadable data: every ``read_*``/``write_*`` method and every bound reader of every transform (the
base class guards subclasses' overrides too, see :meth:`Transform.__init_subclass__`) raises
:class:`UnsyncableValue` and nothing else for a value it cannot read or write: a malformed date or
date-time, an unknown time zone, a provider value of the wrong type. ``plan()`` turns it into a ``skip``
with the message as the reason. Text-like transforms read any JSON value (a number as its text).

Wire formats, as each API documents them (the wire-type tests assert these exact shapes):

- ``date``: Salesforce ``date`` fields ``YYYY-MM-DD`` (REST API "Valid Date and DateTime Formats");
  Graph contact ``birthday`` an ``Edm.DateTimeOffset`` ``YYYY-MM-DDT00:00:00Z``; Google People
  ``birthdays[].date`` a ``Date`` ``{year, month, day}`` (year left out when unknown).
- ``datetime_tz``: Salesforce ``dateTime`` as ``yyyy-MM-ddTHH:mm:ss.SSSZ``; Graph ``dateTimeTimeZone``
  ``{dateTime: "…T16:00:00.0000000", timeZone: "UTC"}``; Google ``EventDateTime`` ``{dateTime (RFC
  3339), timeZone}`` or ``{date}``, with the other form set to ``null`` because ``events.patch`` merges
  ``start``/``end`` and an event holding both ``date`` and ``dateTime`` is refused.
- ``private``: Graph ``sensitivity`` (``normal``/``private``), Google ``visibility``
  (``default``/``private``), Salesforce ``IsPrivate`` boolean; ``show_as``: Graph ``showAs``
  (``free``, ``tentative``, ``busy``, ``oof``, ``workingElsewhere``), Google ``transparency``
  (``opaque``/``transparent``), Salesforce ``ShowAs`` picklist (``Busy``, ``Free``, ``OutOfOffice``).

Registered names: ``text`` (the default), ``multiline``, ``html_text``, ``email``, ``phone``, ``date``,
``bool``, ``datetime_tz``, ``all_day``, ``private``, ``show_as``, ``name_join``, ``name_split`` (an
alias), ``address``, ``attendees``, ``participants``, ``account_name``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache, wraps
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from concord.core import normalize as norm

if TYPE_CHECKING:
    from concord.core.normalize import Value
    from concord.core.paths import Path

__all__ = ["REGISTRY", "Context", "Reader", "Rule", "Transform", "UnsyncableValue", "get_transform", "register"]

type Provider = Literal["graph", "google"]
#: a rule's read of one side with its context bound: the record's JSON in, the canonical value out
type Reader = Callable[[Mapping[str, Any]], Value]


class UnsyncableValue(ValueError):
    """A value that a transform cannot read or write: malformed, of a type the API does not send, or in
    an unknown time zone. The one exception a transform raises for bad data (see the module docstring).

    The message names the field and the transform and says what is wrong; it never quotes the value
    (personal data, and a malformed value may be anything), except an unknown time zone's name."""

    def __init__(self, field: str, transform: str, reason: str) -> None:
        super().__init__(f"field {field!r} ({transform}): {reason}")
        self.field = field
        self.transform = transform
        self.reason = reason


#: what reading or writing malformed data raises (the normalisers raise ``ValueError`` with messages that
#: do not quote the value; ``OverflowError`` comes from out-of-range epochs and dates)
_DATA_ERRORS = (ValueError, OverflowError)
_REASON_LIMIT = 200


def _unsyncable(rule: Rule, transform: Transform, error: Exception) -> UnsyncableValue:
    reason = str(error) if isinstance(error, ValueError) else "value out of range"
    return UnsyncableValue(rule.name, transform.name, reason[:_REASON_LIMIT] or type(error).__name__)


def _guard_reader(reader: Reader, rule: Rule, transform: Transform) -> Reader:
    def read(doc: Mapping[str, Any]) -> Value:
        try:
            return reader(doc)
        except UnsyncableValue:
            raise
        except _DATA_ERRORS as error:
            raise _unsyncable(rule, transform, error) from error

    return read


def _guard_method(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method(self, rule, …)`` raising :class:`UnsyncableValue` for bad data."""

    @wraps(method)
    def guarded(self: Transform, rule: Rule, *args: Any) -> Any:
        try:
            return method(self, rule, *args)
        except UnsyncableValue:
            raise
        except _DATA_ERRORS as error:
            raise _unsyncable(rule, self, error) from error

    return guarded


def _guard_factory(method: Callable[..., Reader]) -> Callable[..., Reader]:
    """``method(self, rule, ctx)`` returning a reader that raises :class:`UnsyncableValue` for bad data."""

    @wraps(method)
    def guarded(self: Transform, rule: Rule, ctx: Context) -> Reader:
        return _guard_reader(method(self, rule, ctx), rule, self)

    return guarded


_GUARDED_METHODS = ("read_sf", "read_mb", "write_sf", "write_mb")
_GUARDED_FACTORIES = ("sf_reader", "mb_reader")


def _install_guards(cls: type[Transform]) -> None:
    for name in _GUARDED_METHODS:
        if name in cls.__dict__:
            setattr(cls, name, _guard_method(cls.__dict__[name]))
    for name in _GUARDED_FACTORIES:
        if name in cls.__dict__:
            setattr(cls, name, _guard_factory(cls.__dict__[name]))


@dataclass(frozen=True, slots=True)
class Context:
    """What a transform may need besides the value: the mailbox provider, the Salesforce object type
    of the record at hand, and the default phone region of the connection."""

    provider: Provider
    sobject: str
    region: str = "US"


class Rule:
    """The slice of a compiled mapping entry that a transform sees (see ``mapping.FieldRule``)."""

    __slots__ = ("mb_path", "name", "options", "sf_paths")

    def __init__(self, name: str, sf_paths: tuple[Path, ...], mb_path: Path | None, options: Mapping[str, Any]) -> None:
        self.name = name
        self.sf_paths = sf_paths
        self.mb_path = mb_path
        self.options = options


class Transform:
    """Base class: a single scalar at one path on each side, normalised by :meth:`normalize`.

    Every class's own ``read_sf``, ``read_mb``, ``write_sf``, ``write_mb``, ``sf_reader`` and
    ``mb_reader`` are wrapped when the class is defined, so that bad data raises
    :class:`UnsyncableValue` naming the field whatever a subclass does (a new transform cannot forget it).
    """

    name: ClassVar[str] = "text"
    #: how many Salesforce fields an entry using this transform names (``None``: exactly one)
    salesforce_fields: ClassVar[int | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _install_guards(cls)

    def normalize(self, raw: Any, ctx: Context) -> Value:
        return norm.text(raw)

    def read_sf(self, rule: Rule, doc: Mapping[str, Any], ctx: Context) -> Value:
        return self.normalize(rule.sf_paths[0].get(doc), ctx)

    def read_mb(self, rule: Rule, doc: Mapping[str, Any], ctx: Context) -> Value:
        assert rule.mb_path is not None
        return self.normalize(rule.mb_path.get(doc), ctx)

    def to_json(self, value: Value, side: str, ctx: Context) -> Any:
        return value

    # Bound readers, built once per compiled mapping and context (the plan's hot path). Each returns
    # exactly what ``read_sf``/``read_mb`` return; a transform that overrides ``normalize`` should
    # override ``text_normalizer`` too (or leave it ``None``) so the two never disagree.

    def text_normalizer(self, ctx: Context) -> Callable[[str], Value] | None:
        """``normalize`` of a ``str`` with ``ctx`` bound, as a pure cached function; ``None`` when
        there is none (then the reader calls :meth:`normalize`)."""
        return norm.text_str if type(self).normalize is Transform.normalize else None

    def sf_reader(self, rule: Rule, ctx: Context) -> Reader:
        """``read_sf`` with ``rule`` and ``ctx`` bound."""
        if type(self).read_sf is Transform.read_sf:
            return _path_reader(rule.sf_paths[0], self, ctx)
        read_sf = self.read_sf
        return lambda doc: read_sf(rule, doc, ctx)

    def mb_reader(self, rule: Rule, ctx: Context) -> Reader:
        """``read_mb`` with ``rule`` and ``ctx`` bound (``None`` when the rule has no mailbox path)."""
        if rule.mb_path is None:
            return _read_nothing
        if type(self).read_mb is Transform.read_mb:
            return _path_reader(rule.mb_path, self, ctx)
        read_mb = self.read_mb
        return lambda doc: read_mb(rule, doc, ctx)

    def write_sf(
        self, rule: Rule, value: Value, patch: dict[str, Any], current: Mapping[str, Any] | None, ctx: Context
    ) -> None:
        rule.sf_paths[0].set(patch, current, self.to_json(value, "salesforce", ctx))

    def write_mb(
        self, rule: Rule, value: Value, patch: dict[str, Any], current: Mapping[str, Any] | None, ctx: Context
    ) -> None:
        assert rule.mb_path is not None
        rule.mb_path.set(patch, current, self.to_json(value, ctx.provider, ctx))

    def settle_sf(self, value: Value, ctx: Context) -> Value:
        """The value Salesforce holds after ``value`` is written (identity unless lossy)."""
        return value

    def settle_mb(self, value: Value, ctx: Context) -> Value:
        """The value the mailbox holds after ``value`` is written (identity unless lossy)."""
        return value

    def relates(self, rule: Rule, ctx: Context) -> bool:
        """True when a Salesforce write of this field is a ``relate`` operation, not a field patch."""
        return False

    def relation(self, rule: Rule, old: Value, new: Value, ctx: Context) -> dict[str, Any]:
        """The body of the ``relate`` operation that makes Salesforce hold ``new`` (see ``relates``)."""
        raise NotImplementedError(f"transform {self.name!r} does not relate records")


_install_guards(Transform)


def _read_nothing(doc: Mapping[str, Any]) -> Value:
    return None


def _path_reader(path: Path, transform: Transform, ctx: Context) -> Reader:
    """``transform.normalize(path.get(doc), ctx)`` as one closure: a plain key is read directly and a
    string goes through the transform's cached normaliser when it has one."""
    key = path.simple
    get = path.get
    on_text = transform.text_normalizer(ctx)
    normalize = transform.normalize
    if on_text is None:
        return lambda doc: normalize(get(doc), ctx)
    if key is None:

        def read_path(doc: Mapping[str, Any]) -> Value:
            raw = get(doc)
            return on_text(raw) if type(raw) is str else normalize(raw, ctx)

        return read_path

    def read_key(doc: Mapping[str, Any]) -> Value:
        raw = doc.get(key) if type(doc) is dict else get(doc)
        return on_text(raw) if type(raw) is str else normalize(raw, ctx)

    return read_key


REGISTRY: dict[str, Transform] = {}


def register[T: type[Transform]](cls: T) -> T:
    """Class decorator: make a transform available to mappings under its ``name``."""
    REGISTRY[cls.name] = cls()
    return cls


def get_transform(name: str | None) -> Transform:
    """The transform registered as ``name`` (``text`` when ``None``); ``KeyError`` if unknown."""
    return REGISTRY[name or "text"]


register(Transform)
_NO_CONTEXT = Context(provider="graph", sobject="")  # for normalisers that read nothing from it


@register
class Multiline(Transform):
    name = "multiline"

    def normalize(self, raw: Any, ctx: Context) -> Value:
        return norm.multiline_text(raw)

    def text_normalizer(self, ctx: Context) -> Callable[[str], Value] | None:
        return norm.multiline_str if type(self).normalize is Multiline.normalize else None


@register
class HtmlText(Transform):
    """Bodies and descriptions: compared as text. A mailbox HTML body is reduced to text for the
    comparison, so Salesforce's plain text replaces it only when the text itself differs. Graph bodies
    are written as ``{"contentType": "text", "content": …}`` when the path ends in ``.content``."""

    name = "html_text"

    def normalize(self, raw: Any, ctx: Context) -> Value:
        if not isinstance(raw, str):
            return norm.multiline_text(raw)
        return norm.html_to_text(raw)

    def text_normalizer(self, ctx: Context) -> Callable[[str], Value] | None:
        return norm.html_to_text if type(self).normalize is HtmlText.normalize else None

    def read_sf(self, rule: Rule, doc: Mapping[str, Any], ctx: Context) -> Value:
        return norm.multiline_text(rule.sf_paths[0].get(doc))

    def sf_reader(self, rule: Rule, ctx: Context) -> Reader:
        if type(self).read_sf is not HtmlText.read_sf:
            return super().sf_reader(rule, ctx)
        get = rule.sf_paths[0].get
        multiline = norm.multiline_text
        return lambda doc: multiline(get(doc))

    def write_mb(
        self, rule: Rule, value: Value, patch: dict[str, Any], current: Mapping[str, Any] | None, ctx: Context
    ) -> None:
        assert rule.mb_path is not None
        steps = rule.mb_path.steps
        if len(steps) == 2 and steps[1].key == "content":
            patch[steps[0].key] = {"contentType": "text", "content": value or ""}
            return
        rule.mb_path.set(patch, current, value)


@register
class Email(Transform):
    name = "email"

    def normalize(self, raw: Any, ctx: Context) -> Value:
        return norm.email(raw)

    def text_normalizer(self, ctx: Context) -> Callable[[str], Value] | None:
        return norm.email_str if type(self).normalize is Email.normalize else None


@register
class Phone(Transform):
    name = "phone"

    def normalize(self, raw: Any, ctx: Context) -> Value:
        return norm.phone(raw, ctx.region)

    def text_normalizer(self, ctx: Context) -> Callable[[str], Value] | None:
        return norm.phone_parser(ctx.region) if type(self).normalize is Phone.normalize else None

    def to_json(self, value: Value, side: str, ctx: Context) -> Any:
        return norm.phone_display(value) if isinstance(value, str) else value


@register
class Date(Transform):
    """Dates (birthdays, an email's activity date). Reads ``YYYY-MM-DD``, date-times (their date part),
    epoch milliseconds (UTC date) and Google's ``{year, month, day}``; writes each system's form."""

    name = "date"

    def normalize(self, raw: Any, ctx: Context) -> Value:
        if (
            isinstance(raw, (int, float))
            and not isinstance(raw, bool)
            or (isinstance(raw, str) and raw.strip().isdigit())
        ):
            moment = norm.parse_datetime(raw)
            return norm.date_key(moment.date()) if moment else None
        day = norm.parse_date(raw)
        return norm.date_key(day) if day else None

    def text_normalizer(self, ctx: Context) -> Callable[[str], Value] | None:
        return _date_str if type(self).normalize is Date.normalize else None

    def to_json(self, value: Value, side: str, ctx: Context) -> Any:
        if not isinstance(value, str):
            return value
        if side == "google":
            day = _day(value)
            # People's Date leaves the year out when it is unknown; the reader takes that as 1604.
            found = {"year": day.year, "month": day.month, "day": day.day}
            if day.year == norm.NO_YEAR:
                del found["year"]
            return found
        if side == "graph":
            return f"{_day(value).isoformat()}T00:00:00Z"
        return _day(value).isoformat()


_DATE = Date()


@lru_cache(maxsize=4096)
def _date_str(raw: str) -> Value:
    """``Date.normalize`` of a string, cached (birthdays and activity dates repeat on every plan)."""
    return _DATE.normalize(raw, _NO_CONTEXT)


@register
class Bool(Transform):
    name = "bool"

    def normalize(self, raw: Any, ctx: Context) -> Value:
        if raw is None:
            return False
        if isinstance(raw, str):
            return raw.strip().lower() in {"true", "1", "yes"}
        return bool(raw)


def _sf_all_day(doc: Mapping[str, Any], rule: Rule) -> bool:
    return bool(doc.get(str(rule.options.get("all_day_field", "IsAllDayEvent"))))


@register
class DateTimeTz(Transform):
    """Event start and end. Canonical: a UTC instant, or a date for all-day events.

    - Graph: ``start.dateTime`` + its sibling ``timeZone`` (Windows or IANA name); all-day when the
      event's ``isAllDay`` is true, then the date part as written. Written as ``{dateTime, timeZone:
      "UTC"}`` (all-day: midnight of the date).
    - Google: ``start.dateTime`` (with offset) or, all-day, ``start.date``; written as ``{dateTime,
      timeZone: "UTC", date: null}`` or ``{date, dateTime: null}`` (see the module docstring).
    - Salesforce: ``StartDateTime``/``EndDateTime`` (written ``yyyy-MM-ddTHH:mm:ss.000Z``); all-day when
      ``IsAllDayEvent``, then midnight UTC of the date (Salesforce fills ``ActivityDate`` and
      ``DurationInMinutes`` from them). Salesforce stores an all-day event's *last* day while both
      mailboxes store the day after it (exclusive end), so an entry with option ``end: true`` shifts the
      date by one day.
    """

    name = "datetime_tz"

    def read_sf(self, rule: Rule, doc: Mapping[str, Any], ctx: Context) -> Value:
        raw = rule.sf_paths[0].get(doc)
        if raw is None or raw == "":
            return None
        if not _sf_all_day(doc, rule):
            if type(raw) is str:
                return norm.datetime_text(raw)
            moment = norm.parse_datetime(raw)
            return norm.datetime_key(moment) if moment is not None else None
        moment = norm.parse_datetime(raw)
        if moment is None:
            return None
        day = norm.date_key(moment.date())
        return norm.shift_date_key(day, 1) if rule.options.get("end") else day

    def read_mb(self, rule: Rule, doc: Mapping[str, Any], ctx: Context) -> Value:
        assert rule.mb_path is not None
        steps = rule.mb_path.steps
        container = rule.mb_path.get(doc) if len(steps) == 1 else _parent(rule.mb_path, doc)
        if not isinstance(container, Mapping):
            return None
        if ctx.provider == "google":
            if container.get("date"):
                return _date_text(container["date"])
            raw, zone = container.get("dateTime"), container.get("timeZone")
            if type(raw) is str and (zone is None or type(zone) is str):
                return norm.datetime_text(raw, zone)
            moment = norm.parse_datetime(raw, zone)
            return norm.datetime_key(moment) if moment else None
        raw = container.get("dateTime")
        if not raw:
            return None
        if doc.get("isAllDay"):
            return _date_text(raw)
        zone = container.get("timeZone") or "UTC"
        if type(raw) is str and type(zone) is str:
            return norm.datetime_text(raw, zone)
        moment = norm.parse_datetime(raw, zone)
        return norm.datetime_key(moment) if moment else None

    def write_sf(
        self, rule: Rule, value: Value, patch: dict[str, Any], current: Mapping[str, Any] | None, ctx: Context
    ) -> None:
        if isinstance(value, str) and len(value) == 10:
            day = norm.shift_date_key(value, -1) if rule.options.get("end") else value
            patch[rule.sf_paths[0].top] = f"{day}T00:00:00.000Z"
        else:
            patch[rule.sf_paths[0].top] = _sf_datetime(value)

    def write_mb(
        self, rule: Rule, value: Value, patch: dict[str, Any], current: Mapping[str, Any] | None, ctx: Context
    ) -> None:
        assert rule.mb_path is not None
        top = rule.mb_path.top
        if not isinstance(value, str):
            patch[top] = None
        elif ctx.provider == "google":
            # events.patch merges start/end: the other form is cleared, or an event that changes
            # between timed and all-day would hold both and be refused.
            if len(value) == 10:
                patch[top] = {"date": _day(value).isoformat(), "dateTime": None}
            else:
                patch[top] = {"dateTime": _utc_text(value), "timeZone": "UTC", "date": None}
        elif len(value) == 10:
            patch[top] = {"dateTime": f"{_day(value).isoformat()}T00:00:00.0000000", "timeZone": "UTC"}
        else:
            patch[top] = {"dateTime": _utc_text(value)[:-1] + ".0000000", "timeZone": "UTC"}


def _date_text(raw: Any) -> str:
    """The canonical date of an all-day start or end as a mailbox writes it (its date part)."""
    if not isinstance(raw, str):
        raise ValueError(f"an all-day date is a {type(raw).__name__}, not text")
    day = norm.parse_date(raw)
    if day is None:
        raise ValueError("an all-day date is blank")
    return norm.date_key(day)


def _utc_text(value: str) -> str:
    """A canonical instant (``YYYY-MM-DDTHH:MM:SSZ``), checked."""
    return _instant(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def _instant(value: str) -> datetime:
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError("not a canonical date-time (YYYY-MM-DDTHH:MM:SSZ)") from None


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError("not a canonical date (YYYY-MM-DD)") from None


def _parent(path: Path, doc: Mapping[str, Any]) -> Any:
    current: Any = doc
    for step in path.steps[:-1]:
        if not isinstance(current, Mapping):
            return None
        current = current.get(step.key)
    return current


def _sf_datetime(value: Value) -> str | None:
    if not isinstance(value, str):
        return None
    return _instant(value).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@register
class AllDay(Transform):
    """All-day flag. Google has none: an event is all-day when ``start.date`` is set, so for Google the
    path (``start.date``) is only tested for presence and writing is left to ``datetime_tz``."""

    name = "all_day"

    def normalize(self, raw: Any, ctx: Context) -> Value:
        return bool(raw)

    def write_mb(
        self, rule: Rule, value: Value, patch: dict[str, Any], current: Mapping[str, Any] | None, ctx: Context
    ) -> None:
        if ctx.provider != "google":
            super().write_mb(rule, value, patch, current, ctx)


@register
class Private(Transform):
    """Salesforce ``IsPrivate`` ↔ Graph ``sensitivity`` / Google ``visibility``: private and confidential
    mean private; written as ``private`` or ``normal`` (Graph) / ``default`` (Google)."""

    name = "private"
    _PRIVATE: ClassVar[frozenset[str]] = frozenset({"private", "confidential"})

    def normalize(self, raw: Any, ctx: Context) -> Value:
        if isinstance(raw, str):
            return raw.strip().lower() in self._PRIVATE or raw.strip().lower() == "true"
        return bool(raw)

    def to_json(self, value: Value, side: str, ctx: Context) -> Any:
        if side == "salesforce":
            return bool(value)
        if side == "google":
            return "private" if value else "default"
        return "private" if value else "normal"


@register
class ShowAs(Transform):
    """Free/busy. Canonical: ``free``, ``tentative``, ``busy``, ``oof``, ``workingelsewhere``.
    Salesforce ``ShowAs`` knows Busy/Free/OutOfOffice and Google ``transparency`` only opaque/transparent,
    so those systems settle the others to ``busy``."""

    name = "show_as"
    _FROM: ClassVar[dict[str, str]] = {
        "busy": "busy",
        "free": "free",
        "outofoffice": "oof",
        "oof": "oof",
        "tentative": "tentative",
        "workingelsewhere": "workingelsewhere",
        "opaque": "busy",
        "transparent": "free",
    }
    _SF: ClassVar[dict[str, str]] = {"busy": "Busy", "free": "Free", "oof": "OutOfOffice"}

    def normalize(self, raw: Any, ctx: Context) -> Value:
        if not isinstance(raw, str) or not raw.strip():
            return None
        return self._FROM.get(raw.strip().lower(), "busy")

    def read_mb(self, rule: Rule, doc: Mapping[str, Any], ctx: Context) -> Value:
        value = super().read_mb(rule, doc, ctx)
        # Google leaves ``transparency`` out for the default, opaque.
        return "busy" if value is None and ctx.provider == "google" else value

    def to_json(self, value: Value, side: str, ctx: Context) -> Any:
        if not isinstance(value, str):
            return None
        if side == "salesforce":
            return self._SF.get(value, "Busy")
        if side == "google":
            return "transparent" if value == "free" else "opaque"
        return value if value != "workingelsewhere" else "workingElsewhere"

    def settle_sf(self, value: Value, ctx: Context) -> Value:
        return value if value in self._SF or value is None else "busy"

    def settle_mb(self, value: Value, ctx: Context) -> Value:
        if ctx.provider == "google" and value is not None:
            return "free" if value == "free" else "busy"
        return value


@register
class NameJoin(Transform):
    """Salesforce ``[FirstName, LastName]`` ↔ one display name. Joining puts a space between the
    non-blank parts; splitting takes the last word as the last name (a one-word name is a last name,
    since ``LastName`` is required in Salesforce)."""

    name = "name_join"
    salesforce_fields = 2

    def read_sf(self, rule: Rule, doc: Mapping[str, Any], ctx: Context) -> Value:
        parts = [norm.text(path.get(doc)) for path in rule.sf_paths]
        return norm.text(" ".join(part for part in parts if part))

    def write_sf(
        self, rule: Rule, value: Value, patch: dict[str, Any], current: Mapping[str, Any] | None, ctx: Context
    ) -> None:
        first, last = _split_name(value if isinstance(value, str) else "")
        rule.sf_paths[0].set(patch, current, first)
        rule.sf_paths[1].set(patch, current, last)


def _split_name(full: str) -> tuple[str | None, str | None]:
    words = full.split()
    if not words:
        return None, None
    if len(words) == 1:
        return None, words[0]
    return " ".join(words[:-1]), words[-1]


@register
class NameSplit(NameJoin):
    name = "name_split"


def _compose_parts(parts: list[Any] | tuple[Any, ...]) -> Value:
    cleaned = tuple(
        (norm.multiline_text(part) if index == 0 else norm.text(part)) or "" for index, part in enumerate(parts)
    )
    return cleaned if any(cleaned) else None


@lru_cache(maxsize=4096)
def _compose_cached(parts: tuple[str | None, ...]) -> Value:
    return _compose_parts(parts)


_TEXT_OR_NONE: frozenset[type] = frozenset({str, type(None)})
_ADDRESS_KEYS: dict[str, tuple[str, str, str, str, str]] = {
    "graph": ("street", "city", "state", "postalCode", "countryOrRegion"),
    "google": ("streetAddress", "city", "region", "postalCode", "country"),
}


@register
class Address(Transform):
    """Address composition: five Salesforce fields (street, city, state, postal code, country) ↔ one
    mailbox address object. Canonical: a 5-tuple of normalised parts (``""`` for a blank part), or
    ``None`` when every part is blank. Streets keep their line breaks."""

    name = "address"
    salesforce_fields = 5

    @staticmethod
    def _compose(parts: list[Any] | tuple[Any, ...]) -> Value:
        if set(map(type, parts)) <= _TEXT_OR_NONE:
            return _compose_cached(tuple(parts))
        return _compose_parts(parts)

    def read_sf(self, rule: Rule, doc: Mapping[str, Any], ctx: Context) -> Value:
        return self._compose([path.get(doc) for path in rule.sf_paths])

    def read_mb(self, rule: Rule, doc: Mapping[str, Any], ctx: Context) -> Value:
        assert rule.mb_path is not None
        container = rule.mb_path.get(doc)
        if not isinstance(container, Mapping):
            return None
        return self._compose(tuple(map(container.get, _ADDRESS_KEYS[ctx.provider])))

    def sf_reader(self, rule: Rule, ctx: Context) -> Reader:
        keys = tuple(path.simple for path in rule.sf_paths)
        if type(self).read_sf is not Address.read_sf or None in keys:
            return super().sf_reader(rule, ctx)
        compose = self._compose
        read_sf = self.read_sf
        # Plain keys (the usual Street/City/... fields) are read in one pass over the record.
        return lambda doc: compose(tuple(map(doc.get, keys))) if type(doc) is dict else read_sf(rule, doc, ctx)

    def write_sf(
        self, rule: Rule, value: Value, patch: dict[str, Any], current: Mapping[str, Any] | None, ctx: Context
    ) -> None:
        parts = value if isinstance(value, tuple) else ("",) * 5
        for path, part in zip(rule.sf_paths, parts, strict=True):
            path.set(patch, current, part or None)

    def write_mb(
        self, rule: Rule, value: Value, patch: dict[str, Any], current: Mapping[str, Any] | None, ctx: Context
    ) -> None:
        assert rule.mb_path is not None
        parts = value if isinstance(value, tuple) else ("",) * 5
        existing = rule.mb_path.get(current) if current is not None else None
        body: dict[str, Any] = dict(existing) if isinstance(existing, Mapping) else {}
        for key, part in zip(_ADDRESS_KEYS[ctx.provider], parts, strict=True):
            if part:
                body[key] = part
            else:
                body.pop(key, None)
        rule.mb_path.set(patch, current, body)


def _emails(items: Any, pick: Callable[[Mapping[str, Any]], Any]) -> Value:
    if not isinstance(items, list):
        return None
    raw = tuple(pick(item) for item in items if type(item) is dict or isinstance(item, Mapping))
    if all(address is None or type(address) is str for address in raw):
        return _email_set(raw)
    return _email_set_uncached(raw)


def _email_set_uncached(raw: tuple[Any, ...]) -> Value:
    found = {address for item in raw if (address := norm.email(item))}
    return tuple(sorted(found)) or None


@lru_cache(maxsize=4096)
def _email_set(raw: tuple[str | None, ...]) -> Value:
    # Cached: a meeting's attendee list is the same on every plan until someone is invited.
    return _email_set_uncached(raw)


def _relation_email(item: Mapping[str, Any]) -> Any:
    relation = item.get("Relation")
    if (type(relation) is dict or isinstance(relation, Mapping)) and relation.get("Email"):
        return relation.get("Email")
    return item.get("Email")


def _sf_related(doc: Mapping[str, Any], rule: Rule) -> Value:
    raw = rule.sf_paths[0].get(doc)
    if type(raw) is dict or isinstance(raw, Mapping):  # a SOQL child relationship: {"records": [...]}
        raw = raw.get("records")
    return _emails(raw, _relation_email)


@register
class Attendees(Transform):
    """Attendee list ↔ related Contacts/Leads. Canonical: the sorted, lower-cased attendee emails.

    Salesforce side: the ``EventRelations`` child records (SOQL shape ``{"records": [{"RelationId",
    "Relation": {"Email"}}]}`` or a plain list of ``{"Email"}``), written as a ``relate`` operation
    (``add``/``remove`` emails) that the worker resolves to Contacts/Leads. Graph ``attendees`` (not the
    organiser), Google ``attendees`` without the organiser and resources. Mailbox writes keep the
    existing entries (names, responses) of attendees that stay.
    """

    name = "attendees"

    def read_sf(self, rule: Rule, doc: Mapping[str, Any], ctx: Context) -> Value:
        return _sf_related(doc, rule)

    def read_mb(self, rule: Rule, doc: Mapping[str, Any], ctx: Context) -> Value:
        assert rule.mb_path is not None
        items = rule.mb_path.get(doc)
        if ctx.provider == "google":
            if isinstance(items, list):
                items = [
                    item
                    for item in items
                    if isinstance(item, Mapping) and not item.get("organizer") and not item.get("resource")
                ]
            return _emails(items, lambda item: item.get("email"))
        return _emails(items, _graph_address)

    def write_mb(
        self, rule: Rule, value: Value, patch: dict[str, Any], current: Mapping[str, Any] | None, ctx: Context
    ) -> None:
        assert rule.mb_path is not None
        wanted = value if isinstance(value, tuple) else ()
        existing = rule.mb_path.get(current) if current is not None else None
        kept: dict[str, Any] = {}
        for item in existing if isinstance(existing, list) else []:
            if not isinstance(item, Mapping):
                continue
            address = norm.email(item.get("email") if ctx.provider == "google" else _graph_address(item))
            if address in wanted or (ctx.provider == "google" and item.get("organizer")):
                kept[address or ""] = item
        body: list[Any] = []
        for address in wanted:
            if address in kept:
                body.append(kept.pop(address))
            elif ctx.provider == "google":
                body.append({"email": address})
            else:
                body.append({"emailAddress": {"address": address}, "type": "required"})
        body.extend(kept.values())  # Google's organiser entry stays
        rule.mb_path.set(patch, current, body)

    def relates(self, rule: Rule, ctx: Context) -> bool:
        return True

    def relation(self, rule: Rule, old: Value, new: Value, ctx: Context) -> dict[str, Any]:
        before = set(old) if isinstance(old, tuple) else set()
        after = set(new) if isinstance(new, tuple) else set()
        return {
            "relation": rule.sf_paths[0].top,
            "emails": sorted(after),
            "add": sorted(after - before),
            "remove": sorted(before - after),
        }


def _graph_address(item: Mapping[str, Any]) -> Any:
    address = item.get("emailAddress")
    return address.get("address") if type(address) is dict or isinstance(address, Mapping) else None


@register
class Participants(Attendees):
    """Email participants (From, To, Cc) → the Task's related Contacts/Leads (``WhoId`` and
    ``TaskWhoRelations``). Graph: ``from``, ``toRecipients``, ``ccRecipients``; Gmail: the ``From``,
    ``To`` and ``Cc`` headers of ``payload.headers``. The mailbox path names the message part that
    holds them (``from`` for Graph, ``payload.headers`` for Gmail). Read-only on the mailbox side."""

    name = "participants"

    def read_mb(self, rule: Rule, doc: Mapping[str, Any], ctx: Context) -> Value:
        found: list[Any] = []
        if ctx.provider == "google":
            payload = doc.get("payload")
            headers = payload.get("headers") if isinstance(payload, Mapping) else None
            for header in headers if isinstance(headers, list) else []:
                if isinstance(header, Mapping) and str(header.get("name", "")).lower() in {"from", "to", "cc"}:
                    found.extend(_header_addresses(str(header.get("value", ""))))
        else:
            sender = doc.get("from")
            found.append(_graph_address(sender) if isinstance(sender, Mapping) else None)
            for key in ("toRecipients", "ccRecipients"):
                items = doc.get(key)
                for item in items if isinstance(items, list) else []:
                    if isinstance(item, Mapping):
                        found.append(_graph_address(item))
        cleaned = {address for raw in found if (address := norm.email(raw))}
        return tuple(sorted(cleaned)) or None

    def write_mb(
        self, rule: Rule, value: Value, patch: dict[str, Any], current: Mapping[str, Any] | None, ctx: Context
    ) -> None:
        raise NotImplementedError("email participants are never written to a mailbox")


def _header_addresses(value: str) -> list[str]:
    from email.utils import getaddresses

    return [address for _, address in getaddresses([value]) if address]


@register
class AccountName(Transform):
    """Company ↔ account name. On a Lead the company is the ``Company`` field (a plain write); on a
    Contact it is the related Account's name (``Account.Name``), which is changed by relating the Contact
    to an Account of that name (a ``relate`` operation the worker resolves to an ``AccountId``)."""

    name = "account_name"

    def relates(self, rule: Rule, ctx: Context) -> bool:
        return len(rule.sf_paths[0].steps) > 1

    def relation(self, rule: Rule, old: Value, new: Value, ctx: Context) -> dict[str, Any]:
        return {"relation": "Account", "field": "AccountId", "name": new}
