"""``make run``: the whole system on this one machine.

Starts :class:`~local.system.LocalSystem` (the local AWS stack provisioned from template.yaml, the
Salesforce, Graph and Google sandboxes with seed data, and every function behind the local runner),
prints every endpoint and the env-vars file for ``sam local invoke``, and stays up until Ctrl-C
(SIGINT) or SIGTERM, then stops everything it started: no process is left behind, and no file of
this run either (the env-vars file, the sandboxes' CA bundle). A Ctrl-C while starting abandons
the start at its next step and stops what had started.

Once up, it asks the worker for a first sync of the seeded mailboxes (:meth:`LocalSystem.first_sync`)
and prints one line per decision the worker records in the sync log (:class:`DecisionFeed`): what was
synced, skipped, held or failed, and why. The functions' own output (Powertools' JSON log lines and
EMF metrics) goes to :data:`FUNCTION_LOG` instead, as a function's stdout goes to CloudWatch Logs.

``--bind ADDRESS`` (``make run BIND=0.0.0.0``) lets a function in a Docker container reach the AWS
half; the env-vars file then names this machine ``host.docker.internal`` (README: "Trying a
function on a laptop with Docker").
"""

from __future__ import annotations

import argparse
import io
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from pynamodb.exceptions import PynamoDBException

from local.aws.stack import ROOT
from local.system import LocalSystem, StartInterrupted

if TYPE_CHECKING:
    from collections.abc import Callable

    from concord.ports import LogEntry, LogStatus, SyncLog

READY_LINE = "concord: ready"
ENV_VARS_FILE = ROOT / ".local" / "env.json"
#: The functions' stdout: every JSON log line and EMF metric they print, one per line (this run's only).
FUNCTION_LOG = ROOT / ".local" / "logs" / "functions.jsonl"
STATUSES: tuple[LogStatus, ...] = ("synced", "skipped", "held", "failed")
_LONG_ID = re.compile(r"[A-Za-z0-9_=/-]{24,}")


def short_ids(text: str) -> str:
    """Mailbox ids (Graph's run to 150 characters) cut to their ends; Salesforce's 18 stay whole."""
    return _LONG_ID.sub(lambda m: f"{m.group()[:6]}…{m.group()[-8:]}", text)


def decision_line(entry: LogEntry) -> str:
    """One sync-log entry as a terminal line: when, what became of which record of which mailbox, and why.

    ``11:02:03 synced  contact conn-m365  graph AAMkAG…Pdm07mwJ ↔ 0035g0000000002AAA: link contact (new): …``
    """
    record_id = entry.record_key.split("#", 2)[-1]
    other = entry.mailbox_id if entry.source == "salesforce" else entry.salesforce_id
    pair = f"{record_id} ↔ {other}" if other and other != record_id else record_id
    when = entry.at.astimezone().strftime("%H:%M:%S")
    what = f"{entry.status:<7} {entry.object_type:<7} {entry.connection_id:<11}"
    return short_ids(f"{when} {what} {entry.source} {pair}: {entry.reason}")


class DecisionFeed:
    """The sync log's new entries, each told once, oldest first.

    Why read the log rather than watch the worker: the log is what the worker records as its decisions
    (the same entries on-call reads), it holds every function's decisions however they were invoked,
    and reading it needs nothing from the functions. Each :meth:`poll` reads the newest ``window``
    entries of each status (the ``by_status`` index, newest first) and tells those it has not told;
    it remembers only the ids of that window, since older entries never come back in it. An entry is
    recognised by its id, not by a time watermark: a batch's entries carry the time it decided and are
    written at its end, so a slow batch's entries can land after a faster one's newer ones.
    """

    def __init__(self, log: SyncLog, tell: Callable[[str], None], *, window: int = 100) -> None:
        self.log = log
        self.tell = tell
        self.window = window
        self._told: dict[str, set[str]] = {status: set() for status in STATUSES}

    def poll(self) -> int:
        """Tell the entries that are new since the last poll; how many there were."""
        fresh: list[LogEntry] = []
        for status in STATUSES:
            entries = self.log.by_status(status, limit=self.window)
            new = [entry for entry in entries if entry.entry_id not in self._told[status]]
            if len(new) == self.window:
                self.tell(f"concord: more than {self.window} {status} decisions at once; the oldest are not shown")
            self._told[status] = {entry.entry_id for entry in entries}
            fresh += new
        for entry in sorted(fresh, key=lambda entry: (entry.at, entry.entry_id)):
            self.tell(decision_line(entry))
        return len(fresh)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bind", default="127.0.0.1", help="address the AWS half listens on (default 127.0.0.1)")
    args = parser.parse_args(argv)

    # The functions run in this process and print to its stdout, as in Lambda, where stdout is the
    # function's log stream: so file descriptor 1 becomes the log file, and this program speaks to a
    # copy of the terminal's descriptor. Descriptors, not ``sys.stdout``: Powertools' Logger keeps the
    # stream object it found when concord.observability was first imported, whenever that was.
    sys.stdout.flush()
    FUNCTION_LOG.parent.mkdir(parents=True, exist_ok=True)
    saved = os.dup(1)
    with FUNCTION_LOG.open("w") as function_log, os.fdopen(os.dup(saved), "w", buffering=1) as terminal:
        os.dup2(function_log.fileno(), 1)
        if isinstance(sys.stdout, io.TextIOWrapper):
            sys.stdout.reconfigure(line_buffering=True)  # EMF metrics are print()ed: a line at a time
        try:
            return _run(args.bind, terminal)
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


def _run(bind: str, terminal: TextIO) -> int:
    def say(text: str, *, error: bool = False) -> None:
        print(text, file=sys.stderr if error else terminal, flush=True)

    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        # Only a flag: an exception raised into the middle of a step could orphan a child process.
        say(f"\nconcord: {signal.Signals(signum).name} received, shutting down")
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    say(f"concord: the functions' JSON logs go to {FUNCTION_LOG}")
    started = time.monotonic()
    system = LocalSystem(
        bind=bind,
        env_vars_path=ENV_VARS_FILE,
        stop_requested=stop,
        on_step=lambda step: say(f"concord: {step}"),
    )
    try:
        with system:
            code = serve(system, stop, time.monotonic() - started, say)
    except StartInterrupted as interrupted:
        say(f"concord: {interrupted}; everything started so far is stopped")
        return 130
    finally:
        # This process made the bundle (the sandboxes' CA, made on first use) and is its only user.
        if system.ca_bundle is not None:
            Path(system.ca_bundle).unlink(missing_ok=True)
    if code == 0:
        say("concord: stopped cleanly")
    return code


def serve(system: LocalSystem, stop: threading.Event, took_s: float, say: Callable[..., None]) -> int:
    """Print where everything is, start the first sync, then tell each decision and function error
    until asked to stop."""
    stack = system.stack
    say(f"concord: up in {took_s:.1f}s")
    for name, url in system.endpoints().items():
        say(f"  {name:<48} {url}")
    say(f"  {'env-vars file for sam local invoke':<48} {system.env_vars_path}")
    say(f"  {'function logs (JSON lines)':<48} {FUNCTION_LOG}")
    say("  environment for functions, the CLI and boto3:")
    for key, value in sorted(stack.env.items()):
        if not key.startswith("AWS_SECRET") and key != "AWS_SESSION_TOKEN":
            say(f"    {key}={value}")
    # Channels first, so that pushes flow from the start (the schedule would create them a minute later).
    system.runner.invoke_scheduled("SubscriptionsFunction")
    notices = system.first_sync()
    say(f"concord: first sync: {len(notices)} catch-up notices queued, one per seeded connection and object")
    say(READY_LINE + " (Ctrl-C to stop); each line below is one decision of the sync worker")
    feed = DecisionFeed(system.sync_log(), say)
    reported = 0
    unreadable = False
    while not stop.wait(0.5):
        for error in system.runner.errors[reported:]:
            say(f"concord: function error: {error}", error=True)
        reported = len(system.runner.errors)
        for server in (stack.dynamodb, stack.moto):
            if server.process is not None and server.process.poll() is not None:
                say(f"concord: {server.name} exited unexpectedly; see {server.log}", error=True)
                return 1
        try:
            feed.poll()
            unreadable = False
        except PynamoDBException as exc:
            # Said once per outage; the entries stay in the log and are told when it answers again.
            if not unreadable:
                say(f"concord: cannot read the sync log ({type(exc).__name__}); retrying", error=True)
            unreadable = True
    return 0


if __name__ == "__main__":
    sys.exit(main())
