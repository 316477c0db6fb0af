"""A SOQL subset: enough for Concord's client and for simple-salesforce's queries.

``SELECT f1, Rel.f2 | COUNT() FROM Type [WHERE ...] [ORDER BY f [ASC|DESC] [NULLS FIRST|LAST], ...]
[LIMIT n] [OFFSET n]`` with ``=``, ``!=``/``<>``, ``<``, ``>``, ``<=``, ``>=``, ``IN (...)``, ``NOT IN``,
``LIKE``, ``AND``/``OR``/``NOT``, parentheses, string/number/date/datetime literals, ``NULL``,
``TRUE``/``FALSE``, parent relationship paths (``Account.Name``, ``Who.Name``, ``Owner.Email``) and one
level of child relationship subqueries (``(SELECT RelationId, Relation.Email FROM EventRelations)``).
String literals take exactly the escapes the SOQL reference lists, and nothing else (see ``_ESCAPES``).

Errors carry the code Salesforce uses: ``MALFORMED_QUERY``, ``INVALID_FIELD``, ``INVALID_TYPE``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from local.sandboxes.salesforce.schema import (
    TYPES,
    SObjectType,
    child_relationship,
    lookup_type,
    parse_date,
    parse_datetime,
)


class SoqlError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*')
      | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
      | (?P<date>\d{4}-\d{2}-\d{2})
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<op>!=|<>|<=|>=|=|<|>)
      | (?P<punct>[(),])
      | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.X,
)

# The SOQL and SOSL Reference, "Quoted String Escape Sequences": these and ``\\uXXXX`` are the only escapes;
# ``\\%`` and ``\\_`` are valid in a LIKE pattern only; "If you use a backslash character in any other
# context, an error occurs." (``\\b`` is backspace, as in Java, whose escapes SOQL follows.)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}
_LIKE_ESCAPES = frozenset("%_")


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    position: int


@dataclass(frozen=True)
class Literal:
    kind: str  # string, number, boolean, null, date, datetime, pattern (a LIKE literal, compiled)
    value: Any


@dataclass(frozen=True)
class Condition:
    op: str  # and, or, not, cmp, in, like
    parts: tuple[Condition, ...] = ()
    path: tuple[str, ...] = ()
    comparator: str = ""
    values: tuple[Literal, ...] = ()
    negate: bool = False


@dataclass
class _Raw:
    """A parsed SELECT before its names are resolved against the schema."""

    names: list[str] = field(default_factory=list)
    children: list[_Raw] = field(default_factory=list)
    count_only: bool = False
    sobject: str = ""
    where: Condition | None = None
    order: list[tuple[str, bool, bool]] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0


@dataclass
class Child:
    """A child relationship subquery: ``(SELECT ... FROM EventRelations)`` on Event."""

    relationship: str  # as the parent names it, and as the answer's key
    parent_field: str  # the child's reference to the parent (EventId)
    query: Query


@dataclass
class Query:
    sobject: SObjectType
    fields: list[tuple[str, ...]] = field(default_factory=list)  # canonical paths
    children: list[Child] = field(default_factory=list)
    count_only: bool = False
    where: Condition | None = None
    order: list[tuple[tuple[str, ...], bool, bool]] = field(default_factory=list)  # path, descending, nulls last
    limit: int | None = None
    offset: int = 0


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{text[position:].split()[0]}'")
        kind = match.lastgroup or ""
        tokens.append(Token(kind, match.group(kind), match.start(kind)))
        position = match.end()
    return tokens


def _scan(text: str, *, like: bool) -> list[tuple[str, bool]]:
    """The characters of a quoted literal, each with whether it is a LIKE wildcard (``%``/``_`` unescaped)."""
    body = text[1:-1]
    out: list[tuple[str, bool]] = []
    index = 0
    while index < len(body):
        char = body[index]
        if char != "\\":
            out.append((char, like and char in _LIKE_ESCAPES))
            index += 1
            continue
        escape = body[index + 1 : index + 2]
        if escape in ('"', "'", "\\"):
            out.append((escape, False))
            index += 2
        elif escape and escape.lower() in "nrtbf":
            out.append((_ESCAPES[escape.lower()], False))
            index += 2
        elif like and escape in _LIKE_ESCAPES:
            out.append((escape, False))
            index += 2
        elif escape == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", body[index + 2 : index + 6]):
            out.append((chr(int(body[index + 2 : index + 6], 16)), False))
            index += 6
        else:
            raise SoqlError("MALFORMED_QUERY", f"Invalid string literal: illegal escape sequence '\\{escape}'")
    return out


def _unquote(text: str) -> str:
    return "".join(char for char, _ in _scan(text, like=False))


def _like_pattern(text: str) -> re.Pattern[str]:
    """A LIKE literal as a regular expression: ``%`` any run, ``_`` one character, ``\\%``/``\\_`` themselves."""
    parts = [(".*" if char == "%" else ".") if wild else re.escape(char) for char, wild in _scan(text, like=True)]
    return re.compile("".join(parts), re.I | re.S)


class _Parser:
    def __init__(self, text: str):
        self.tokens = tokenize(text)
        self.index = 0

    def peek(self, offset: int = 0) -> Token | None:
        index = self.index + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def at(self, punct: str) -> bool:
        """Consume ``punct`` if it comes next."""
        token = self.peek()
        if token is not None and token.kind == "punct" and token.text == punct:
            self.index += 1
            return True
        return False

    def keyword(self, *words: str) -> bool:
        """Consume the keywords if they come next (case-insensitive)."""
        for offset, word in enumerate(words):
            token = self.peek(offset)
            if token is None or token.kind != "word" or token.text.upper() != word:
                return False
        self.index += len(words)
        return True

    def expect_keyword(self, word: str) -> None:
        if not self.keyword(word):
            found = self.peek()
            raise SoqlError("MALFORMED_QUERY", f"expecting '{word}', found '{found.text if found else '<EOF>'}'")

    def take(self, kind: str, text: str | None = None) -> Token:
        token = self.peek()
        if token is None or token.kind != kind or (text is not None and token.text != text):
            expected = text or kind
            raise SoqlError("MALFORMED_QUERY", f"expecting '{expected}', found '{token.text if token else '<EOF>'}'")
        self.index += 1
        return token

    def parse(self) -> _Raw:
        raw = self.select(nested=False)
        extra = self.peek()
        if extra is not None:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{extra.text}'")
        return raw

    def select(self, *, nested: bool) -> _Raw:
        self.expect_keyword("SELECT")
        raw = _Raw()
        if not nested and self.keyword("COUNT"):
            self.take("punct", "(")
            self.take("punct", ")")
            raw.count_only = True
        else:
            self.select_item(raw, nested)
            while self.at(","):
                self.select_item(raw, nested)
        self.expect_keyword("FROM")
        raw.sobject = self.take("word").text
        if self.keyword("WHERE"):
            raw.where = self.disjunction()
        if self.keyword("ORDER", "BY"):
            raw.order.append(self.order_item())
            while self.at(","):
                raw.order.append(self.order_item())
        raw.limit = int(self.take("number").text) if self.keyword("LIMIT") else None
        raw.offset = int(self.take("number").text) if not nested and self.keyword("OFFSET") else 0
        return raw

    def select_item(self, raw: _Raw, nested: bool) -> None:
        if not nested and self.at("("):  # a child relationship subquery; Salesforce allows one level
            raw.children.append(self.select(nested=True))
            self.take("punct", ")")
            return
        raw.names.append(self.take("word").text)

    def order_item(self) -> tuple[str, bool, bool]:
        name = self.take("word").text
        descending = False
        if self.keyword("DESC"):
            descending = True
        else:
            self.keyword("ASC")
        nulls_last = descending  # Salesforce's default: nulls first ascending, last descending
        if self.keyword("NULLS", "FIRST"):
            nulls_last = False
        elif self.keyword("NULLS", "LAST"):
            nulls_last = True
        return name, descending, nulls_last

    def disjunction(self) -> Condition:
        parts = [self.conjunction()]
        while self.keyword("OR"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else Condition("or", tuple(parts))

    def conjunction(self) -> Condition:
        parts = [self.negation()]
        while self.keyword("AND"):
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else Condition("and", tuple(parts))

    def negation(self) -> Condition:
        if self.keyword("NOT"):
            return Condition("not", (self.negation(),))
        token = self.peek()
        if token is not None and token.text == "(":
            self.index += 1
            inner = self.disjunction()
            self.take("punct", ")")
            return inner
        return self.comparison()

    def comparison(self) -> Condition:
        name = self.take("word").text
        path = (name,)
        if self.keyword("NOT", "IN"):
            return Condition("in", path=path, values=self.value_list(), negate=True)
        if self.keyword("IN"):
            return Condition("in", path=path, values=self.value_list())
        if self.keyword("LIKE"):
            token = self.peek()
            if token is None or token.kind != "string":
                raise SoqlError("MALFORMED_QUERY", "LIKE needs a string")
            self.index += 1
            return Condition("like", path=path, values=(Literal("pattern", _like_pattern(token.text)),))
        comparator = self.take("op").text
        return Condition(
            "cmp", path=path, comparator="!=" if comparator == "<>" else comparator, values=(self.value(),)
        )

    def value_list(self) -> tuple[Literal, ...]:
        self.take("punct", "(")
        values = [self.value()]
        while self.at(","):
            values.append(self.value())
        self.take("punct", ")")
        return tuple(values)

    def value(self) -> Literal:
        token = self.peek()
        if token is None:
            raise SoqlError("MALFORMED_QUERY", "unexpected end of query")
        self.index += 1
        if token.kind == "string":
            return Literal("string", _unquote(token.text))
        if token.kind == "number":
            return Literal("number", float(token.text))
        if token.kind == "datetime":
            return Literal("datetime", parse_datetime(token.text))
        if token.kind == "date":
            return Literal("date", parse_date(token.text))
        if token.kind == "word" and token.text.upper() in ("TRUE", "FALSE"):
            return Literal("boolean", token.text.upper() == "TRUE")
        if token.kind == "word" and token.text.upper() == "NULL":
            return Literal("null", None)
        raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{token.text}'")


# ------------------------------------------------------------------------------ field resolution


def resolve_path(sobject: SObjectType, name: str) -> tuple[str, ...]:
    """Canonical path of ``name`` (``AccountId``, ``Account.Name``), or ``INVALID_FIELD``."""
    parts = name.split(".")
    if parts[0].lower() == sobject.name.lower() and len(parts) > 1:
        parts = parts[1:]  # "Contact.Email" FROM Contact is allowed
    canonical: list[str] = []
    current: tuple[SObjectType, ...] = (sobject,)
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if last:
            found = next((spec for t in current if (spec := t.field(part)) is not None), None)
            if found is None:
                raise SoqlError("INVALID_FIELD", f"No such column '{part}' on entity '{current[0].name}'.")
            canonical.append(found.name)
            break
        reference = next((spec for t in current if (spec := t.field(part + "Id")) is not None), None)
        if reference is None or reference.type != "reference":
            raise SoqlError(
                "INVALID_FIELD",
                f"Didn't understand relationship '{part}' in field path. If you are attempting to use a custom "
                "relationship, be sure to append the '__r' after the custom relationship name.",
            )
        canonical.append(reference.name[:-2])
        current = tuple(TYPES[name] for name in reference.references)
    return tuple(canonical)


def compile_query(text: str) -> Query:
    raw = _Parser(text).parse()
    sobject = lookup_type(raw.sobject)
    if sobject is None:
        raise SoqlError(
            "INVALID_TYPE",
            f"sObject type '{raw.sobject}' is not supported. If you are attempting to use a custom object, be sure "
            "to append the '__c' after the entity name.",
        )
    query = _resolve(sobject, raw)
    for child in raw.children:
        found = child_relationship(sobject, child.sobject)
        if found is None:
            raise SoqlError(
                "INVALID_TYPE",
                f"Didn't understand relationship '{child.sobject}' in FROM part of query call. If you are "
                "attempting to use a custom relationship, be sure to append the '__r' after the custom "
                "relationship name.",
            )
        name, child_type, parent_field = found
        query.children.append(Child(name, parent_field, _resolve(child_type, child)))
    return query


def _resolve(sobject: SObjectType, raw: _Raw) -> Query:
    query = Query(sobject, count_only=raw.count_only, limit=raw.limit, offset=raw.offset)
    for name in raw.names:
        path = resolve_path(sobject, name)
        if path not in query.fields:
            query.fields.append(path)
    query.where = _resolve_condition(sobject, raw.where) if raw.where else None
    query.order = [(resolve_path(sobject, name), desc, nulls_last) for name, desc, nulls_last in raw.order]
    return query


def _resolve_condition(sobject: SObjectType, condition: Condition) -> Condition:
    if condition.op in ("and", "or", "not"):
        return Condition(condition.op, tuple(_resolve_condition(sobject, part) for part in condition.parts))
    (name,) = condition.path
    return Condition(
        condition.op,
        path=resolve_path(sobject, name),
        comparator=condition.comparator,
        values=condition.values,
        negate=condition.negate,
    )


# ------------------------------------------------------------------------------------ evaluation

Getter = Callable[[dict[str, Any], tuple[str, ...]], Any]


def matches(condition: Condition, record: dict[str, Any], get: Getter) -> bool:
    if condition.op == "and":
        return all(matches(part, record, get) for part in condition.parts)
    if condition.op == "or":
        return any(matches(part, record, get) for part in condition.parts)
    if condition.op == "not":
        return not matches(condition.parts[0], record, get)
    value = get(record, condition.path)
    if condition.op == "in":
        found = any(_compare(value, "=", literal) for literal in condition.values)
        return found != condition.negate
    if condition.op == "like":
        if value is None:
            return False
        return condition.values[0].value.fullmatch(str(value)) is not None
    return _compare(value, condition.comparator, condition.values[0])


def _coerce(value: Any, literal: Literal) -> tuple[Any, Any]:
    """Both sides as comparable Python values, typed by the literal."""
    if literal.kind == "datetime":
        return parse_datetime(str(value)), literal.value
    if literal.kind == "date":
        return parse_date(str(value)), literal.value
    if literal.kind == "number":
        return float(value), literal.value
    if literal.kind == "boolean":
        return bool(value), literal.value
    return str(value).lower(), str(literal.value).lower()  # SOQL compares text case-insensitively


def _compare(value: Any, comparator: str, literal: Literal) -> bool:
    if literal.kind == "null" or value is None:
        same = (value is None) == (literal.kind == "null")
        if comparator == "=":
            return same
        if comparator == "!=":
            return not same
        return False
    try:
        left, right = _coerce(value, literal)
    except (TypeError, ValueError):
        return comparator == "!="
    operations: dict[str, Callable[[Any, Any], bool]] = {
        "=": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        ">": lambda a, b: a > b,
        "<=": lambda a, b: a <= b,
        ">=": lambda a, b: a >= b,
    }
    return operations[comparator](left, right)


def sort_key(value: Any) -> Any:
    """Order values the way their type orders (datetimes by instant, text case-insensitively)."""
    if isinstance(value, str):
        try:
            if len(value) > 10 and value[4] == "-" and value[10] == "T":
                return parse_datetime(value).timestamp()
        except ValueError:
            return value.lower()
        return value.lower()
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value
