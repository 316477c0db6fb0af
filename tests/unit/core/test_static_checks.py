"""The project's type-checker settings find code that can never run (a method left after a ``return``,
as ``Date.to_json`` once was): ruff 0.14 ships no rule for it, so mypy's ``warn_unreachable`` must."""

from __future__ import annotations

from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parents[3]

DEAD_METHOD = """
def read(raw: str) -> str:
    return raw.strip()

    def to_json(value: str) -> str:
        return value
"""


def test_code_after_a_return_is_reported(tmp_path: Path) -> None:
    source = tmp_path / "dead.py"
    source.write_text(DEAD_METHOD)
    out, _, status = api.run(
        ["--config-file", str(ROOT / "pyproject.toml"), "--no-incremental", "--cache-dir", str(tmp_path), str(source)]
    )
    assert status == 1, out
    assert "dead.py:5: error: Statement is unreachable" in out
