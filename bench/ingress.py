"""Webhook ingress figures (bench `ingress`): cold start ratio and warm latency of the 100-item routes.

* ``cold_start_ratio``: for each webhook function, a fresh Python process that imports its code, builds
  its settings and app, and handles its first ``events/`` request against the local stack, timed as a
  whole, divided by a fresh process that only runs ``import boto3; boto3.client("sqs")``. Both get the
  built layer's third-party packages (``.aws-sam/build/ConcordLayer/python``, else the dev venv) and the
  current ``layers/concord`` source, so the figure holds for the artifact once rebuilt. The worst
  function's ratio is reported (each one's in the table). Google's first request is its Calendar ping
  (the Gmail route also fetches JWKS on its first call).
* ``graph_batch100_*`` / ``outbound100_*``: the warm app resolving a 100-notification request,
  SendMessageBatch to moto and the idempotency writes to DynamoDB Local included; each request carries
  new ids, so none is a replay.

Run: ``.venv/bin/python -m bench.ingress``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.report import emit, percentile
from local.aws.stack import OFFLINE_ENV, LocalStack

ROOT = Path(__file__).resolve().parents[1]
BUILT_LAYER = ROOT / ".aws-sam" / "build" / "ConcordLayer" / "python"
ROUNDS = 60
COLD_RUNS = 5

FIRST_EVENTS = {
    "salesforce_webhook": ("SalesforceWebhook", "salesforce_webhook/outbound_message", "resolve"),
    "salesforce_events": ("SalesforceEvents", "salesforce_events/contact_change_event", "handle"),
    "graph_webhook": ("GraphWebhook", "graph_webhook/notifications", "resolve"),
    "google_webhook": ("GoogleWebhook", "google_webhook/calendar_notification", "resolve"),
}

COLD = """
import json, sys, time
from concord.settings import WebhookSettings
from concord.ingress.apps.{module} import {cls}
app = {cls}(WebhookSettings.from_env())
event = json.load(open({event!r}))
answer = getattr(app, {method!r})(event, None)
status = answer.get("statusCode")
assert status is not None and status < 300, answer
"""
BASELINE = 'import boto3; boto3.client("sqs")'


def _env(stack: LocalStack) -> dict[str, str]:
    paths = [str(ROOT / "layers" / "concord")]
    if BUILT_LAYER.is_dir():
        paths.append(str(BUILT_LAYER))
    return {
        "PATH": os.environ.get("PATH", ""),
        **OFFLINE_ENV,
        **stack.env,
        "PYTHONPATH": os.pathsep.join(paths),
        "PYTHONDONTWRITEBYTECODE": "1",
        "POWERTOOLS_SERVICE_NAME": "bench",
        "POWERTOOLS_METRICS_NAMESPACE": "Concord",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "SALESFORCE_ORG_ID": "00D5g00000CNCRDEA0",
        "GOOGLE_PUSH_AUDIENCE": "concord-gmail-push",
        "GOOGLE_PUSH_SERVICE_ACCOUNT": "gmail-push@concord-example.iam.gserviceaccount.com",
    }


def _process_ms(code: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path[:0] = {env['PYTHONPATH'].split(os.pathsep)!r}\n" + code],
        env=env,
        check=True,
        capture_output=True,
    )
    return (time.perf_counter() - start) * 1000


def cold_starts(stack: LocalStack) -> dict[str, float]:
    env = _env(stack)
    baseline = statistics.median(_process_ms(BASELINE, env) for _ in range(COLD_RUNS))
    ratios = {"baseline_ms": baseline}
    for module, (cls, event, method) in FIRST_EVENTS.items():
        code = COLD.format(module=module, cls=cls, event=str(ROOT / "events" / f"{event}.json"), method=method)
        samples = []
        for _ in range(COLD_RUNS):
            stack.reset()
            _seed(stack)
            samples.append(_process_ms(code, env))
        ratios[module] = statistics.median(samples) / baseline
    return ratios


def _seed(stack: LocalStack) -> None:
    for path in (str(ROOT), str(ROOT / "layers" / "concord")):
        if path not in sys.path:
            sys.path.insert(0, path)
    from tests.unit.ingress.helpers import channel_items

    dynamodb = stack.client("dynamodb")
    for item in channel_items():
        dynamodb.put_item(TableName=stack.env["SUBSCRIPTIONS_TABLE"], Item=item)


def warm(stack: LocalStack) -> dict[str, list[float]]:
    stack.reset()
    _seed(stack)
    for key, value in _env(stack).items():
        os.environ.setdefault(key, value)
    os.environ.update(stack.env)
    from tests.support.events import load_event
    from tests.unit.ingress.helpers import CONTEXT, graph_batch, outbound_message

    from concord.ingress.apps.graph_webhook import GraphWebhook
    from concord.ingress.apps.salesforce_webhook import SalesforceWebhook
    from concord.settings import WebhookSettings

    settings = WebhookSettings.from_env()
    graph, outbound = GraphWebhook(settings), SalesforceWebhook(settings)
    samples: dict[str, list[float]] = {"graph": [], "outbound": []}
    for round_ in range(ROUNDS + 5):
        event = load_event("graph_webhook/notifications")
        event["body"] = graph_batch(100).replace("AAMkContact", f"AAMk{round_:04d}C")
        start = time.perf_counter()
        assert graph.resolve(event, CONTEXT)["statusCode"] == 202
        elapsed_graph = (time.perf_counter() - start) * 1000
        event = load_event("salesforce_webhook/outbound_message")
        event["body"] = outbound_message(100, start=1 + round_ * 100)
        start = time.perf_counter()
        assert outbound.resolve(event, CONTEXT)["statusCode"] == 200
        elapsed_outbound = (time.perf_counter() - start) * 1000
        if round_ >= 5:  # the first rounds warm connections and caches
            samples["graph"].append(elapsed_graph)
            samples["outbound"].append(elapsed_outbound)
    return samples


def main() -> None:
    with LocalStack() as stack:
        cold = cold_starts(stack)
        samples = warm(stack)
    figures = {
        "cold_start_ratio": max(v for k, v in cold.items() if k != "baseline_ms"),
        "graph_batch100_p50_ms": percentile(samples["graph"], 50),
        "graph_batch100_p99_ms": percentile(samples["graph"], 99),
        "outbound100_p50_ms": percentile(samples["outbound"], 50),
        "outbound100_p99_ms": percentile(samples["outbound"], 99),
    }
    rows: list[tuple[str, object, str]] = [("baseline process (boto3 + sqs client), ms", cold["baseline_ms"], "")]
    rows += [(f"cold start ratio {name}", cold[name], "target <= 1.3x") for name in FIRST_EVENTS]
    rows += [(name, value, "target p99 <= 100 ms" if "p99" in name else "") for name, value in figures.items()]
    emit("ingress", rows, figures)


if __name__ == "__main__":
    main()
