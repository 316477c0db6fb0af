"""`make run`, exactly as the README shows it, from a shell with nothing exported: it comes up,
serves, and goes down on Ctrl-C (SIGINT to its process group, as a terminal sends it) with no
process and no file of its own left behind, whether it had finished starting or not."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import httpx
import pytest

from tests.e2e.processes import alive, descendants

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[2]
# What a new user's shell has: no PYTHONPATH, no AWS settings, no virtualenv activated.
CLEAN_ENV = {"HOME": os.environ.get("HOME", "/root"), "PATH": "/usr/local/bin:/usr/bin:/bin"}


class MakeRun:
    """`make run` in a process group of its own, its output read line by line in the background."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            ["make", "run"],
            cwd=ROOT,
            env=CLEAN_ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line)
        self._queue.put(None)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if text in line:
                return
        raise AssertionError(f"`make run` never said {text!r}:\n{self.output}")

    def ctrl_c(self, timeout: float = 60) -> None:
        os.killpg(self.process.pid, signal.SIGINT)
        self.process.wait(timeout=timeout)
        while (line := self._queue.get(timeout=5)) is not None:
            self.lines.append(line)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)


def _printed(output: str, label: str) -> str:
    match = re.search(rf"^\s+{re.escape(label)}\s*[= ]\s*(\S+)$", output, re.M)
    assert match, f"{label} not printed:\n{output}"
    return match.group(1)


@pytest.fixture
def make_run() -> Iterator[MakeRun]:
    run = MakeRun()
    yield run
    run.kill()


def test_make_run_serves_the_provisioned_stack_and_stops_cleanly_on_ctrl_c(make_run: MakeRun) -> None:
    make_run.wait_for("ready")
    output = make_run.output
    started = descendants(make_run.process.pid)
    assert len(started) >= 3, f"make, python, DynamoDB Local and moto should all be below make: {started}"

    # WHEN a client uses the printed endpoints: a webhook route, the queue and the tables
    webhooks = _printed(output, "webhooks (API Gateway)")
    answer = httpx.post(f"{webhooks}/graph/notifications", params={"validationToken": "ping"}, timeout=10)
    assert (answer.status_code, answer.text) == (200, "ping")
    queue_url, moto_url = _printed(output, "CHANGES_QUEUE_URL"), _printed(output, "AWS_ENDPOINT_URL")
    sqs = boto3.client("sqs", endpoint_url=moto_url, region_name="us-east-1")
    sqs.send_message(QueueUrl=queue_url, MessageBody="hello")
    assert sqs.receive_message(QueueUrl=queue_url)["Messages"][0]["Body"] == "hello"
    ddb_url = _printed(output, "AWS_ENDPOINT_URL_DYNAMODB")
    assert "LinksTable" in boto3.client("dynamodb", endpoint_url=ddb_url).list_tables()["TableNames"]
    env_file, ca_bundle = (
        Path(_printed(output, "env-vars file for sam local invoke")),
        _printed(output, "sandbox CA bundle"),
    )
    assert env_file.is_file()
    assert Path(ca_bundle).is_file()

    # THEN Ctrl-C stops it, with every process and every file of this run gone
    make_run.ctrl_c()
    assert "concord: stopped cleanly" in make_run.output, make_run.output
    assert not alive(started), f"left running:\n{make_run.output}"
    with pytest.raises(httpx.TransportError):
        httpx.get(moto_url, timeout=1)  # nothing listens any more
    assert not env_file.exists()
    assert not Path(ca_bundle).exists()


def test_ctrl_c_while_make_run_is_starting_stops_what_had_started(make_run: MakeRun) -> None:
    # GIVEN DynamoDB Local and moto launched but not yet answering
    make_run.wait_for("AWS servers launched")
    started = descendants(make_run.process.pid)
    assert len(started) >= 3, make_run.output

    # WHEN Ctrl-C arrives in the middle of the start
    make_run.ctrl_c()

    # THEN the start is abandoned and nothing it had started is left
    assert "start interrupted" in make_run.output, make_run.output
    assert "concord: ready" not in make_run.output
    assert not alive(started), f"left running:\n{make_run.output}"
    assert not (ROOT / ".local" / "env.json").exists()
