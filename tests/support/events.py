"""``events/*.json`` are data shared by ``sam local invoke -e`` and the tests: load them through here."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

EVENTS_DIR = Path(__file__).resolve().parents[2] / "events"


@cache
def _read(name: str) -> dict[str, Any]:
    path = EVENTS_DIR / (name if name.endswith(".json") else f"{name}.json")
    if not path.is_file():
        known = ", ".join(event_names())
        raise FileNotFoundError(f"no event {name!r} under {EVENTS_DIR} (known: {known})")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a JSON {type(data).__name__}, not an object")
    return data


def load_event(name: str) -> dict[str, Any]:
    """A fresh copy of ``events/<name>.json``; ``name`` is e.g. ``"graph_webhook/validation"``."""
    return copy.deepcopy(_read(name))


def event_names(function: str | None = None) -> list[str]:
    """Every event's name (``<function>/<case>``), or only ``function``'s."""
    root = EVENTS_DIR / function if function else EVENTS_DIR
    return sorted(str(p.relative_to(EVENTS_DIR).with_suffix("")) for p in root.rglob("*.json"))
