"""Webhook ingress figures (bench `ingress`): cold start ratio and warm latency of the 100-item routes.

Cold start (``cold_start_ratio``)
    For each webhook function, a fresh interpreter that imports the handler module ``app`` from the
    *built artifact* (``.aws-sam/build/<Function>``, then ``.aws-sam/build/ConcordLayer/python``, in
    Lambda's order: ``/var/task`` before ``/opt/python``), builds its settings and app, and handles its
    first ``events/`` request through ``lambda_handler`` against the local stack, timed from spawn to
    exit; divided by a fresh interpreter that only runs ``import boto3; boto3.client("sqs")`` with the
    same ``sys.path`` (the layer's boto3), the same flags (``-I -S -B``) and the same bytecode state.
    Runs are interleaved (baseline, then each function, repeated) and each figure is a median.

    Two bytecode states are measured, from copies of the artifact:

    * ``source`` (the key): no ``.pyc`` anywhere in the artifact, and ``-B`` keeps it so. This is what
      Lambda does with ``sam build`` output: the package has no ``__pycache__`` and ``/var/task`` and
      ``/opt`` are read-only, so every cold start compiles every module it imports;
    * ``compiled``: the artifact byte-compiled first (``compileall``), as if ``.pyc`` files were shipped.

    ``cold_parts`` splits a cold start into what each part adds, measured in one fresh process that
    loads the parts in the order the Graph function does (median of the runs): Concord's own code is
    ``settings``, ``dynamodb_client`` and ``concord_ingress``; the rest is what issue 5 requires
    (pydantic for the notice model, Powertools' logger/metrics, event handler and idempotency).
    ``cold_start_floor_ratio`` is (baseline process + the required parts) / baseline process: the
    lowest ratio that stack allows, before any of Concord's own code or the first event.

    Tracing is off in these processes, as everywhere outside Lambda (Powertools' rule); with Active
    tracing in Lambda the X-Ray SDK is imported at the first invocation: ``xray_import_ms`` says what
    that adds.

Warm latency (``graph_batch100_*``, ``outbound100_*``)
    HTTP through the local runner (API Gateway emulation: the proxy event, the handler from
    ``functions/<name>/app.py``, the answer), one keep-alive connection, a Graph POST of 100
    notifications and an Outbound Message of 100 notifications alternately, each with fresh ids (never a
    replay), the subscription lookup and idempotency record in DynamoDB Local and the SendMessageBatch
    calls to moto's SQS included. Warm-up requests first; the changes queue is emptied every ten rounds
    (outside the timing) so moto's queue depth stays small. A delivery of 100 notifications is one
    SendMessageBatch (10 messages of 10 notices, ``concord.notices.NOTICES_PER_MESSAGE``);
    ``moto_send100_*`` is the stand-in's own share: that one call of the same size, nothing else.

Run: ``.venv/bin/python -m bench.ingress [--build-dir DIR] [--cold-runs N] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.report import emit, percentile
from local.aws.stack import OFFLINE_ENV, LocalStack

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / ".aws-sam" / "build"

# function -> (logical id in template.yaml, its first event, the POWERTOOLS_SERVICE_NAME the template sets)
FUNCTIONS = {
    "salesforce_webhook": ("SalesforceWebhookFunction", "salesforce_webhook/outbound_message"),
    "salesforce_events": ("SalesforceEventsFunction", "salesforce_events/contact_change_event"),
    "graph_webhook": ("GraphWebhookFunction", "graph_webhook/notifications"),
    "google_webhook": ("GoogleWebhookFunction", "google_webhook/calendar_notification"),
}

COLD = """
import json, sys
sys.path[:0] = {paths!r}
from app import lambda_handler

class Context:
    function_name = {name!r}
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:" + function_name
    aws_request_id = "00000000-0000-4000-8000-000000000001"
    def get_remaining_time_in_millis(self):
        return 10_000

with open({event!r}) as f:
    event = json.load(f)
answer = lambda_handler(event, Context())
status = answer.get("statusCode")
assert status is not None and status < 300, answer
"""
BASELINE = """
import sys
sys.path[:0] = {paths!r}
import boto3
boto3.client("sqs")
"""
# Each part of the Graph function's cold start, in the order it loads them; required ones marked.
PARTS = """
import json, sys, time
sys.path[:0] = {paths!r}
parts = [
    ("baseline", "import boto3; boto3.client('sqs')"),
    ("pydantic", "import pydantic"),
    ("notice_model", "from concord.notices import ChangeNotice"),
    ("settings", "from concord.settings import WebhookSettings; WebhookSettings.from_env()"),
    ("powertools_logger_metrics", "import concord.observability"),
    ("powertools_event_handler", "from aws_lambda_powertools.event_handler import APIGatewayRestResolver"),
    ("powertools_idempotency", "import aws_lambda_powertools.utilities.idempotency"),
    ("dynamodb_client", "boto3.client('dynamodb')"),
    ("concord_ingress", "import app"),
]
scope = {{}}
took = {{}}
for name, code in parts:
    start = time.perf_counter()
    exec(code, scope)
    took[name] = (time.perf_counter() - start) * 1000
print(json.dumps(took))
"""
REQUIRED_PARTS = (
    "pydantic",
    "notice_model",
    "powertools_logger_metrics",
    "powertools_event_handler",
    "powertools_idempotency",
)
XRAY = """
import sys, time
sys.path[:0] = {paths!r}
start = time.perf_counter()
import aws_xray_sdk.core
print((time.perf_counter() - start) * 1000)
"""


def _env(stack: LocalStack, service: str = "bench") -> dict[str, str]:
    from tests.unit.ingress.helpers import AUDIENCE, ORG_ID, PUSH_ACCOUNT

    return {
        "PATH": os.environ.get("PATH", ""),
        **OFFLINE_ENV,
        **stack.env,
        "POWERTOOLS_SERVICE_NAME": service,
        "POWERTOOLS_METRICS_NAMESPACE": "Concord",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "SALESFORCE_ORG_ID": ORG_ID,
        "GOOGLE_PUSH_AUDIENCE": AUDIENCE,
        "GOOGLE_PUSH_SERVICE_ACCOUNT": PUSH_ACCOUNT,
    }


def _process_ms(code: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-I", "-S", "-B", "-c", code], env=env, capture_output=True, check=False)
    elapsed = (time.perf_counter() - start) * 1000
    if done.returncode:
        raise RuntimeError(f"cold start process failed:\n{done.stderr.decode(errors='replace')[-3000:]}")
    return elapsed


def _stage(build: Path, into: Path, *, compiled: bool) -> Path:
    """A copy of the webhook functions and the layer, without any bytecode (or fully compiled)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for logical_id, _ in FUNCTIONS.values():
        shutil.copytree(build / logical_id, into / logical_id, ignore=ignore)
    shutil.copytree(build / "ConcordLayer", into / "ConcordLayer", ignore=ignore)
    if compiled:
        compileall.compile_dir(into, quiet=2, workers=1, invalidation_mode=None)
    return into


def cold_starts(stack: LocalStack, build: Path, runs: int) -> dict[str, dict[str, float]]:
    """``{mode: {"baseline_ms", "<function>_ms", "<function>" (ratio)}}`` for mode ``source`` and ``compiled``."""
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="concord-cold-") as tmp:
        for mode in ("source", "compiled"):
            tree = _stage(build, Path(tmp) / mode, compiled=mode == "compiled")
            layer = str(tree / "ConcordLayer" / "python")
            samples: dict[str, list[float]] = {"baseline": [], **{name: [] for name in FUNCTIONS}}
            for run in range(runs + 1):  # the first round warms the OS file cache and is not counted
                baseline = _process_ms(BASELINE.format(paths=[layer]), _env(stack))
                if run:
                    samples["baseline"].append(baseline)
                for name, (logical_id, event) in FUNCTIONS.items():
                    stack.reset()
                    _seed(stack)
                    code = COLD.format(
                        paths=[str(tree / logical_id), layer],
                        name=logical_id,
                        event=str(ROOT / "events" / f"{event}.json"),
                    )
                    elapsed = _process_ms(code, _env(stack, name))
                    if run:
                        samples[name].append(elapsed)
            baseline_ms = statistics.median(samples["baseline"])
            figures = {"baseline_ms": baseline_ms}
            parts = _parts(stack, tree, runs)
            figures.update({f"part_{name}_ms": ms for name, ms in parts.items()})
            # Over the same denominator as the functions' ratios (the baseline *process*), not the
            # in-process baseline part, which leaves out the interpreter's own start.
            figures["floor"] = (baseline_ms + sum(parts[name] for name in REQUIRED_PARTS)) / baseline_ms
            for name in FUNCTIONS:
                figures[f"{name}_ms"] = statistics.median(samples[name])
                figures[name] = figures[f"{name}_ms"] / baseline_ms
            if mode == "compiled":
                figures["xray_import_ms"] = statistics.median(
                    float(
                        subprocess.run(
                            [sys.executable, "-I", "-S", "-B", "-c", XRAY.format(paths=[layer])],
                            capture_output=True,
                            check=True,
                            env=_env(stack),
                        ).stdout
                    )
                    for _ in range(3)
                )
            results[mode] = figures
    return results


def _parts(stack: LocalStack, tree: Path, runs: int) -> dict[str, float]:
    """Median milliseconds each part adds to the Graph function's cold start (see ``PARTS``)."""
    logical_id = FUNCTIONS["graph_webhook"][0]
    code = PARTS.format(paths=[str(tree / logical_id), str(tree / "ConcordLayer" / "python")])
    samples: list[dict[str, float]] = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-B", "-c", code],
            env=_env(stack, "graph_webhook"),
            capture_output=True,
            check=True,
        )
        samples.append(json.loads(done.stdout))
    return {name: statistics.median(sample[name] for sample in samples) for name in samples[0]}


def _seed(stack: LocalStack) -> None:
    from tests.unit.ingress.helpers import channel_items

    dynamodb = stack.client("dynamodb")
    for item in channel_items():
        dynamodb.put_item(TableName=stack.env["SUBSCRIPTIONS_TABLE"], Item=item)


def moto_floor(stack: LocalStack, rounds: int = 100) -> list[float]:
    """Milliseconds for what 100 notices cost moto alone: one SendMessageBatch of 10 messages of 10."""
    sqs = stack.client("sqs")
    queue_url = stack.env["CHANGES_QUEUE_URL"]
    entries = [{"Id": str(i), "MessageBody": "x" * 3500} for i in range(10)]  # ~350 bytes a notice
    samples = []
    for round_ in range(rounds + 5):
        start = time.perf_counter()
        sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        if round_ >= 5:
            samples.append((time.perf_counter() - start) * 1000)
        if round_ % 10 == 9:
            _empty_queue(sqs, queue_url)
    return samples


def warm(stack: LocalStack, rounds: int, warmup: int = 20) -> dict[str, list[float]]:
    """Milliseconds per request through the local runner, ``rounds`` of each route after ``warmup``."""
    from tests.unit.ingress.helpers import AUDIENCE, ORG_ID, PUSH_ACCOUNT, graph_batch, outbound_message

    from local.runner import LocalRunner

    stack.reset()
    _seed(stack)
    overrides = {
        "SALESFORCE_ORG_ID": ORG_ID,
        "GOOGLE_PUSH_AUDIENCE": AUDIENCE,
        "GOOGLE_PUSH_SERVICE_ACCOUNT": PUSH_ACCOUNT,
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    sqs = stack.client("sqs")
    queue_url = stack.env["CHANGES_QUEUE_URL"]
    samples: dict[str, list[float]] = {"graph": [], "outbound": []}
    # The handlers print their metrics (EMF) to stdout, as in Lambda; keep them out of the report.
    with (
        open(os.devnull, "w") as quiet,
        contextlib.redirect_stdout(quiet),
        LocalRunner(stack, overrides=overrides, poll_queues=False, schedule_interval_s=86_400) as runner,
    ):
        address = urlsplit(runner.url)
        connection = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=30)

        def post(path: str, body: str, content_type: str) -> float:
            data = body.encode()
            start = time.perf_counter()
            connection.request("POST", path, body=data, headers={"Content-Type": content_type})
            answer = connection.getresponse()
            answer.read()
            elapsed = (time.perf_counter() - start) * 1000
            if answer.status >= 300:
                raise RuntimeError(f"{path} answered {answer.status}")
            return elapsed

        for round_ in range(warmup + rounds):
            graph_ms = post(
                "/graph/notifications",
                graph_batch(100).replace("AAMkContact", f"AAMk{round_:05d}C"),
                "application/json; charset=utf-8",
            )
            outbound_ms = post(
                "/salesforce/outbound", outbound_message(100, start=1 + round_ * 100), "text/xml; charset=utf-8"
            )
            if round_ >= warmup:
                samples["graph"].append(graph_ms)
                samples["outbound"].append(outbound_ms)
            if round_ % 10 == 9:
                _empty_queue(sqs, queue_url)
        connection.close()
        if runner.errors:
            raise RuntimeError(f"handler errors: {runner.errors}")
    return samples


def _empty_queue(sqs: Any, queue_url: str) -> None:
    """Delete and recreate the queue (same name, so the same URL): PurgeQueue is allowed once a minute."""
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    keep = {k: v for k, v in attributes.items() if k in _SETTABLE}
    sqs.delete_queue(QueueUrl=queue_url)
    sqs.create_queue(QueueName=queue_url.rsplit("/", 1)[-1], Attributes=keep)


_SETTABLE = frozenset(
    {
        "DelaySeconds",
        "MaximumMessageSize",
        "MessageRetentionPeriod",
        "ReceiveMessageWaitTimeSeconds",
        "RedrivePolicy",
        "VisibilityTimeout",
    }
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build-dir", type=Path, default=BUILD, help="the `sam build` output to measure")
    parser.add_argument("--cold-runs", type=int, default=7, help="cold starts per function and mode")
    parser.add_argument("--rounds", type=int, default=250, help="warm requests per route")
    args = parser.parse_args(argv)
    if not (args.build_dir / "ConcordLayer").is_dir():
        raise SystemExit(f"no built artifact under {args.build_dir}: run `make sam-build` first")
    for path in (str(ROOT), str(ROOT / "layers" / "concord")):
        if path not in sys.path:
            sys.path.insert(0, path)

    with LocalStack() as stack:
        cold = cold_starts(stack, args.build_dir, args.cold_runs)
        samples = warm(stack, args.rounds)
        floor = moto_floor(stack)
    source, compiled = cold["source"], cold["compiled"]
    figures = {
        "cold_start_ratio": max(source[name] for name in FUNCTIONS),
        "cold_start_ratio_compiled": max(compiled[name] for name in FUNCTIONS),
        "cold_start_floor_ratio": source["floor"],
        "cold_start_floor_ratio_compiled": compiled["floor"],
        "graph_batch100_p50_ms": percentile(samples["graph"], 50),
        "graph_batch100_p99_ms": percentile(samples["graph"], 99),
        "outbound100_p50_ms": percentile(samples["outbound"], 50),
        "outbound100_p99_ms": percentile(samples["outbound"], 99),
        "warm_requests_per_route": float(len(samples["graph"])),
        "cold_baseline_ms": source["baseline_ms"],
        "cold_baseline_compiled_ms": compiled["baseline_ms"],
        "xray_import_ms": compiled["xray_import_ms"],
        "moto_send100_p50_ms": percentile(floor, 50),
        "moto_send100_p99_ms": percentile(floor, 99),
    }
    rows: list[tuple[str, object, str]] = []
    for mode, note in (("source", "the key: no .pyc, as Lambda runs sam build output"), ("compiled", ".pyc shipped")):
        rows.append((f"[{mode}] baseline process (boto3 + sqs client), ms", cold[mode]["baseline_ms"], note))
        for name in FUNCTIONS:
            rows.append((f"[{mode}] {name} cold start, ms", cold[mode][f"{name}_ms"], ""))
            rows.append((f"[{mode}] {name} cold start ratio", cold[mode][name], "target <= 1.3x"))
        for key, value in cold[mode].items():
            if key.startswith("part_"):
                part = key.removeprefix("part_").removesuffix("_ms")
                why = "required by issue 5" if part in REQUIRED_PARTS else ""
                rows.append((f"[{mode}] graph cold start part: {part}, ms", value, why))
        rows.append((f"[{mode}] floor ratio: baseline + required parts", cold[mode]["floor"], ""))
    notes = {
        "graph_batch100_p99_ms": "target p99 <= 100 ms",
        "outbound100_p99_ms": "target p99 <= 100 ms",
        "moto_send100_p50_ms": "the stand-in's share: the one SendMessageBatch",
        "xray_import_ms": "added at cold start in Lambda with Active tracing",
    }
    rows += [(name, value, notes.get(name, "")) for name, value in figures.items()]
    emit("ingress", rows, figures)


if __name__ == "__main__":
    main()
