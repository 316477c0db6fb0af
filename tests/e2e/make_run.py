"""`make run` as a user runs it, for the end-to-end tests: from a shell with nothing exported, in a
process group of its own (as a terminal starts it), its output read line by line in the background."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

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
        self.wait_for_line(re.escape(text), timeout)

    def wait_for_line(self, pattern: str, timeout: float = 90) -> re.Match[str]:
        """The first line from now on that ``pattern`` matches (searched anywhere in the line)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.lines.append(line)
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"`make run` never printed a line matching {pattern!r}:\n{self.output}")

    def ctrl_c(self, timeout: float = 60) -> None:
        os.killpg(self.process.pid, signal.SIGINT)
        self.process.wait(timeout=timeout)
        while (line := self._queue.get(timeout=5)) is not None:
            self.lines.append(line)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)


def printed(output: str, label: str) -> str:
    """The value `make run` printed after ``label`` in its list of endpoints and settings."""
    match = re.search(rf"^\s+{re.escape(label)}\s*[= ]\s*(\S+)$", output, re.M)
    assert match, f"{label} not printed:\n{output}"
    return match.group(1)
