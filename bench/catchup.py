"""The catch-up's cost: an idle hour at 1, 10 and 100 connections, a repair of dropped pushes, a first sync
(bench ``catchup``).

The system is the one ``make run`` starts (``LocalSystem``), with the queue poller and schedules off and
the Salesforce sandbox's own pushes switched off; no push channel is ever created, so every change a
mailbox makes reaches Concord only through the catch-up (a push that was dropped). The bench plays both
the reconciler and the SQS event source:

* the reconciler: :class:`~concord.service.catchup.CatchUpSchedule` with the template's default policy
  (every connection caught up at least hourly) on the Connections table, its notices sent to the
  changes queue, as ``functions/reconciler`` does each run (every 15 minutes in AWS);
* the worker: the real ``SyncWorkerFunction`` handler, loaded and invoked in this process with real SQS
  records (receive up to 25 messages, invoke, delete what it did not hand back), until the queue is
  empty. Its catch-up service keeps the bench's clock, so "15 minutes later" is one call away; every
  API call is still a real HTTPS request to a sandbox.

Calls are counted where they are served: Salesforce's ``api_usage`` (REST calls, what the org's daily
limit counts; token requests are not), Graph and Google requests by route (a ``$batch`` is one; token
requests listed apart), as in ``bench.worker``.

Phases:

1. ``idle N`` for each N of ``--connections`` (1, 10, 100): live Graph connections are added up to N, each
   with a Salesforce user of its own and an empty "Salesforce Sync" folder (``conn-m365``, the seeded one,
   is the first; ``conn-google`` is suspended so that only the N count). Two runs, not counted, do their
   first syncs and then their daily drift audits (the audit's cost per connection is reported apart), then
   one catch-up of each new connection takes in what its first sync wrote into the mailbox (Graph's delta
   reports Concord's own writes; not idle work); then the idle hour: four runs 15 minutes apart, each
   drained. Salesforce calls must not grow with N; mailbox calls per connection are that hour's Graph calls
   ÷ N plus the channel renewals amortised per hour, computed from
   :class:`~concord.service.channels.ChannelPolicy` (Graph subscriptions of about 7 days renewed at half
   their lifetime, one per slot: contacts, events, inbox, sent items) rather than simulated over a week.
2. ``first sync``: a new Graph connection whose mailbox holds ``--contacts`` contacts in its folder and
   ``--events`` meetings it organises (no attendees), half of each already in the org (owned by the
   connection's user: contacts with the same email, Events with the same iCalendar UID in
   ``Concord_ICalUID__c``). Its first sync (``catch_up`` notices with ``resync: first_sync``) is drained
   through the worker: ``first_sync_s`` and ``first_sync_duplicates`` (Salesforce contacts sharing an
   email, mailbox contacts sharing an email, Salesforce Events and mailbox events sharing an iCalendar
   UID), and whether every record reached the other side.
3. ``repair``: ``--dropped`` of those contacts edited in Outlook (no push: dropped), then one catch-up of
   the connection (what the hourly schedule queues) drained until Salesforce holds every edit:
   ``repair_100_dropped_s`` and ``repair_100_dropped_calls`` (all systems; per system in the table).
   One catch-up beforehand (not counted) takes in the first sync's own writes to the mailbox.

Run: ``make bench B=catchup`` or ``python -m bench.catchup --connections 1,10,100 --contacts 1000
--events 500 --dropped 100`` (or ``BENCH_CATCHUP_CONNECTIONS``, ``_CONTACTS``, ``_EVENTS``, ``_DROPPED``).
Figure keys keep their names (``repair_100_dropped_s``…) whatever the sizes; ``dropped``, ``contacts`` and
``events`` say what was run. The worker's log goes to ``--log``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.report import emit
from bench.worker import Traffic, is_token
from concord.adapters.queue import ChangeQueue
from concord.adapters.stores import DynamoConnectionStore, DynamoDB, DynamoLinkStore
from concord.core import ConnectionOptions
from concord.ports import Connection
from concord.service.catchup import CatchUpPolicy, CatchUpSchedule
from concord.service.channels import ChannelPolicy
from local.aws.provision import REGION
from local.aws.stack import OFFLINE_ENV
from local.runner import receive_batch, sqs_record
from local.sandboxes.graph import SEED_TENANT
from local.system import GOOGLE_CONNECTION, M365_CONNECTION, SYNC_FOLDER, LocalSystem

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from concord.notices import ChangeNotice
    from local.runner import Function

ROOT = Path(__file__).resolve().parent.parent
BATCH_MESSAGES = 25  # template.yaml's WorkerBatchSize default
SETTLE_S = 120.0  # how long to wait for messages the worker handed back (retry backoff) before giving up
RUN_EVERY = timedelta(minutes=15)  # the reconciler's schedule (template.yaml)
RUNS_PER_HOUR = 4
FIRST_DOMAIN = "first.bench"


class SimClock:
    """The wall clock plus an offset the bench moves forward: the reconciler's and the catch-up's time."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, by: timedelta) -> None:
        self.offset += by


@dataclass(frozen=True)
class Calls:
    """Cumulative counts at one moment; a phase is the difference of two."""

    salesforce: int
    routes: dict[str, Counter[str]]

    def api(self, sandbox: str) -> int:
        return sum(n for route, n in self.routes[sandbox].items() if not is_token(route) and "$batch>" not in route)

    def tokens(self) -> int:
        return sum(n for routes in self.routes.values() for route, n in routes.items() if is_token(route))


@dataclass
class Phase:
    name: str
    wall_s: float
    before: Calls
    after: Calls
    connections: int = 0
    invocations: int = 0
    handed_back: int = 0
    note: str = ""

    def salesforce(self) -> int:
        return self.after.salesforce - self.before.salesforce

    def api(self, sandbox: str) -> int:
        return self.after.api(sandbox) - self.before.api(sandbox)

    def tokens(self) -> int:
        return self.after.tokens() - self.before.tokens()

    def total(self) -> int:
        return self.salesforce() + self.api("graph") + self.api("google")

    def routes(self, sandbox: str) -> Counter[str]:
        return self.after.routes[sandbox] - self.before.routes[sandbox]


@dataclass
class Harness:
    """The reconciler (a schedule on the bench's clock) and the SQS event source for the real worker."""

    system: LocalSystem
    traffic: Traffic
    log: Path
    clock: SimClock = field(default_factory=SimClock)
    invocations: int = 0
    handed_back: int = 0
    phases: list[Phase] = field(default_factory=list)

    def __post_init__(self) -> None:
        stack = self.system.stack
        self.sqs = stack.client("sqs")
        self.queue_url = stack.env["CHANGES_QUEUE_URL"]
        self.queue = ChangeQueue(self.queue_url, self.sqs)
        dynamodb = DynamoDB(stack.dynamodb.url, region=REGION)
        self.connections = DynamoConnectionStore(stack.env["CONNECTIONS_TABLE"], dynamodb=dynamodb)
        self.links = DynamoLinkStore(stack.env["LINKS_TABLE"], dynamodb=dynamodb)
        self.schedule = CatchUpSchedule(self.connections, CatchUpPolicy(), clock=self.clock)
        self.worker: Function = self.system.runner.functions["SyncWorkerFunction"]
        self.arn = next(str(event["Queue"]) for event in self.worker.events.values() if "Queue" in event)
        self.worker.load()
        assert self.worker.module is not None
        catch_up = self.worker.module.service.catch_up
        assert catch_up is not None, "the worker was built without its catch-up service"
        catch_up.clock = self.clock  # the rest of the worker keeps the wall clock

    def calls(self) -> Calls:
        return Calls(self.system.salesforce.api_usage, self.traffic.snapshot())

    def measure(self, name: str, work: Callable[[], object], connections: int = 0) -> Phase:
        before, invocations, handed_back = self.calls(), self.invocations, self.handed_back
        started = time.perf_counter()
        work()
        phase = Phase(name, time.perf_counter() - started, before, self.calls(), connections)
        phase.invocations, phase.handed_back = self.invocations - invocations, self.handed_back - handed_back
        self.phases.append(phase)
        print(f"  {name}: {phase.wall_s:.1f} s", file=sys.stderr, flush=True)
        return phase

    def reconcile(self) -> list[ChangeNotice]:
        """One reconciler run 15 minutes after the last, drained by the worker."""
        self.clock.advance(RUN_EVERY)
        notices = self.schedule.due()
        self.send(notices)
        return notices

    def send(self, notices: Sequence[ChangeNotice]) -> None:
        if notices:
            self.queue.send(list(notices))
        self.drain()

    def drain(self) -> None:
        idle_since = time.monotonic()
        while True:
            messages = receive_batch(self.sqs, self.queue_url, BATCH_MESSAGES)
            if messages:
                self._invoke(messages)
                idle_since = time.monotonic()
                continue
            if self._depth() == 0:
                return
            if time.monotonic() - idle_since > SETTLE_S:
                raise RuntimeError(f"messages still queued after {SETTLE_S:.0f} s idle; see the worker log")
            time.sleep(0.5)  # handed-back messages come back after their retry delay

    def _depth(self) -> int:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=names)["Attributes"]
        return sum(int(attributes[name]) for name in names)

    def _invoke(self, messages: list[dict[str, Any]]) -> None:
        answer = self.worker.invoke({"Records": [sqs_record(m, self.arn) for m in messages]}) or {}
        failed = {f["itemIdentifier"] for f in answer.get("batchItemFailures", [])}
        self.invocations += 1
        self.handed_back += len(failed)
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done[start : start + 10])
                ],
            )


# ------------------------------------------------------------------------------------------ connections


def new_graph_connection(system: LocalSystem, name: str) -> Connection:
    """A Salesforce user of its own and a Graph mailbox with an empty "Salesforce Sync" folder."""
    user_id = system.salesforce.insert(
        "User", Username=f"{name}@concord.example", LastName=name, Email=f"{name}@contoso.example", Alias=name[-8:]
    )
    upn = f"{name}@contoso.example"
    system.graph.add_user(SEED_TENANT, upn)
    folder = system.graph.add_contact_folder(upn, SYNC_FOLDER)
    return Connection(
        connection_id=f"conn-{name}",
        provider="graph",
        mailbox_user=upn,
        salesforce_user_id=user_id,
        options=ConnectionOptions(provider="graph", user_email=upn, contact_folder_id=folder),
    )


def live_count(harness: Harness) -> int:
    return len(harness.connections.list("active")) + len(harness.connections.list("degraded"))


# ------------------------------------------------------------------------------------------ the phases


@dataclass
class Idle:
    connections: int
    hour: Phase
    audit: Phase
    new: int


def idle_hours(harness: Harness, sizes: Sequence[int]) -> list[Idle]:
    results: list[Idle] = []
    made = previous = 0
    for size in sizes:
        for _ in range(size - live_count(harness)):  # conn-m365, the seeded one, is the first
            made += 1
            harness.connections.put(new_graph_connection(harness.system, f"idle{made:04d}"))
        new, previous = size - previous, size
        fresh = [c for c in harness.connections.list("active") if not c.health.get("first_sync_at")]
        harness.measure(f"first syncs ({new} new)", harness.reconcile, size)
        audit = harness.measure(f"audits ({new} new)", harness.reconcile, size)
        # The first catch-up after a first sync reads back what that sync wrote into the mailbox (Graph's
        # delta reports Concord's own writes): not idle work, so it happens before the hour.
        settle = [n for c in fresh for n in harness.schedule.requests(c, None, scheduled=True)]
        harness.measure(f"catch-up after first syncs ({new})", partial(harness.send, settle), size)
        hour = harness.measure(
            f"idle hour, {size} conn.", lambda: [harness.reconcile() for _ in range(RUNS_PER_HOUR)], size
        )
        results.append(Idle(size, hour, audit, new))
    return results


def _event_time(i: int) -> tuple[datetime, datetime]:
    """Distinct half-hour meetings on working days over the next months (inside the default window)."""
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=2 + i // 8)
    start = day + timedelta(hours=8 + i % 8, minutes=15)
    return start, start + timedelta(minutes=30)


@dataclass
class FirstSync:
    connection: Connection
    phase: Phase
    contacts: int
    events: int
    duplicates: Counter[str]
    synced_contacts: int
    synced_events: int
    mailbox_ids: list[str]


def first_sync(harness: Harness, contacts: int, events: int) -> FirstSync:
    system = harness.system
    connection = new_graph_connection(system, "first")
    harness.connections.put(connection)
    upn, owner = connection.mailbox_user, connection.salesforce_user_id
    folder = connection.options.contact_folder_id
    mailbox_ids = []
    for i in range(contacts):
        email = f"person{i}@{FIRST_DOMAIN}"
        made = system.graph.put_contact(
            upn,
            {"givenName": f"Pat{i}", "surname": f"First{i}", "emailAddresses": [{"address": email}]},
            folder_id=folder,
        )
        mailbox_ids.append(made["id"])
        if i % 2 == 0:
            system.salesforce.insert("Contact", FirstName=f"Pat{i}", LastName=f"First{i}", Email=email, OwnerId=owner)
    organizer = {"emailAddress": {"name": "First", "address": upn}}
    for i in range(events):
        start, end = _event_time(i)
        uid = f"first-{i}@{FIRST_DOMAIN}"
        system.graph.put_event(
            upn,
            {
                "subject": f"First meeting {i}",
                "iCalUId": uid,
                "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
                "end": {"dateTime": end.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
                "organizer": organizer,
            },
        )
        if i % 2 == 0:
            system.salesforce.insert(
                "Event",
                Subject=f"First meeting {i}",
                StartDateTime=start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                EndDateTime=end.strftime("%Y-%m-%dT%H:%M:%SZ"),
                Concord_ICalUID__c=uid,
                OwnerId=owner,
            )
    notices = harness.schedule.requests(connection, "first_sync", scheduled=False)
    phase = harness.measure("first sync", lambda: harness.send(notices), 1)

    sf_contacts = [
        r for r in system.salesforce.live_records("Contact") if str(r.get("Email") or "").endswith(f"@{FIRST_DOMAIN}")
    ]
    sf_events = [
        r
        for r in system.salesforce.live_records("Event")
        if str(r.get("Concord_ICalUID__c") or "").endswith(f"@{FIRST_DOMAIN}")
    ]
    mailbox = system.graph.mailbox(upn)
    mb_contacts = [
        str(address.get("address") or "").lower()
        for contact in mailbox.folder(str(folder)).items.values()
        for address in (contact.get("emailAddresses") or [])[:1]
    ]
    mb_events = [str(e.get("iCalUId") or "") for e in mailbox.calendar.items.values()]
    duplicates = Counter(
        {
            "salesforce contacts": _extra(str(r["Email"]).lower() for r in sf_contacts),
            "mailbox contacts": _extra(mb_contacts),
            "salesforce events": _extra(str(r["Concord_ICalUID__c"]) for r in sf_events),
            "mailbox events": _extra(u for u in mb_events if u),
        }
    )
    synced_contacts = len({str(r["Email"]).lower() for r in sf_contacts})
    synced_events = len({str(r["Concord_ICalUID__c"]) for r in sf_events})
    return FirstSync(connection, phase, contacts, events, duplicates, synced_contacts, synced_events, mailbox_ids)


def _extra(keys: Any) -> int:
    """Records beyond the first of each key: what a duplicate count is."""
    counts = Counter(keys)
    return sum(n - 1 for n in counts.values())


@dataclass
class Repair:
    phase: Phase
    dropped: int
    repaired: int
    settle: Phase


def repair(harness: Harness, first: FirstSync, dropped: int) -> Repair:
    system, connection = harness.system, first.connection
    # The first sync's own writes to the mailbox are changes the next catch-up reads: take them in first.
    settle = harness.measure(
        "catch-up after first sync", lambda: harness.send(harness.schedule.requests(connection, None, scheduled=True))
    )
    edited = first.mailbox_ids[:dropped]
    for contact_id in edited:  # no channel exists: the notification is dropped
        system.graph.edit(connection.mailbox_user, contact_id, {"jobTitle": "Repair edit"})
    emails = {f"person{i}@{FIRST_DOMAIN}" for i in range(len(edited))}

    def repaired() -> int:
        return sum(
            1
            for r in system.salesforce.live_records("Contact")
            if str(r.get("Email") or "").lower() in emails and r.get("Title") == "Repair edit"
        )

    def catch_up() -> None:
        harness.send(harness.schedule.requests(connection, None, scheduled=True))
        for _ in range(3):  # a change handed back for a retry is drained by send(); this is belt and braces
            if repaired() >= len(edited):
                return
            harness.drain()

    phase = harness.measure(f"repair {dropped} dropped", catch_up, 1)
    return Repair(phase, dropped, repaired(), settle)


# ------------------------------------------------------------------------------------------ the report


def renewals_per_hour() -> tuple[float, int, float]:
    """(renewals per connection per hour, Graph channel slots, hours between renewals), from the policy:
    one subscription per slot (``ChannelsService._slots``), renewed at ``renew_after`` of its lifetime."""
    policy = ChannelPolicy(webhook_base_url="https://concord.invalid")
    slots = 2 + len(policy.graph_mail_folders)  # contacts, events, and each mail folder
    every_h = policy.renew_after * policy.graph_lifetime.total_seconds() / 3600
    return slots / every_h, slots, every_h


def report(harness: Harness, idle: list[Idle], first: FirstSync, fixed: Repair) -> None:
    renewals, slots, every_h = renewals_per_hour()
    largest = idle[-1]
    mailbox_per_conn = largest.hour.api("graph") / largest.connections
    figures: dict[str, float] = {}
    for result in idle:
        figures[f"idle_salesforce_calls_per_hour_{result.connections}"] = result.hour.salesforce()
        figures[f"idle_graph_calls_per_hour_{result.connections}"] = result.hour.api("graph")
    audited = [r for r in idle if r.new]
    audit_new = sum(r.new for r in audited)
    audit_sf = sum(r.audit.salesforce() - r.hour.salesforce() / RUNS_PER_HOUR for r in audited)
    figures |= {
        "idle_mailbox_calls_per_hour_per_connection": round(mailbox_per_conn + renewals, 3),
        "idle_mailbox_catch_up_calls_per_hour_per_connection": round(mailbox_per_conn, 3),
        "channel_renewals_per_hour_per_connection": round(renewals, 4),
        "audit_salesforce_calls_per_connection": round(audit_sf / audit_new, 2) if audit_new else 0,
        "audit_graph_calls_per_connection": round(sum(r.audit.api("graph") for r in audited) / audit_new, 2)
        if audit_new
        else 0,
        "repair_100_dropped_s": round(fixed.phase.wall_s, 2),
        "repair_100_dropped_calls": fixed.phase.total(),
        "repair_100_dropped_salesforce_calls": fixed.phase.salesforce(),
        "repair_100_dropped_graph_calls": fixed.phase.api("graph"),
        "first_sync_s": round(first.phase.wall_s, 2),
        "first_sync_duplicates": sum(first.duplicates.values()),
        "first_sync_salesforce_calls": first.phase.salesforce(),
        "first_sync_graph_calls": first.phase.api("graph"),
        "first_sync_unsynced": (first.contacts - first.synced_contacts) + (first.events - first.synced_events),
        "dropped": fixed.dropped,
        "repair_unsynced": fixed.dropped - fixed.repaired,
        "contacts": first.contacts,
        "events": first.events,
        "worker_handed_back": harness.handed_back,
    }

    print("\ncatchup bench: per phase (calls served by the sandboxes; tokens apart)")
    header = ("phase", "conn.", "wall s", "invok", "SF", "Graph", "Google", "tokens", "back")
    print("{:<34}{:>6}{:>8}{:>7}{:>7}{:>7}{:>7}{:>7}{:>6}".format(*header))
    for p in harness.phases:
        print(
            f"{p.name:<34}{p.connections or '':>6}{p.wall_s:>8.1f}{p.invocations:>7}{p.salesforce():>7}"
            f"{p.api('graph'):>7}{p.api('google'):>7}{p.tokens():>7}{p.handed_back:>6}"
        )
    print("\nwhere the calls go (sandbox routes; $batch> lines are sub-requests of a $batch)")
    for p in [r.hour for r in idle] + [fixed.phase, first.phase]:
        print(f"  {p.name}:")
        for sandbox in ("salesforce", "graph", "google"):
            for route, n in sorted(p.routes(sandbox).items(), key=lambda kv: -kv[1]):
                print(f"    {sandbox:<10} {n:>6}  {route}")
    print(f"\nfirst sync duplicates: {dict(first.duplicates)}")

    rows: list[tuple[str, object, str]] = [
        (
            f"Salesforce calls, idle hour, {r.connections} connection(s)",
            r.hour.salesforce(),
            "must not grow with connections",
        )
        for r in idle
    ]
    rows += [
        (
            f"Graph calls per idle connection per hour ({largest.connections} conn.)",
            round(mailbox_per_conn, 3),
            "catch-up reads",
        ),
        (
            f"  + channel renewals per hour ({slots} subscriptions, each every {every_h:.1f} h)",
            round(renewals, 4),
            "computed from ChannelPolicy",
        ),
        ("mailbox calls per idle connection per hour", figures["idle_mailbox_calls_per_hour_per_connection"], "report"),
        (
            "daily audit: Salesforce calls per connection",
            figures["audit_salesforce_calls_per_connection"],
            "once a day; grows with connections",
        ),
        ("daily audit: Graph calls per connection", figures["audit_graph_calls_per_connection"], "once a day"),
        (f"repair {fixed.dropped} dropped Outlook edits, s", figures["repair_100_dropped_s"], "report"),
        (f"repair {fixed.dropped} dropped: API calls, all systems", fixed.phase.total(), "report"),
        ("  of which Salesforce", fixed.phase.salesforce(), ""),
        ("  of which Graph", fixed.phase.api("graph"), ""),
        (f"edits found in Salesforce after the repair (of {fixed.dropped})", fixed.repaired, "should be all"),
        (f"first sync, {first.contacts} contacts + {first.events} events, s", figures["first_sync_s"], "report"),
        ("first sync duplicates", figures["first_sync_duplicates"], "target 0"),
        ("first sync Salesforce calls", first.phase.salesforce(), "report"),
        ("first sync Graph calls", first.phase.api("graph"), "report"),
        ("first sync records missing on the other side", figures["first_sync_unsynced"], "should be 0"),
        ("messages the worker handed back (whole run)", harness.handed_back, "report"),
    ]
    emit("catchup", rows, figures)


def _sizes(text: str) -> list[int]:
    sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("connections: a comma-separated list of counts >= 1")
    return sizes


def main(argv: Sequence[str] | None = None) -> None:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=_sizes, default=_sizes(env("BENCH_CATCHUP_CONNECTIONS", "1,10,100")))
    parser.add_argument("--contacts", type=int, default=int(env("BENCH_CATCHUP_CONTACTS", "1000")))
    parser.add_argument("--events", type=int, default=int(env("BENCH_CATCHUP_EVENTS", "500")))
    parser.add_argument("--dropped", type=int, default=int(env("BENCH_CATCHUP_DROPPED", "100")))
    parser.add_argument(
        "--log", type=Path, default=Path(env("BENCH_CATCHUP_LOG", str(ROOT / ".local" / "bench-catchup.log")))
    )
    args = parser.parse_args(argv)
    if args.dropped > args.contacts:
        parser.error("--dropped cannot exceed --contacts: the dropped edits are made to first-synced contacts")
    args.log.parent.mkdir(parents=True, exist_ok=True)
    args.log.write_text("")
    # The local stack's own credentials and region, never a real account's (as tests/conftest.py does).
    os.environ.update(OFFLINE_ENV)
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        os.environ.pop(key, None)
    # The functions log and print their metrics to stdout, as in Lambda: into the log; the table and the
    # JSON line go to the stdout this process was started with.
    table = os.fdopen(os.dup(1), "w", buffering=1)
    sys.stdout.flush()
    os.dup2(os.open(args.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), 1)
    with LocalSystem(schedule_interval_s=3600, poll_queues=False) as system:
        # Every notice is one the bench queued: the Salesforce sandbox's pushes would add echoes.
        system.salesforce.cdc_sink = None
        system.salesforce.outbound = []
        traffic = Traffic({"salesforce": system.salesforce, "graph": system.graph, "google": system.google})
        harness = Harness(system, traffic, args.log)
        harness.connections.set_status(GOOGLE_CONNECTION, "suspended", "bench: Graph connections only")
        assert harness.connections.get(M365_CONNECTION) is not None
        idle = idle_hours(harness, args.connections)
        first = first_sync(harness, args.contacts, args.events)
        fixed = repair(harness, first, args.dropped)
        with redirect_stdout(table):
            report(harness, idle, first, fixed)


if __name__ == "__main__":
    main()
