"""The worker benchmark still runs: at a tiny size, through ``python -m bench.worker`` as ``make bench`` runs
it, its last line is the JSON object with every key BENCHMARKS.md names for ``worker``, and every change
it made was found synced (else its figures would count work that did not happen)."""

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
    "salesforce_calls_per_1000",
    "salesforce_calls_per_1000_reverse",
    "salesforce_calls_per_1000_google",
    "graph_calls_per_1000",
    "google_calls_per_1000",
    "event_salesforce_calls_per_200",
    "dynamodb_requests_per_change",
    "worker_peak_rss_mb",
    "wall_s",
    "attendee_mails",
)


def test_the_worker_bench_prints_its_figures_as_the_last_line(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "concord"), str(ROOT)]),
        "BENCH_WORKER_CHANGES": "20",
        "BENCH_WORKER_EVENTS": "5",
        "BENCH_WORKER_LOG": str(tmp_path / "worker.log"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench.worker"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    figures = json.loads(done.stdout.strip().splitlines()[-1])

    assert figures["bench"] == "worker"
    for key in KEYS:
        value = figures[key]
        assert isinstance(value, int | float) and math.isfinite(value) and value >= 0, (key, value)
    assert figures["worker_peak_rss_mb"] > 0 and figures["wall_s"] > 0
    assert set(figures["machine"]) >= {"cores", "cpu", "python"}
    assert (figures["changes"], figures["events"], figures["unsynced"]) == (20, 5, 0), done.stdout
