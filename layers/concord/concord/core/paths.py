"""Paths into provider JSON, as written in the mapping: ``emailAddresses[0].address``,
``start.dateTime``, ``phoneNumbers[type=mobile].value``, ``payload.headers[name=Subject].value``.

Grammar: dot-separated keys; a key may be followed by ``[N]`` (list index) or ``[key=value]`` (the first
list element whose ``key`` equals ``value``). Paths are parsed once, when the mapping is compiled.

Writes are expressed as JSON patches of top-level properties: setting ``start.dateTime`` copies the whole
``start`` object from the current record into the patch and changes one key in the copy. That is what
Graph's PATCH (complex properties are replaced whole) and Google's ``updatePersonFields`` (a field's
whole list is replaced) both need, and several entries writing into one object (``organizations[0]``'s
name, title and department) meet in the same copy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Path", "PathError", "parse_path"]

_SEGMENT = re.compile(r"^([A-Za-z_@$][\w@$.-]*?)(?:\[(\d+)\]|\[([\w-]+)=([^\]]*)\])?$")


class PathError(ValueError):
    """A path that does not follow the grammar."""


@dataclass(frozen=True, slots=True)
class Step:
    """One step: a key, then optionally an index or a selector on the list found under it."""

    key: str
    index: int | None = None
    select_key: str | None = None
    select_value: str | None = None

    @property
    def into_list(self) -> bool:
        return self.index is not None or self.select_key is not None


@dataclass(frozen=True, slots=True)
class Path:
    """A parsed path. ``text`` is how the mapping wrote it."""

    text: str
    steps: tuple[Step, ...]
    #: the key when the path is one plain key (the common case, read without a loop)
    simple: str | None = None

    @property
    def top(self) -> str:
        """The top-level property the path starts in (the unit of a patch)."""
        return self.steps[0].key

    def get(self, doc: Mapping[str, Any] | None) -> Any:
        """The value at the path, or ``None`` when any step is missing or of the wrong shape."""
        if self.simple is not None and type(doc) is dict:
            return doc.get(self.simple)
        current: Any = doc
        for step in self.steps:
            if type(current) is not dict and not isinstance(current, Mapping):
                return None
            current = current.get(step.key)
            if step.index is not None:
                if type(current) is not list or step.index >= len(current):
                    return None
                current = current[step.index]
            elif step.select_key is not None:
                current = _select(current, step.select_key, step.select_value)
        return current

    def set(self, patch: dict[str, Any], current: Mapping[str, Any] | None, value: Any) -> None:  # noqa: C901, PLR0912, PLR0915 (one linear pass; splitting it would scatter the rules)
        """Write ``value`` at the path into ``patch`` (see the module docstring). ``None`` removes."""
        first = self.steps[0]
        if len(self.steps) == 1 and not first.into_list:
            patch[first.key] = value
            return
        if first.key not in patch:
            patch[first.key] = _copy(current.get(first.key) if current is not None else None)
        parent: dict[str, Any] = patch
        for position, step in enumerate(self.steps):
            last = position == len(self.steps) - 1
            if not step.into_list:
                if last:
                    if value is None:
                        parent.pop(step.key, None)
                    else:
                        parent[step.key] = value
                    return
                child = parent.get(step.key)
                if not isinstance(child, dict):
                    child = {}
                    parent[step.key] = child
                parent = child
                continue
            items = parent.get(step.key)
            if not isinstance(items, list):
                items = []
                parent[step.key] = items
            slot = self._slot(items, step)
            if last:
                if value is None:
                    if slot < len(items):
                        del items[slot]
                elif slot < len(items):
                    items[slot] = value
                else:
                    items.append(value)
                return
            if slot >= len(items) or not isinstance(items[slot], dict):
                element: dict[str, Any] = {}
                if step.select_key is not None:
                    element[step.select_key] = step.select_value
                if slot < len(items):
                    items[slot] = element
                else:
                    items.append(element)
                    slot = len(items) - 1
            parent = items[slot]

    @staticmethod
    def _slot(items: list[Any], step: Step) -> int:
        if step.index is not None:
            return min(step.index, len(items))
        for position, item in enumerate(items):
            if isinstance(item, Mapping) and item.get(step.select_key or "") == step.select_value:
                return position
        return len(items)


def _select(items: Any, key: str, value: str | None) -> Any:
    if not isinstance(items, list):
        return None
    for item in items:
        if isinstance(item, Mapping) and item.get(key) == value:
            return item
    return None


def _copy(value: Any) -> Any:
    """A deep copy of JSON data (faster than ``copy.deepcopy`` and enough for JSON)."""
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def parse_path(text: str) -> Path:
    """Parse a mapping path; raises :class:`PathError` naming the bad part."""
    if not text or not text.strip():
        raise PathError("empty path")
    steps: list[Step] = []
    for part in _split(text.strip()):
        match = _SEGMENT.match(part)
        if match is None:
            raise PathError(f"bad path {text!r} at {part!r}")
        key, index, select_key, select_value = match.groups()
        steps.append(
            Step(
                key=key,
                index=int(index) if index is not None else None,
                select_key=select_key,
                select_value=select_value,
            )
        )
    simple = steps[0].key if len(steps) == 1 and not steps[0].into_list else None
    return Path(text=text.strip(), steps=tuple(steps), simple=simple)


def _split(text: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    start = 0
    for position, char in enumerate(text):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == "." and depth == 0:
            parts.append(text[start:position])
            start = position + 1
    parts.append(text[start:])
    if any(not part for part in parts):
        raise PathError(f"bad path {text!r}: empty step")
    return parts
