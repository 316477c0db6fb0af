"""The Graph sandbox stands for Microsoft's service, not for Concord: it imports nothing from ``concord``.

A sandbox that borrowed the product's time-zone resolver agreed with the product's bugs, and when
``concord`` was not importable a fallback swallowed the ImportError and the sandbox refused its own seed
event ("The following TimeZone value is not supported: 'Pacific Standard Time'").
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
SANDBOXES = ROOT / "local" / "sandboxes"

_SEED_WITHOUT_CONCORD = """
import importlib.util, sys
assert importlib.util.find_spec("concord") is None, "concord must not be importable here"
from local.sandboxes.graph import GraphSandbox, _resolve_zone
sandbox = GraphSandbox()
sandbox.start()
try:
    sandbox.seed()
    events = sandbox.state()["mailboxes"]["alex@contoso.example"]["events"]
    zone = _resolve_zone("Pacific Standard Time")
    print(events, zone.key)
finally:
    sandbox.stop()
"""


def test_sandbox_seeds_with_concord_not_importable() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = "."
    done = subprocess.run(
        [sys.executable, "-c", _SEED_WITHOUT_CONCORD],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    count, zone = done.stdout.split()
    assert int(count) >= 3 and zone == "America/Los_Angeles"


def test_no_sandbox_source_imports_concord() -> None:
    offenders = []
    for path in sorted(SANDBOXES.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}:{node.lineno} {n}" for n in names if n.split(".")[0] == "concord"]
    assert offenders == []
