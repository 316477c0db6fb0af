"""The field mapping: a YAML file, validated by a pydantic schema, compiled once for the hot path.

File shape (see ``default_mapping.yaml``, the mapping Concord ships)::

    version: 1
    contacts:                       # also: events, emails
      salesforce_objects: [Contact, Lead]
      salesforce_defaults: {}       # extra fields of a Salesforce create (emails: Status, TaskSubtype)
      required_defaults:            # per sObject: fills a required field left blank by a create
        Lead:
          Company: {sources: [], value: "[not provided]"}
      fields:
        - name: title               # the canonical name (snapshot key, record attribute)
          salesforce: Title         # or a list (composite transforms), or {Contact: …, Lead: …}
          graph: jobTitle           # a path into the provider's JSON (paths.py); omitted = not synced
          google: organizations[0].title
          direction: both           # both | to_salesforce | to_mailbox
          policy: most_recent       # see merge.py
          transform: text           # a name from transforms.REGISTRY (default text)
          read_only: false          # the Salesforce field is read-only (formula, system)
          attendee_visible: false   # events: a change attendees see (subject, time, location, body)
          private_content: false    # events: tells what a private event is about (see below)
          clears: propagate         # propagate | keep: what a deliberate one-sided clear does (merge.py)
          options: {}               # transform options, e.g. {end: true}

Required fields. Salesforce refuses a create without its required fields (``REQUIRED_FIELD_MISSING``):
a Contact's and a Lead's ``LastName``, a Lead's ``Company``. ``required_defaults`` names, per sObject,
the required fields and how a create fills them when the mapped value is blank: the first of
``sources`` that gives a value, else the literal ``value``. Sources: ``display_name`` (the mailbox's
display name, Graph ``displayName`` / Google ``names[0].displayName``, less a leading first name; nothing
when it is only the first name), ``email_local_part`` (the address before ``@``), or a canonical field
name of the section. The shipped mapping (``default_mapping.yaml``) fills ``LastName`` from the display
name, then the email's local part, else ``(unknown)``, and a Lead's ``Company`` with ``[not provided]``
(the placeholder Salesforce's own Web-to-Lead uses). A required field is also never cleared by a sync:
a deliberate clear in the mailbox is not written to it (decision ``required``).

Clears. ``clears: propagate`` (the default): a deliberate one-sided clear (the field held a value, one
side blanked it, the other side did not change) is written to the other side. ``clears: keep``: the
value is restored instead. A blank never wins a conflict or a first sync, whatever the option. The
shipped mapping keeps clears of ``company`` (a Contact's Account is relational: a mailbox clear must
not detach the Contact from its Account).

Private events. With the connection's ``sync_private_events`` off, a linked event that turns private
still sends ``IsPrivate`` to Salesforce, but the fields marked ``private_content`` (subject, location,
description, attendees in the shipped mapping) are no longer updated either way while it stays private
(see plan.py).

Errors: every mistake found is reported, each as ``file:line: section.fields[i] (label): message``
(:class:`MappingError`). Line numbers come from PyYAML's composed nodes, so they point at the entry or
key at fault. Checked: the schema (unknown keys, bad direction or policy), unknown Salesforce fields
(per object; ``…__c`` custom fields are accepted), unknown provider properties, bad paths, unknown
transforms and wrong field counts for them, a read-only Salesforce field with a direction or policy that
would write to it, and duplicate targets (two entries writing one Salesforce field or one mailbox path,
or sharing a name).

Compilation (:meth:`MappingSet.compile`) resolves one (object kind, Salesforce object, provider) triple
to a tuple of :class:`FieldRule` with parsed paths and the transform instance, cached: the plan never
touches pydantic or YAML.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from concord.core.catalog import MAILBOX_KEYS, salesforce_access
from concord.core.merge import Clears, Direction, Policy  # noqa: TC001  (pydantic resolves them at runtime)
from concord.core.paths import Path, PathError, parse_path
from concord.core.transforms import REGISTRY, Rule, Transform

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "REQUIRED_SOURCES",
    "SECTIONS",
    "FieldEntry",
    "FieldRule",
    "MappingError",
    "MappingFile",
    "MappingSet",
    "ObjectKind",
    "ObjectMapping",
    "RequiredDefault",
    "Section",
    "default_mapping",
    "load_mapping",
]

type ObjectKind = Literal["contact", "event", "email"]
type Provider = Literal["graph", "google"]

SECTIONS: Final[dict[ObjectKind, str]] = {"contact": "contacts", "event": "events", "email": "emails"}

type SalesforceSpec = str | list[str] | dict[str, str | list[str]]


class FieldEntry(BaseModel):
    """One mapping entry (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    salesforce: SalesforceSpec | None = None
    graph: str | None = None
    google: str | None = None
    direction: Direction = "both"
    policy: Policy = "most_recent"
    transform: str | None = None
    read_only: bool = False
    attendee_visible: bool = False
    private_content: bool = False
    clears: Clears = "propagate"
    options: dict[str, str | int | bool] = Field(default_factory=dict)


#: the derived sources a required default may name (besides the section's canonical field names)
REQUIRED_SOURCES: Final = ("display_name", "email_local_part")


class RequiredDefault(BaseModel):
    """How a create fills one required Salesforce field left blank: the first of ``sources`` with a
    value, else ``value`` (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sources: list[str] = Field(default_factory=list)
    value: str = Field(min_length=1)


class Section(BaseModel):
    """One object pair: its Salesforce object types, create defaults and fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    salesforce_objects: list[str] = Field(min_length=1)
    salesforce_defaults: dict[str, str | int | bool] = Field(default_factory=dict)
    required_defaults: dict[str, dict[str, RequiredDefault]] = Field(default_factory=dict)
    fields: list[FieldEntry] = Field(min_length=1)


class MappingFile(BaseModel):
    """The whole file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    contacts: Section | None = None
    events: Section | None = None
    emails: Section | None = None


class MappingError(ValueError):
    """A mapping with mistakes; ``problems`` lists each as ``file:line: where: what``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class FieldRule(Rule):
    """A compiled entry for one (Salesforce object, provider): what the plan iterates over."""

    __slots__ = (
        "attendee_visible",
        "clears",
        "direction",
        "label",
        "policy",
        "private_content",
        "read_only",
        "relates",
        "relation_set",
        "required",
        "sf_tops",
        "transform",
    )

    def __init__(
        self,
        *,
        name: str,
        label: str,
        sf_paths: tuple[Path, ...],
        mb_path: Path | None,
        direction: Direction,
        policy: Policy,
        transform: Transform,
        read_only: bool,
        attendee_visible: bool,
        options: Mapping[str, Any],
        relates: bool,
        clears: Clears = "propagate",
        private_content: bool = False,
        required: bool = False,
    ) -> None:
        super().__init__(name, sf_paths, mb_path, options)
        self.label = label
        self.direction = direction
        self.policy = policy
        self.transform = transform
        self.read_only = read_only
        self.attendee_visible = attendee_visible
        self.relates = relates
        #: a set of related records (attendees, participants): merged by membership, see plan.py
        self.relation_set = relates and transform.name in _RELATION_SETS
        self.clears: Clears = clears
        self.private_content = private_content
        #: a Salesforce field of this entry is required (``required_defaults``): never cleared
        self.required = required
        #: the top-level keys of the Salesforce record this entry reads (absent: not readable)
        self.sf_tops = tuple(dict.fromkeys(path.top for path in sf_paths))


@dataclass(frozen=True, slots=True)
class ObjectMapping:
    """The compiled fields for one (kind, Salesforce object, provider), plus create defaults."""

    kind: ObjectKind
    sobject: str
    provider: Provider
    fields: tuple[FieldRule, ...]
    salesforce_defaults: Mapping[str, Any]
    fingerprint: str
    #: required Salesforce field → how a create fills it when blank
    required_defaults: Mapping[str, RequiredDefault] = dataclass_field(default_factory=dict)
    #: the plan's per-connection bindings of these fields, built on first use (plan.py ``_bind``)
    bound: dict[Any, Any] = dataclass_field(default_factory=dict, compare=False, repr=False)

    def field(self, name: str) -> FieldRule | None:
        """The rule named ``name``, if this object maps it."""
        for rule in self.fields:
            if rule.name == name:
                return rule
        return None


class MappingSet:
    """A validated mapping file; :meth:`compile` gives the per-object rules."""

    def __init__(self, model: MappingFile, source: str, text: str) -> None:
        self.model = model
        self.source = source
        self.fingerprint = hashlib.sha256(text.encode()).hexdigest()[:16]
        self._compiled: dict[tuple[ObjectKind, str, Provider], ObjectMapping] = {}

    def section(self, kind: ObjectKind) -> Section | None:
        """The section for an object kind, if the file has one."""
        section: Section | None = getattr(self.model, SECTIONS[kind])
        return section

    def compile(self, kind: ObjectKind, sobject: str, provider: Provider) -> ObjectMapping:
        """The rules for ``kind`` records of Salesforce type ``sobject`` with a ``provider`` mailbox."""
        key = (kind, sobject, provider)
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled[key] = self._build(kind, sobject, provider)
        return found

    def _build(self, kind: ObjectKind, sobject: str, provider: Provider) -> ObjectMapping:
        section = self.section(kind)
        if section is None or sobject not in section.salesforce_objects:
            raise KeyError(f"{self.source}: no mapping for {kind} with Salesforce object {sobject!r}")
        rules: list[FieldRule] = []
        required = section.required_defaults.get(sobject, {})
        for entry in section.fields:
            fields = _salesforce_fields(entry.salesforce, sobject)
            mb_text: str | None = getattr(entry, provider)
            if not fields:
                continue  # not mapped for this Salesforce object (a Lead has no Birthdate)
            transform = REGISTRY[entry.transform or "text"]
            sf_paths = tuple(parse_path(field) for field in fields)
            mb_path = parse_path(mb_text) if mb_text else None
            read_only = entry.read_only or any(salesforce_access(sobject, f) == "ro" for f in fields)
            rule = FieldRule(
                name=entry.name,
                label=fields[0] if len(fields) == 1 else entry.name,
                sf_paths=sf_paths,
                mb_path=mb_path,
                direction=entry.direction,
                policy=entry.policy,
                transform=transform,
                read_only=read_only,
                attendee_visible=entry.attendee_visible,
                options=dict(entry.options),
                relates=transform.relates(
                    Rule(entry.name, sf_paths, mb_path, dict(entry.options)), _probe_context(provider, sobject)
                ),
                clears=entry.clears,
                private_content=entry.private_content,
                required=any(field in required for field in fields),
            )
            rules.append(rule)
        return ObjectMapping(
            kind=kind,
            sobject=sobject,
            provider=provider,
            fields=tuple(rules),
            salesforce_defaults=dict(section.salesforce_defaults),
            fingerprint=self.fingerprint,
            required_defaults=dict(required),
        )


def _probe_context(provider: Provider, sobject: str) -> Any:
    from concord.core.transforms import Context

    return Context(provider=provider, sobject=sobject)


def _salesforce_fields(spec: SalesforceSpec | None, sobject: str) -> list[str]:
    if spec is None:
        return []
    if isinstance(spec, dict):
        picked = spec.get(sobject)
        if picked is None:
            return []
        return [picked] if isinstance(picked, str) else list(picked)
    return [spec] if isinstance(spec, str) else list(spec)


# ---------------------------------------------------------------- loading


type Loc = tuple[str | int, ...]


def _to_python(node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> Any:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            result[key] = _to_python(value_node, (*loc, key), lines)
            lines[(*loc, key)] = key_node.start_mark.line + 1
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*loc, index), lines) for index, item in enumerate(node.value)]
    constructor = yaml.SafeLoader("")
    return constructor.construct_object(node, deep=True)  # type: ignore[no-untyped-call]


def load_mapping(text: str, source: str = "mapping.yaml") -> MappingSet:
    """Parse and validate a mapping; raises :class:`MappingError` listing every problem found."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        raise MappingError([f"{source}:{line}: not valid YAML: {error}"]) from error
    if root is None:
        raise MappingError([f"{source}:1: empty mapping"])
    lines: dict[Loc, int] = {}
    data = _to_python(root, (), lines)
    reporter = _Reporter(source, lines, data)
    try:
        model = MappingFile.model_validate(data)
    except ValidationError as error:
        for problem in error.errors():
            reporter.add(tuple(problem["loc"]), _pydantic_message(problem))
        raise MappingError(reporter.problems) from error
    _check(model, reporter)
    if reporter.problems:
        raise MappingError(reporter.problems)
    return MappingSet(model, source, text)


def _pydantic_message(problem: Any) -> str:
    kind = problem.get("type", "")
    loc = problem.get("loc", ())
    last = loc[-1] if loc else ""
    value = problem.get("input")
    if kind == "extra_forbidden":
        return f"unknown key {last!r}"
    if kind == "literal_error" and last == "direction":
        return f"bad direction {value!r} (expected both, to_salesforce or to_mailbox)"
    if kind == "literal_error" and last == "policy":
        return f"bad policy {value!r}"
    return f"{last}: {problem.get('msg', 'invalid')}" if last else str(problem.get("msg"))


class _Reporter:
    def __init__(self, source: str, lines: dict[Loc, int], data: Any) -> None:
        self.source = source
        self.lines = lines
        self.data = data
        self.problems: list[str] = []

    def add(self, loc: Loc, message: str) -> None:
        line = 1
        for cut in range(len(loc), -1, -1):
            if loc[:cut] in self.lines:
                line = self.lines[loc[:cut]]
                break
        self.problems.append(f"{self.source}:{line}: {self._where(loc)}: {message}")

    def _where(self, loc: Loc) -> str:
        text = ""
        label = ""
        for position, part in enumerate(loc):
            if isinstance(part, int):
                text += f"[{part}]"
                if position >= 2 and loc[position - 1] == "fields":
                    label = self._label(loc[: position + 1])
                continue
            if position >= 3 and loc[position - 2] == "fields":
                break  # the entry's own keys show in the message, not the location
            text += ("." if text else "") + str(part)
        return f"{text} ({label})" if label else (text or "mapping")

    def _label(self, loc: Loc) -> str:
        node: Any = self.data
        for part in loc:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                return ""
        if not isinstance(node, dict):
            return ""
        spec = node.get("salesforce")
        if isinstance(spec, str):
            return spec
        return str(node.get("name", ""))


def _check(model: MappingFile, reporter: _Reporter) -> None:
    for kind, section_name in SECTIONS.items():
        section: Section | None = getattr(model, section_name)
        if section is None:
            continue
        for sobject in section.salesforce_objects:
            if sobject not in ("Contact", "Lead", "Event", "Task"):
                reporter.add((section_name, "salesforce_objects"), f"unknown Salesforce object {sobject!r}")
        _check_section(kind, section_name, section, reporter)
        _check_required(section_name, section, reporter)


def _check_required(section_name: str, section: Section, reporter: _Reporter) -> None:
    names = {entry.name for entry in section.fields}
    for sobject, defaults in section.required_defaults.items():
        loc: Loc = (section_name, "required_defaults", sobject)
        if sobject not in section.salesforce_objects:
            reporter.add(loc, f"Salesforce object {sobject!r} is not in this section")
            continue
        for field, default in defaults.items():
            access = salesforce_access(sobject, field)
            if access is None:
                reporter.add((*loc, field), f"unknown Salesforce field {field!r} on {sobject}")
            elif access != "rw":
                reporter.add((*loc, field), f"Salesforce field {field!r} on {sobject} is not a writable field")
            for position, source in enumerate(default.sources):
                if source not in REQUIRED_SOURCES and source not in names:
                    reporter.add(
                        (*loc, field, "sources", position),
                        f"unknown source {source!r} (use {', '.join(REQUIRED_SOURCES)} or a field name)",
                    )


def _check_section(kind: ObjectKind, section_name: str, section: Section, reporter: _Reporter) -> None:  # noqa: C901, PLR0912, PLR0915 (one linear pass; splitting it would scatter the rules)
    names: dict[str, int] = {}
    sf_targets: dict[tuple[str, str], int] = {}
    mb_targets: dict[tuple[str, str], int] = {}
    for index, entry in enumerate(section.fields):
        loc: Loc = (section_name, "fields", index)
        if entry.name in names:
            reporter.add(loc, f"duplicate target: name {entry.name!r} also used by fields[{names[entry.name]}]")
        names.setdefault(entry.name, index)
        transform = REGISTRY.get(entry.transform or "text")
        if transform is None:
            reporter.add((*loc, "transform"), f"unknown transform {entry.transform!r}")
        writes_sf = entry.direction in ("both", "to_salesforce")
        writes_mb = entry.direction in ("both", "to_mailbox")
        if isinstance(entry.salesforce, dict):
            for sobject in entry.salesforce:
                if sobject not in section.salesforce_objects:
                    reporter.add((*loc, "salesforce"), f"Salesforce object {sobject!r} is not in this section")
        for sobject in section.salesforce_objects:
            fields = _salesforce_fields(entry.salesforce, sobject)
            expected = transform.salesforce_fields if transform is not None else None
            if fields and transform is not None and len(fields) != (expected or 1):
                reporter.add(
                    (*loc, "salesforce"),
                    f"transform {transform.name!r} needs {expected or 1} Salesforce field(s), got {len(fields)}",
                )
            read_only = entry.read_only
            for field in fields:
                access = salesforce_access(sobject, field)
                if access is None:
                    reporter.add((*loc, "salesforce"), f"unknown Salesforce field {field!r} on {sobject}")
                    continue
                if access == "relation" and not (transform is not None and transform.name in _RELATING):
                    reporter.add(
                        (*loc, "transform"),
                        f"Salesforce field {field!r} is a relation: use one of {', '.join(sorted(_RELATING))}",
                    )
                read_only = read_only or access == "ro"
                if writes_sf and access != "ro" and not entry.read_only:
                    key = (sobject, field)
                    if key in sf_targets:
                        reporter.add(
                            (*loc, "salesforce"),
                            f"duplicate target: Salesforce field {field!r} on {sobject} is also written "
                            f"by fields[{sf_targets[key]}]",
                        )
                    sf_targets.setdefault(key, index)
            if read_only and fields:
                if entry.direction != "to_mailbox":
                    reporter.add(
                        (*loc, "direction"),
                        f"read-only Salesforce field cannot have direction {entry.direction!r} "
                        "(read-only fields flow only to the mailbox: use to_mailbox)",
                    )
                if entry.policy.startswith("mailbox"):
                    reporter.add(
                        (*loc, "policy"),
                        f"read-only Salesforce field cannot have the both-ways policy {entry.policy!r}",
                    )
        has_mailbox = False
        for provider in ("graph", "google"):
            text: str | None = getattr(entry, provider)
            if text is None:
                continue
            has_mailbox = True
            try:
                path = parse_path(text)
            except PathError as error:
                reporter.add((*loc, provider), str(error))
                continue
            if path.top not in MAILBOX_KEYS[(provider, section_name)]:
                reporter.add((*loc, provider), f"unknown {provider} {section_name} property {path.top!r}")
            if writes_mb:
                key = (provider, path.text)
                if key in mb_targets:
                    reporter.add(
                        (*loc, provider),
                        f"duplicate target: {provider} path {path.text!r} is also written by fields[{mb_targets[key]}]",
                    )
                mb_targets.setdefault(key, index)
        if not has_mailbox and entry.salesforce is None:
            reporter.add(loc, "maps nothing: give a Salesforce field and/or a mailbox path")


_RELATING: Final = frozenset({"attendees", "participants", "account_name"})
_RELATION_SETS: Final = frozenset({"attendees", "participants"})


@cache
def default_mapping() -> MappingSet:
    """The mapping shipped with Concord (``default_mapping.yaml``), loaded once."""
    text = resources.files("concord.core").joinpath("default_mapping.yaml").read_text(encoding="utf-8")
    return load_mapping(text, "default_mapping.yaml")
