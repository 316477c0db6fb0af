"""The built artifact works as Lambda runs it: only the function's code and its layer, nothing else.

For each function of ``.aws-sam/build/template.yaml`` (made by ``make sam-build``), a fresh
``python3.12 -I -S`` (no site-packages, no user site, no PYTHONPATH, no current directory) puts the
function's build folder first on ``sys.path`` (Lambda's ``/var/task``) and its layers' ``python/``
folders after it (``/opt/python``), imports the handler named in the built template and calls it
with its ``events/`` file and a fake Lambda context. A dependency missing from the layer's
requirements, a module left out of the layer, or a wrong ``Handler`` fails here, not in production.

The functions talk to the local stack (``local_stack.env``); the other settings come from
``env.json``, so that file is exercised too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from concord.notices import decode_message
from local.aws.provision import load_template
from tests.support.events import load_event
from tests.support.receiver import Receiver
from tests.support.secrets import store_credentials

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / ".aws-sam" / "build"
RUN_SAM_BUILD = "run `make sam-build` first (SAM_CLI_TELEMETRY=0 sam build, without --use-container)"

# Runs inside the fresh interpreter. argv: task dir, handler, event file, result file, *layer dirs.
RUNNER = r"""
import importlib, json, os, sys, time, uuid
task, handler, event_path, result_path, *layers = sys.argv[1:]
sys.path[:0] = [task, *layers]
os.chdir(task)

class LambdaContext:
    function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:" + function_name
    memory_limit_in_mb = 512
    aws_request_id = str(uuid.uuid4())
    log_group_name = "/aws/lambda/" + function_name
    log_stream_name = "2026/11/20/[$LATEST]artifact-test"
    _deadline = time.monotonic() + 60
    def get_remaining_time_in_millis(self):
        return int((self._deadline - time.monotonic()) * 1000)

module_name, _, attribute = handler.rpartition(".")
module = importlib.import_module(module_name)
lambda_handler = getattr(module, attribute)
with open(event_path) as f:
    event = json.load(f)
result = lambda_handler(event, LambdaContext())

outside = sorted(
    name for name, m in list(sys.modules.items())
    if getattr(m, "__file__", None)
    and not os.path.realpath(m.__file__).startswith((os.path.realpath(task), *map(os.path.realpath, layers),
                                                      os.path.realpath(sys.base_prefix)))
)
with open(result_path, "w") as f:
    json.dump({"result": result, "modules_outside": outside, "sys_path": sys.path}, f, default=str)
"""


def _python312() -> str:
    if sys.version_info[:2] == (3, 12):
        return sys.executable  # -S keeps a virtualenv's site-packages off sys.path
    found = shutil.which("python3.12")
    if not found:
        pytest.fail("python3.12 is needed to import the python3.12 artifact")
    return found


@dataclass(frozen=True)
class BuiltFunction:
    name: str
    task: Path  # acts as /var/task
    handler: str
    layers: tuple[Path, ...]  # each acts as /opt/python
    env: dict[str, str]


@dataclass
class Invocation:
    returncode: int
    result: Any
    output: str  # stdout + stderr: the function's logs and metrics
    modules_outside: list[str]
    sys_path: list[str]


@pytest.fixture(scope="module")
def built() -> dict[str, BuiltFunction]:
    """The functions of the built template; fails (never skips) when there is no build."""
    template_path = BUILD / "template.yaml"
    if not template_path.is_file():
        pytest.fail(f"no SAM build at {BUILD}: {RUN_SAM_BUILD}")
    template = load_template(template_path)
    resources = template["Resources"]
    globals_ = template.get("Globals", {}).get("Function", {})
    functions = {}
    for name, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        props = resource["Properties"]
        layers = []
        for layer in props.get("Layers", globals_.get("Layers", [])):
            layer_props = resources[layer["Ref"]]["Properties"]
            layers.append(BUILD / layer_props["ContentUri"] / "python")
        env = dict(globals_.get("Environment", {}).get("Variables", {}))
        env.update(props.get("Environment", {}).get("Variables", {}))
        functions[name] = BuiltFunction(
            name=name,
            task=BUILD / props["CodeUri"],
            handler=props.get("Handler", globals_.get("Handler")),
            layers=tuple(layers),
            env={k: v for k, v in env.items() if isinstance(v, str)},
        )
    _fail_if_stale(functions)
    return functions


def _fail_if_stale(functions: dict[str, BuiltFunction]) -> None:
    """Testing an old build would prove nothing about the sources: insist on a fresh one."""
    source_template = load_template(ROOT / "template.yaml")
    pairs = [
        (ROOT / source_template["Resources"][name]["Properties"]["CodeUri"], function.task)
        for name, function in functions.items()
    ]
    pairs.append((ROOT / "layers" / "concord" / "concord", BUILD / "ConcordLayer" / "python" / "concord"))
    stale = [
        str(source.relative_to(ROOT))
        for folder, built_folder in pairs
        for source in folder.rglob("*.py")
        if "__pycache__" not in source.parts
        and (
            not (built_folder / source.relative_to(folder)).is_file()
            or (built_folder / source.relative_to(folder)).read_bytes() != source.read_bytes()
        )
    ]
    if stale:
        pytest.fail(f"the SAM build is older than {', '.join(sorted(stale)[:5])}: {RUN_SAM_BUILD}")


@pytest.fixture(scope="module")
def base_env(local_stack: Any) -> dict[str, str]:
    """A clean environment: env.json's local values, then the running local stack's endpoints and names."""
    local = json.loads((ROOT / "env.json").read_text())["Parameters"]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        **{k: v for k, v in local.items() if v != ""},
        **local_stack.env,
        # What `sam local invoke` sets: Powertools disables tracing there (no X-Ray daemon).
        "AWS_SAM_LOCAL": "true",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    return env


def _store_secrets(local_stack: Any, env: dict[str, str]) -> None:
    """The credentials secrets under env.json's ARNs, as a deploy creates them."""
    names = {
        "salesforce": "SALESFORCE_JWT_SECRET_ARN",
        "graph": "GRAPH_APP_SECRET_ARN",
        "google": "GOOGLE_SERVICE_ACCOUNT_SECRET_ARN",
    }
    store_credentials(local_stack, {system: env[variable] for system, variable in names.items()})


@pytest.fixture(scope="module")
def invoke(
    built: dict[str, BuiltFunction],
    base_env: dict[str, str],
    local_stack: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., Invocation]:
    python = _python312()
    workdir = tmp_path_factory.mktemp("artifact")

    def run(function: str, event: dict[str, Any], env: dict[str, str | None] | None = None) -> Invocation:
        target = built[function]
        _store_secrets(local_stack, base_env)  # tests reset the stack; the worker reads them at cold start
        event_file = workdir / f"{function}-event.json"
        result_file = workdir / f"{function}-result.json"
        result_file.unlink(missing_ok=True)
        event_file.write_text(json.dumps(event))
        full_env = {
            **base_env,
            "POWERTOOLS_SERVICE_NAME": target.env["POWERTOOLS_SERVICE_NAME"],
            "POWERTOOLS_METRICS_NAMESPACE": target.env["POWERTOOLS_METRICS_NAMESPACE"],
            "AWS_LAMBDA_FUNCTION_NAME": f"concord-local-{function}",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
            "LAMBDA_TASK_ROOT": str(target.task),
            "_HANDLER": target.handler,
        }
        for key, value in (env or {}).items():
            if value is None:
                full_env.pop(key, None)
            else:
                full_env[key] = value
        args = [str(target.task), target.handler, str(event_file), str(result_file), *map(str, target.layers)]
        done = subprocess.run(  # noqa: S603 - our own interpreter and script
            [python, "-I", "-S", "-c", RUNNER, *args],
            env=full_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=workdir,
        )
        payload = json.loads(result_file.read_text()) if result_file.is_file() else {}
        return Invocation(
            returncode=done.returncode,
            result=payload.get("result"),
            output=done.stdout + done.stderr,
            modules_outside=payload.get("modules_outside", []),
            sys_path=payload.get("sys_path", []),
        )

    return run


def _ok(invocation: Invocation) -> Any:
    assert invocation.returncode == 0, f"the function failed:\n{invocation.output[-4000:]}"
    assert not invocation.modules_outside, f"imported from outside the artifact: {invocation.modules_outside}"
    assert "site-packages" not in " ".join(invocation.sys_path), invocation.sys_path
    # Canary secrets in the event files must never reach logs.
    assert "CANARY-" not in invocation.output, "a secret from the event reached the logs"
    return invocation.result


def _header(response: dict[str, Any], name: str) -> str | None:
    """A response header; Powertools answers a REST (v1) event with ``multiValueHeaders``."""
    single = response.get("headers") or {}
    multi = response.get("multiValueHeaders") or {}
    value = single.get(name) or (multi.get(name) or [None])[0]
    return None if value is None else str(value)


def _json_body(response: dict[str, Any]) -> Any:
    assert _header(response, "Content-Type") == "application/json"
    return json.loads(response["body"])


# --------------------------------------------------------------------------------------------


CASES = [
    pytest.param("SalesforceWebhookFunction", "salesforce_webhook/outbound_message", id="salesforce_webhook"),
    pytest.param("SalesforceEventsFunction", "salesforce_events/contact_change_event", id="salesforce_events"),
    pytest.param("GraphWebhookFunction", "graph_webhook/notifications", id="graph_webhook"),
    pytest.param("GoogleWebhookFunction", "google_webhook/gmail_push", id="google_webhook"),
    pytest.param("SyncWorkerFunction", "sync_worker/change_notices", id="sync_worker"),
    pytest.param("SubscriptionsFunction", "subscriptions/scheduled", id="subscriptions"),
    pytest.param("ReconcilerFunction", "reconciler/scheduled", id="reconciler"),
]


def test_every_function_in_the_build_is_covered(built: dict[str, BuiltFunction]) -> None:
    assert set(built) == {case.values[0] for case in CASES}
    for function in built.values():
        assert function.layers, f"{function.name} has no layer"
        assert all(layer.is_dir() for layer in function.layers), function.layers


@pytest.mark.parametrize(("function", "event_name"), CASES)
def test_each_function_imports_from_its_artifact_and_handles_its_event(
    invoke: Callable[..., Invocation], function: str, event_name: str
) -> None:
    result = _ok(invoke(function, load_event(event_name)))
    assert isinstance(result, dict)


def test_the_built_salesforce_webhook_acknowledges_and_enqueues_one_notice_per_notification(
    invoke: Callable[..., Invocation], local_stack: Any
) -> None:
    local_stack.reset()
    response = _ok(invoke("SalesforceWebhookFunction", load_event("salesforce_webhook/outbound_message")))
    assert response["statusCode"] == 200
    assert "<Ack>true</Ack>" in response["body"]
    sqs = local_stack.client("sqs")
    [message] = sqs.receive_message(QueueUrl=local_stack.env["CHANGES_QUEUE_URL"], MaxNumberOfMessages=10)["Messages"]
    assert len(decode_message(message["Body"])) == 2


@pytest.mark.parametrize(
    ("function", "event_name", "status"),
    [
        # The sample events carry canary credentials that no subscription, channel or key matches.
        ("GraphWebhookFunction", "graph_webhook/notifications", 403),
        ("GraphWebhookFunction", "graph_webhook/lifecycle", 403),
        ("GoogleWebhookFunction", "google_webhook/calendar_notification", 403),
    ],
)
def test_the_built_webhooks_refuse_unknown_credentials_with_a_reason(
    invoke: Callable[..., Invocation], local_stack: Any, function: str, event_name: str, status: int
) -> None:
    local_stack.reset()
    response = _ok(invoke(function, load_event(event_name)))
    assert response["statusCode"] == status
    assert _json_body(response)["error"]
    sqs = local_stack.client("sqs")
    queued = sqs.get_queue_attributes(QueueUrl=local_stack.env["CHANGES_QUEUE_URL"], AttributeNames=["All"])
    assert queued["Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_the_built_google_webhook_refuses_a_push_signed_by_an_unknown_key(
    invoke: Callable[..., Invocation], local_stack: Any
) -> None:
    local_stack.reset()
    keys = json.dumps({"keys": []}).encode()
    with Receiver(lambda _: (200, {"Content-Type": "application/json"}, keys)) as jwks:
        env = {"GOOGLE_JWKS_URL": f"{jwks.url}/oauth2/v3/certs"}
        response = _ok(invoke("GoogleWebhookFunction", load_event("google_webhook/gmail_push"), env=env))
    assert response["statusCode"] == 401
    assert _json_body(response)["error"]


@pytest.mark.parametrize("route", ["/graph/notifications", "/graph/lifecycle"])
def test_graph_validation_handshake_echoes_the_decoded_token_as_text(
    invoke: Callable[..., Invocation], route: str
) -> None:
    event = load_event("graph_webhook/validation")
    event["resource"] = event["path"] = event["requestContext"]["resourcePath"] = route
    response = _ok(invoke("GraphWebhookFunction", event))
    assert response["statusCode"] == 200
    assert _header(response, "Content-Type") == "text/plain"
    assert response["body"] == (
        "Validation: Testing client application reachability for subscription "
        "Request-Id: 6c1b2a3d-4e5f-4a6b-9c7d-8e9f0a1b2c3d"
    )


def test_calendar_sync_message_is_acknowledged(invoke: Callable[..., Invocation]) -> None:
    event = load_event("google_webhook/calendar_notification")
    for headers in (event["headers"], event["multiValueHeaders"]):
        headers["X-Goog-Resource-State"] = "sync" if headers is event["headers"] else ["sync"]
    response = _ok(invoke("GoogleWebhookFunction", event))
    assert response["statusCode"] == 200


def test_oversized_bodies_are_refused_before_parsing(invoke: Callable[..., Invocation]) -> None:
    event = load_event("salesforce_webhook/outbound_message")
    event["body"] = "<x/>" * 300
    response = _ok(invoke("SalesforceWebhookFunction", event, env={"WEBHOOK_MAX_BODY_BYTES": "1024"}))
    assert response["statusCode"] == 413
    # Salesforce expects a SOAP fault, with the reason in faultstring.
    assert _header(
        response,
        "Content-Type",
    ).startswith("text/xml")  # type: ignore[union-attr]
    assert "<faultstring>" in response["body"]
    assert "1024" in response["body"]


def test_the_built_salesforce_events_function_enqueues_a_change_event(
    invoke: Callable[..., Invocation], local_stack: Any
) -> None:
    local_stack.reset()
    result = _ok(invoke("SalesforceEventsFunction", load_event("salesforce_events/contact_change_event")))
    assert (result["status"], result["statusCode"], result["enqueued"]) == ("enqueued", 200, 1)
    sqs = local_stack.client("sqs")
    message = sqs.receive_message(QueueUrl=local_stack.env["CHANGES_QUEUE_URL"])["Messages"][0]
    [notice] = decode_message(message["Body"])
    assert (notice.source, notice.object_type, notice.kind) == ("salesforce", "contact", "change")


def test_worker_syncs_what_it_can_and_hands_back_what_it_cannot_reach(invoke: Callable[..., Invocation]) -> None:
    event = load_event("sync_worker/change_notices")
    invocation = invoke("SyncWorkerFunction", event)
    # The Salesforce notice needs Salesforce, which no sandbox serves here: a transient failure, retried.
    # The Graph notices name a connection this stack does not hold: logged as skipped, acknowledged.
    assert _ok(invocation) == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    # Every notice's decision is logged under its own id, as the sync log keeps it.
    for notice_id in (
        "ntc_01JD4Q7Z8X2M5N6P7Q8R9S0T1U",
        "ntc_01JD4Q80A1B2C3D4E5F6G7H8J9",
        "ntc_01JD4Q80A1B2C3D4E5F6G7H8JA",
    ):
        assert notice_id in invocation.output


@pytest.mark.parametrize("body", ["{not json", "[1, 2]", "", "[]", '{"v": 1, "source": "graph"}'])
def test_worker_sends_malformed_bodies_to_the_dlq_at_once(
    invoke: Callable[..., Invocation], local_stack: Any, body: str
) -> None:
    local_stack.reset()
    event = load_event("sync_worker/change_notices")
    event["Records"][1]["body"] = body
    result = _ok(invoke("SyncWorkerFunction", event))
    assert event["Records"][1]["messageId"] not in {f["itemIdentifier"] for f in result["batchItemFailures"]}
    sqs = local_stack.client("sqs")
    [dead] = sqs.receive_message(QueueUrl=local_stack.env["CHANGES_DLQ_URL"], MessageAttributeNames=["All"])["Messages"]
    assert dead["Body"] == (body or "{}")
    assert dead["MessageAttributes"]["reason"]["StringValue"].startswith("malformed message")


def test_scheduled_functions_reach_their_tables(invoke: Callable[..., Invocation]) -> None:
    subscriptions = _ok(invoke("SubscriptionsFunction", load_event("subscriptions/scheduled")))
    # No connection is stored here: a run that reaches its tables and finds nothing to keep alive.
    assert subscriptions["connections"] == 0 and subscriptions["failures"] == 0
    reconciler = _ok(invoke("ReconcilerFunction", load_event("reconciler/scheduled")))
    # Nobody to catch up: not even the org's Salesforce objects are queued without a live connection.
    assert reconciler["queued"] == 0 and reconciler["scheduled_at"]


def test_a_missing_setting_fails_the_cold_start_naming_it(invoke: Callable[..., Invocation]) -> None:
    invocation = invoke("SyncWorkerFunction", load_event("sync_worker/change_notices"), env={"CHANGES_DLQ_URL": None})
    assert invocation.returncode != 0
    assert "SettingsError" in invocation.output
    assert "CHANGES_DLQ_URL: missing" in invocation.output
