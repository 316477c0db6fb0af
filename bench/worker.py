"""The sync worker's cost: API calls, DynamoDB requests, memory and time per change (bench ``worker``).

The system is the one ``make run`` starts (``LocalSystem``: DynamoDB Local, moto, the three sandboxes,
the two seeded connections), with the queue poller and schedules off. The bench plays the SQS event
source: it puts notices on the changes queue (10 notices a message, as the ingress functions pack
them), receives up to 25 messages (``WorkerBatchSize``'s default) with ReceiveMessage(10) calls,
invokes the worker with those real SQS records and deletes what the worker did not hand back.

The worker runs in a child process of its own (:mod:`bench.worker_process`), which imports only the
handler, as a Lambda process would: its peak RSS (``VmHWM`` of its own address space, read in the child
after every invocation; see :func:`bench.worker_process._maxrss_kb` for why not ``ru_maxrss``) is
``worker_peak_rss_mb``. The sandboxes run in this process and count the requests they
serve; DynamoDB requests are counted in the child at the connection the stores share.

Phases, run in this order (N = ``--changes``, M = ``--events``):

1. ``graph create``: N new contacts in the user's synced Outlook folder, one notice each (first syncs:
   Salesforce creates); ``graph edit``: those N edited (job title), one notice each; the key figures
   (``salesforce_calls_per_1000``, ``graph_calls_per_1000``, ``dynamodb_requests_per_change``,
   ``wall_s``) are this phase's.
2. ``salesforce edit``: the N linked Salesforce contacts edited (title), one notice each, synced to
   Outlook (``salesforce_calls_per_1000_reverse``). Both seeded connections belong to the one
   Salesforce user who owns the records, so these also reach the Google connection (first syncs there).
3. ``google create`` / ``google edit``: as 1, through the People API (``salesforce_calls_per_1000_google``,
   ``google_calls_per_1000``, both from ``google edit``).
4. ``graph events`` / ``salesforce events``: M meetings the user organises (no attendees) created in
   Outlook, then the M Salesforce events edited (location); ``event_salesforce_calls_per_200`` is the
   Salesforce calls of both, scaled to 200 each way.

Salesforce calls are what the org's API limit counts (the sandbox's ``api_usage``: REST calls, not
token requests); Graph and Google calls are API requests served (a ``$batch`` is one), token requests
listed apart. The Salesforce sandbox's own pushes (Outbound Messages, change events) are switched off
for the run so that every notice is one the bench sent: the echoes of the worker's own writes are the
end-to-end bench's business. ``attendee_mails`` counts, over the whole run from the seeded start,
Graph's ``attendee_mails`` and Google's ``invitations_sent``.

Run: ``make bench B=worker`` or ``python -m bench.worker --changes 1000 --events 200`` (or
``BENCH_WORKER_CHANGES`` / ``BENCH_WORKER_EVENTS``). The worker's own log goes to ``--log``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.report import emit
from concord.adapters.google import GoogleClient, GoogleEndpoints, ServiceAccount
from concord.adapters.queue import ChangeQueue
from concord.notices import ChangeNotice
from local.aws.stack import OFFLINE_ENV
from local.runner import receive_batch, sqs_record
from local.sandboxes import seed
from local.system import GOOGLE_CONNECTION, M365_CONNECTION, SYNC_FOLDER, LocalSystem

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from local.sandboxes.server import Request, Response, Sandbox

ROOT = Path(__file__).resolve().parent.parent
BATCH_MESSAGES = 25  # template.yaml's WorkerBatchSize default
SETTLE_S = 120.0  # how long to wait for messages the worker handed back (retry backoff) before giving up

# ------------------------------------------------------------------------------- what the sandboxes serve


_VERSION = re.compile(r"v\d+(\.\d+)?\Z")
_FROM = re.compile(r"\bFROM\s+(\w+)", re.IGNORECASE)


def _is_id(segment: str) -> bool:
    return (
        "@" in segment
        or (len(segment) >= 8 and any(c.isdigit() for c in segment))
        or bool(re.fullmatch(r"c\d+", segment))
    )


def route_of(method: str, path: str, query: str | None = None) -> str:
    """``GET /users/{id}/contacts``: the request with ids and API versions left out, a query's sObject kept."""
    parts = []
    for segment in path.split("/"):
        if not segment or _VERSION.match(segment) or segment in ("services", "data"):
            continue
        head, colon, tail = segment.partition(":")
        parts.append(("{id}" if _is_id(head) else head) + colon + tail)
    route = f"{method} /{'/'.join(parts)}"
    if query and parts and parts[-1] in ("query", "queryAll"):
        found = _FROM.search(re.sub(r"\([^()]*\)", "", query))  # the outer FROM, not a sub-query's
        route += f" FROM {found.group(1)}" if found else ""
    return route


def is_token(route: str) -> bool:
    return route.endswith("/token") or route.endswith("/certs")


class Traffic:
    """Requests each sandbox served, by route (observed at its dispatch; nothing about the answer changes).

    Graph's ``$batch`` is one request; its sub-requests are also listed, as ``$batch> GET /…``."""

    def __init__(self, sandboxes: dict[str, Sandbox]) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, Counter[str]] = {name: Counter() for name in sandboxes}
        self.subrequests: dict[str, Counter[str]] = {name: Counter() for name in sandboxes}
        for name, sandbox in sandboxes.items():
            sandbox.dispatch = self._counting(name, sandbox.dispatch)

    def _counting(self, name: str, dispatch: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def counted(request: Request) -> Response:
            route = route_of(request.method, request.path, request.arg("q"))
            inner: list[str] = []
            if request.path.endswith("/$batch") and request.body:
                body = json.loads(request.body)
                for sub in body.get("requests") or ():
                    path, _, query = str(sub.get("url", "")).partition("?")
                    inner.append(f"$batch> {route_of(str(sub.get('method', 'GET')), path, query)}")
            with self._lock:
                self.counts[name][route] += 1
                self.subrequests[name].update(inner)
            return dispatch(request)

        return counted

    def snapshot(self) -> dict[str, Counter[str]]:
        with self._lock:
            return {name: self.counts[name] + self.subrequests[name] for name in self.counts}


# ------------------------------------------------------------------------------------------ the worker


class WorkerProcess:
    """The worker in its own process (:mod:`bench.worker_process`), one JSON line each way per call."""

    def __init__(self, system: LocalSystem, log: Path) -> None:
        function = system.runner.functions["SyncWorkerFunction"]
        env = {
            **os.environ,
            **function.env,
            **system.stack.env,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "concord"), str(ROOT)]),
            "BENCH_WORKER_LOG": str(log),
            "BENCH_WORKER_TIMEOUT_S": str(function.timeout_s),
            "BENCH_WORKER_MEMORY_MB": str(function.memory_mb),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.worker_process"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.last: dict[str, Any] = self.call({"stats": True})

    def call(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the worker process ended (exit code {self.process.wait()}); see its log")
        self.last = json.loads(line)
        return self.last

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


@dataclass
class Counts:
    """Cumulative counters at one moment; phases are differences of two."""

    salesforce_api: int
    routes: dict[str, Counter[str]]
    dynamodb: int
    dynamodb_operations: Counter[str]
    worker_calls: Counter[str]
    invocations: int
    messages: int
    handed_back: int

    def api(self, sandbox: str) -> int:
        return sum(n for route, n in self.routes[sandbox].items() if not is_token(route) and "$batch>" not in route)

    def tokens(self, sandbox: str) -> int:
        return sum(n for route, n in self.routes[sandbox].items() if is_token(route))


@dataclass
class Phase:
    name: str
    changes: int
    wall_s: float
    before: Counts
    after: Counts
    verified: int
    left_in_queue: int = 0
    dead_letters: int = 0

    def salesforce(self) -> int:
        return self.after.salesforce_api - self.before.salesforce_api

    def api(self, sandbox: str) -> int:
        return self.after.api(sandbox) - self.before.api(sandbox)

    def tokens(self) -> int:
        return sum(self.after.tokens(s) - self.before.tokens(s) for s in self.after.routes)

    def dynamodb(self) -> int:
        return self.after.dynamodb - self.before.dynamodb

    def routes(self, sandbox: str) -> Counter[str]:
        return self.after.routes[sandbox] - self.before.routes[sandbox]

    def dynamodb_operations(self) -> Counter[str]:
        return self.after.dynamodb_operations - self.before.dynamodb_operations

    def per(self, value: float, scale: int) -> float:
        return round(value * scale / self.changes, 2)


@dataclass
class Bench:
    system: LocalSystem
    worker: WorkerProcess
    traffic: Traffic
    invocations: int = 0
    messages: int = 0
    handed_back: int = 0
    phases: list[Phase] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sqs = self.system.stack.client("sqs")
        self.queue_url = self.system.stack.env["CHANGES_QUEUE_URL"]
        self.dlq_url = self.system.stack.env["CHANGES_DLQ_URL"]
        function = self.system.runner.functions["SyncWorkerFunction"]
        self.arn = next(str(event["Queue"]) for event in function.events.values() if "Queue" in event)
        self.queue = ChangeQueue(self.queue_url, self.sqs)

    def counts(self) -> Counts:
        stats = self.worker.last
        return Counts(
            salesforce_api=self.system.salesforce.api_usage,
            routes=self.traffic.snapshot(),
            dynamodb=int(stats["dynamodb_requests"]),
            dynamodb_operations=Counter(stats["dynamodb_operations"]),
            worker_calls=Counter(stats["worker_calls"]),
            invocations=self.invocations,
            messages=self.messages,
            handed_back=self.handed_back,
        )

    def run(self, name: str, notices: Sequence[ChangeNotice], verify: Callable[[], int]) -> Phase:
        dead_before = self._depth(self.dlq_url)
        before = self.counts()
        started = time.perf_counter()
        self.queue.send(notices)
        left = self._drain()
        wall = time.perf_counter() - started
        phase = Phase(name, len(notices), wall, before, self.counts(), verify(), left)
        phase.dead_letters = self._depth(self.dlq_url) - dead_before
        self.phases.append(phase)
        print(f"  {name}: {len(notices)} notices in {wall:.1f} s", file=sys.stderr, flush=True)
        return phase

    def _depth(self, url: str) -> int:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        return sum(int(attributes[name]) for name in names)

    def _drain(self) -> int:
        """Invoke the worker until the queue is empty; returns what is still queued after ``SETTLE_S`` idle."""
        idle_since = time.monotonic()
        while True:
            messages = receive_batch(self.sqs, self.queue_url, BATCH_MESSAGES)
            if messages:
                self._invoke(messages)
                idle_since = time.monotonic()
                continue
            left = self._depth(self.queue_url)
            if left == 0 or time.monotonic() - idle_since > SETTLE_S:
                return left
            time.sleep(0.5)  # handed-back messages come back after their retry delay

    def _invoke(self, messages: list[dict[str, Any]]) -> None:
        answer = self.worker.call({"event": {"Records": [sqs_record(m, self.arn) for m in messages]}})
        failed = {f["itemIdentifier"] for f in (answer["result"] or {}).get("batchItemFailures", [])}
        self.invocations += 1
        self.messages += len(messages)
        self.handed_back += len(failed)
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done[start : start + 10])
                ],
            )


# ------------------------------------------------------------------------------------------ the changes


def notice(source: str, record_id: str, object_type: str = "contact") -> ChangeNotice:
    connection = {"graph": M365_CONNECTION, "google": GOOGLE_CONNECTION}.get(source)
    return ChangeNotice(
        source=source,
        connection_id=connection,
        object_type=object_type,
        record_id=record_id,
        provider_event_id=f"bench:{record_id}:{time.monotonic_ns()}",
    )


def google_client(system: LocalSystem) -> GoogleClient:
    """The user's own People API client, as a person editing their Google contacts would use."""
    return GoogleClient(
        ServiceAccount.from_info(system.google.service_account_info()),
        endpoints=GoogleEndpoints.for_base(system.google.url),
        verify=system.ca_bundle or True,
    )


def salesforce_by_email(system: LocalSystem, domain: str) -> dict[str, dict[str, Any]]:
    return {
        str(r["Email"]).lower(): r
        for r in system.salesforce.live_records("Contact")
        if str(r.get("Email") or "").lower().endswith(domain)
    }


def run_bench(system: LocalSystem, worker: WorkerProcess, traffic: Traffic, changes: int, events: int) -> Bench:
    bench = Bench(system, worker, traffic)
    graph, salesforce, user = system.graph, system.salesforce, seed.M365_USER
    mailbox = graph.mailbox(user)
    folder = next(f.id for f in mailbox.folders.values() if f.display_name == SYNC_FOLDER)

    # 1. Outlook → Salesforce
    outlook = [
        graph.put_contact(
            user,
            {"givenName": f"Ada{i}", "surname": f"Outlook{i}", "emailAddresses": [{"address": f"ada{i}@graph.bench"}]},
            folder_id=folder,
        )["id"]
        for i in range(changes)
    ]
    bench.run(
        "graph create", [notice("graph", i) for i in outlook], lambda: len(salesforce_by_email(system, "@graph.bench"))
    )
    for contact_id in outlook:
        graph.edit(user, contact_id, {"jobTitle": "Outlook edit"})
    bench.run(
        "graph edit",
        [notice("graph", i) for i in outlook],
        lambda: sum(
            1 for r in salesforce_by_email(system, "@graph.bench").values() if r.get("Title") == "Outlook edit"
        ),
    )

    # 2. Salesforce → Outlook
    linked = [r["Id"] for r in salesforce_by_email(system, "@graph.bench").values()]
    for record_id in linked:
        salesforce.change(record_id, Title="Salesforce edit")
    bench.run(
        "salesforce edit",
        [notice("salesforce", i) for i in linked],
        lambda: sum(1 for i in outlook if mailbox.find_contact(i)[1].get("jobTitle") == "Salesforce edit"),
    )

    # 3. Google → Salesforce
    people = google_client(system)
    guser = seed.GOOGLE_USER
    with ThreadPoolExecutor(8) as pool:
        made = list(
            pool.map(
                lambda i: people.create_contact(
                    guser,
                    {
                        "names": [{"givenName": f"Bea{i}", "familyName": f"Google{i}"}],
                        "emailAddresses": [{"value": f"bea{i}@google.bench"}],
                    },
                )["resourceName"],
                range(changes),
            )
        )
    bench.run(
        "google create", [notice("google", n) for n in made], lambda: len(salesforce_by_email(system, "@google.bench"))
    )

    def edit_person(name: str) -> None:
        person = people.get_contact(guser, name)
        people.update_contact(guser, name, {**person, "organizations": [{"title": "Google edit"}]}, ["organizations"])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(edit_person, made))
    bench.run(
        "google edit",
        [notice("google", n) for n in made],
        lambda: sum(
            1 for r in salesforce_by_email(system, "@google.bench").values() if r.get("Title") == "Google edit"
        ),
    )

    # 4. Events both ways: meetings the user organises, no attendees
    meetings = [
        graph.put_event(
            user,
            {
                "subject": f"Bench meeting {i}",
                "start": {"dateTime": f"2027-01-{1 + i % 28:02d}T{8 + i % 10:02d}:00:00", "timeZone": "UTC"},
                "end": {"dateTime": f"2027-01-{1 + i % 28:02d}T{8 + i % 10:02d}:30:00", "timeZone": "UTC"},
            },
        )["id"]
        for i in range(events)
    ]

    def bench_events() -> list[dict[str, Any]]:
        return [e for e in salesforce.live_records("Event") if str(e.get("Subject") or "").startswith("Bench meeting ")]

    bench.run("graph events", [notice("graph", i, "event") for i in meetings], lambda: len(bench_events()))
    sf_events = [e["Id"] for e in bench_events()]
    for event_id in sf_events:
        salesforce.change(event_id, Location="Bench room")
    bench.run(
        "salesforce events",
        [notice("salesforce", i, "event") for i in sf_events],
        lambda: sum(
            1 for i in meetings if (mailbox.calendar.items[i].get("location") or {}).get("displayName") == "Bench room"
        ),
    )
    return bench


# ------------------------------------------------------------------------------------------ the report


def report(bench: Bench, system: LocalSystem, changes: int, events: int) -> None:
    phase = {p.name: p for p in bench.phases}
    edit, reverse, gedit = phase["graph edit"], phase["salesforce edit"], phase["google edit"]
    gev, sev = phase["graph events"], phase["salesforce events"]
    stats = bench.worker.last
    attendee_mails = len(system.graph.attendee_mails) + len(system.google.invitations_sent)
    unsynced = sum(p.changes - p.verified for p in bench.phases)
    figures: dict[str, float] = {
        "salesforce_calls_per_1000": edit.per(edit.salesforce(), 1000),
        "salesforce_calls_per_1000_reverse": reverse.per(reverse.salesforce(), 1000),
        "salesforce_calls_per_1000_google": gedit.per(gedit.salesforce(), 1000),
        "graph_calls_per_1000": edit.per(edit.api("graph"), 1000),
        "graph_calls_per_1000_reverse": reverse.per(reverse.api("graph"), 1000),
        "google_calls_per_1000": gedit.per(gedit.api("google"), 1000),
        "event_salesforce_calls_per_200": round((gev.salesforce() + sev.salesforce()) * 200 / events, 2),
        "dynamodb_requests_per_change": round(edit.dynamodb() / edit.changes, 3),
        "worker_peak_rss_mb": round(stats["maxrss_kb"] / 1024, 1),
        "wall_s": round(edit.wall_s, 2),
        "attendee_mails": attendee_mails,
        "salesforce_calls_per_1000_first_sync": phase["graph create"].per(phase["graph create"].salesforce(), 1000),
        "dynamodb_requests_per_change_first_sync": round(phase["graph create"].dynamodb() / changes, 3),
        "worker_rss_after_cold_start_mb": round(stats["loaded_kb"] / 1024, 1),
        "worker_rss_bare_interpreter_mb": round(stats["started_kb"] / 1024, 1),
        "worker_cold_start_s": round(stats["cold_start_s"], 2),
        "changes": changes,
        "events": events,
        "unsynced": unsynced,
    }

    print(f"\nworker bench: {changes} contact changes, {events} events each way; per phase")
    header = (
        "phase",
        "notices",
        "msgs",
        "invok",
        "wall s",
        "SF",
        "Graph",
        "Google",
        "tokens",
        "DDB",
        "DDB/ch",
        "back",
        "DLQ",
        "synced",
    )
    print("{:<18}{:>8}{:>6}{:>6}{:>8}{:>7}{:>7}{:>7}{:>7}{:>8}{:>7}{:>6}{:>5}{:>11}".format(*header))
    for p in bench.phases:
        print(
            f"{p.name:<18}{p.changes:>8}{p.after.messages - p.before.messages:>6}"
            f"{p.after.invocations - p.before.invocations:>6}{p.wall_s:>8.1f}{p.salesforce():>7}{p.api('graph'):>7}"
            f"{p.api('google'):>7}{p.tokens():>7}{p.dynamodb():>8}{p.dynamodb() / p.changes:>7.2f}"
            f"{p.after.handed_back - p.before.handed_back:>6}{p.dead_letters:>5}{f'{p.verified}/{p.changes}':>11}"
            + (f"  ({p.left_in_queue} left in queue)" if p.left_in_queue else "")
        )
    print("\nwhere the calls go, per phase (sandbox routes; $batch> lines are sub-requests of a $batch)")
    for p in bench.phases:
        print(f"  {p.name}:")
        for sandbox in ("salesforce", "graph", "google"):
            for route, n in sorted(p.routes(sandbox).items(), key=lambda kv: -kv[1]):
                print(f"    {sandbox:<10} {n:>6}  {route}")
        for operation, n in sorted(p.dynamodb_operations().items(), key=lambda kv: -kv[1]):
            print(f"    {'dynamodb':<10} {n:>6}  {operation}")

    rows: list[tuple[str, object, str]] = [
        ("Salesforce calls per 1,000 Outlook contact edits", figures["salesforce_calls_per_1000"], "target <= 25"),
        (
            "Salesforce calls per 1,000 Salesforce edits (to Outlook)",
            figures["salesforce_calls_per_1000_reverse"],
            "target <= 25",
        ),
        (
            "Salesforce calls per 1,000 Google contact edits",
            figures["salesforce_calls_per_1000_google"],
            "target <= 25",
        ),
        (
            "Salesforce calls per 1,000 Outlook contacts, first sync",
            figures["salesforce_calls_per_1000_first_sync"],
            "report",
        ),
        ("Graph calls per 1,000 Outlook edits", figures["graph_calls_per_1000"], "report"),
        (
            "Graph calls per 1,000 Salesforce edits",
            figures["graph_calls_per_1000_reverse"],
            "report",
        ),
        ("Google calls per 1,000 Google edits", figures["google_calls_per_1000"], "report"),
        ("Salesforce calls, 200 events each way", figures["event_salesforce_calls_per_200"], "report"),
        ("DynamoDB requests per Outlook edit", figures["dynamodb_requests_per_change"], "target <= 3"),
        (
            "DynamoDB requests per Outlook contact, first sync",
            figures["dynamodb_requests_per_change_first_sync"],
            "report",
        ),
        ("worker peak RSS, MB (its own process, VmHWM)", figures["worker_peak_rss_mb"], "target <= 128"),
        ("worker RSS after cold start, MB", figures["worker_rss_after_cold_start_mb"], "report"),
        ("  of which the bare interpreter, MB", figures["worker_rss_bare_interpreter_mb"], "report"),
        ("wall s, Outlook edits (one worker, in series)", figures["wall_s"], "report"),
        ("attendee mails (Graph + Google), whole run", attendee_mails, "target 0"),
        ("changes not found synced after the run", unsynced, "should be 0"),
    ]
    emit("worker", rows, figures)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=int(os.environ.get("BENCH_WORKER_CHANGES", "1000")))
    parser.add_argument("--events", type=int, default=int(os.environ.get("BENCH_WORKER_EVENTS", "200")))
    parser.add_argument(
        "--log", type=Path, default=Path(os.environ.get("BENCH_WORKER_LOG", ROOT / ".local" / "bench-worker.log"))
    )
    args = parser.parse_args(argv)
    args.log.parent.mkdir(parents=True, exist_ok=True)
    args.log.write_text("")
    # The local stack's own credentials and region, never a real account's (as tests/conftest.py does).
    os.environ.update(OFFLINE_ENV)
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        os.environ.pop(key, None)
    with LocalSystem(schedule_interval_s=3600, poll_queues=False) as system:
        # Every notice is one the bench sends: the sandbox's own pushes would add echoes of the worker's writes.
        system.salesforce.cdc_sink = None
        system.salesforce.outbound = []
        traffic = Traffic({"salesforce": system.salesforce, "graph": system.graph, "google": system.google})
        worker = WorkerProcess(system, args.log)
        try:
            bench = run_bench(system, worker, traffic, args.changes, args.events)
            report(bench, system, args.changes, args.events)
        finally:
            worker.close()


if __name__ == "__main__":
    main()
