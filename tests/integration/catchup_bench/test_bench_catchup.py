"""The catch-up benchmark still runs: at a small size, through ``python -m bench.catchup`` as ``make bench``
runs it, its last line is the JSON object with every key BENCHMARKS.md names for ``catchup``, the idle
hour's Salesforce calls do not grow from 1 to 10 to 100 connections, the first sync made no duplicate and
reached every record, and every dropped edit was repaired (else its figures would count work that did not
happen)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
KEYS = (
    "idle_salesforce_calls_per_hour_1",
    "idle_salesforce_calls_per_hour_10",
    "idle_salesforce_calls_per_hour_100",
    "idle_mailbox_calls_per_hour_per_connection",
    "repair_100_dropped_s",
    "repair_100_dropped_calls",
    "first_sync_s",
    "first_sync_duplicates",
)


def test_the_catchup_bench_prints_its_figures_as_the_last_line(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "concord"), str(ROOT)]),
        "BENCH_CATCHUP_CONNECTIONS": "1,10,100",
        "BENCH_CATCHUP_CONTACTS": "40",
        "BENCH_CATCHUP_EVENTS": "20",
        "BENCH_CATCHUP_DROPPED": "10",
        "BENCH_CATCHUP_LOG": str(tmp_path / "worker.log"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench.catchup"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    figures = json.loads(done.stdout.strip().splitlines()[-1])

    assert figures["bench"] == "catchup"
    for key in KEYS:
        value = figures[key]
        assert isinstance(value, int | float) and math.isfinite(value) and value >= 0, (key, value)
    assert set(figures["machine"]) >= {"cores", "cpu", "python"}
    idle = [figures[f"idle_salesforce_calls_per_hour_{n}"] for n in (1, 10, 100)]
    assert idle[0] > 0 and idle[0] == idle[1] == idle[2], done.stdout
    assert figures["idle_mailbox_calls_per_hour_per_connection"] > 0
    assert (figures["contacts"], figures["events"], figures["dropped"]) == (40, 20, 10)
    assert figures["first_sync_duplicates"] == 0, done.stdout
    assert (figures["first_sync_unsynced"], figures["repair_unsynced"]) == (0, 0), done.stdout
    assert figures["repair_100_dropped_calls"] > 0 and figures["repair_100_dropped_s"] > 0
