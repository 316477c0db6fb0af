"""What every benchmark prints: a table for people, then one JSON line for machines.

See ../shared/BENCHMARKS.md for the keys. Benchmarks measure; they never fail on a target.
"""

from __future__ import annotations

import json
import os
import platform
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


def machine() -> dict[str, object]:
    """The facts a reader needs to compare figures across runs."""
    return {"cores": os.cpu_count(), "cpu": _cpu_model(), "python": platform.python_version()}


def _cpu_model() -> str:
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def percentile(samples: Sequence[float], pct: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def emit(bench: str, rows: Sequence[tuple[str, object, str]], figures: Mapping[str, float]) -> None:
    """Print ``rows`` (name, value, target or note) as a table, then the JSON line last."""
    width = max((len(name) for name, _, _ in rows), default=10)
    print(f"\n{bench} benchmark on {machine()}")
    print(f"{'figure':<{width}}  {'value':>14}  target/note")
    for name, value, note in rows:
        shown = f"{value:,.2f}" if isinstance(value, float) else str(value)
        print(f"{name:<{width}}  {shown:>14}  {note}")
    print(json.dumps({"bench": bench, **figures, "machine": machine()}))
