"""`make run` comes up, serves, and goes down cleanly on Ctrl-C with no process left behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _children_of(pid: int) -> set[int]:
    found: set[int] = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue  # the process ended while we looked: it is not a child any more
        match = re.search(r"^PPid:\s+(\d+)$", text, re.M)
        if match and int(match.group(1)) == pid:
            child = int(status.parent.name)
            found |= {child, *_children_of(child)}
    return found


def _printed(output: str, key: str) -> str:
    match = re.search(rf"^\s+{key}=(\S+)$", output, re.M)
    assert match, f"{key} not printed:\n{output}"
    return match.group(1)


def test_make_run_serves_the_provisioned_stack_and_stops_cleanly_on_ctrl_c() -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'layers' / 'concord'}:{ROOT}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "local.run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 90
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if line.startswith("concord: ready") or not line:
                break
        output = "".join(lines)
        assert "concord: ready" in output, output
        children = _children_of(process.pid)
        assert children, "the local servers should run as children of make run"

        # WHEN a client uses the printed endpoints
        queue_url, moto_url = _printed(output, "CHANGES_QUEUE_URL"), _printed(output, "AWS_ENDPOINT_URL")
        sqs = boto3.client("sqs", endpoint_url=moto_url, region_name="us-east-1")
        sqs.send_message(QueueUrl=queue_url, MessageBody="hello")
        assert sqs.receive_message(QueueUrl=queue_url)["Messages"][0]["Body"] == "hello"
        ddb_url = _printed(output, "AWS_ENDPOINT_URL_DYNAMODB")
        assert "LinksTable" in boto3.client("dynamodb", endpoint_url=ddb_url).list_tables()["TableNames"]

        # THEN Ctrl-C stops it with exit code 0 and every child gone
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
        assert process.returncode == 0, rest
        assert "stopped cleanly" in rest
        alive = {pid for pid in children if Path(f"/proc/{pid}").exists()}
        assert not alive, f"left running: {alive}"
        with pytest.raises(httpx.TransportError):
            httpx.get(moto_url, timeout=1)  # nothing listens any more
    finally:
        if process.poll() is None:
            process.kill()
