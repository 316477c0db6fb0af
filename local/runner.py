"""The Lambda and API Gateway half of the cloud on one machine.

The runner reads ``template.yaml`` and plays the parts AWS plays in production:
- **API Gateway**: an HTTP server on 127.0.0.1 that turns each request on a declared ``Api`` route
  into a REST API proxy event (payload version 1.0) and the handler's answer back into HTTP;
- **the SQS event source**: a poller that receives batches from the function's queue, invokes the
  handler with a real SQS event, and deletes only the messages not reported in
  ``batchItemFailures`` - so failures are redelivered and, after ``maxReceiveCount``, moved to the
  dead-letter queue by the queue itself, exactly as in AWS;
- **EventBridge rules**: :meth:`LocalRunner.put_event` delivers an event to every function whose
  rule pattern matches it (``source`` prefix or exact values, ``detail-type``), as an asynchronous
  invocation: retried on error, then sent to the function's ``OnFailure`` SQS destination;
- **schedules**: each scheduled function is invoked every ``schedule_interval_s`` (compressed, so a
  local run shows renewals and catch-ups happening).

Handlers run in this process, each loaded from ``functions/<name>/app.py`` under its own module
name with its own environment, built from the template's ``Globals`` and the function's variables
(resolved against the local stack) plus local overrides. Why in-process: one process for the whole
main job keeps memory and start-up small; each function still gets a real cold start on first use.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from local.aws.provision import Resolver, load_template
from local.aws.stack import ROOT, TEMPLATE, LocalStack

if TYPE_CHECKING:
    from pathlib import Path
    from types import ModuleType

LAYER = ROOT / "layers" / "concord"

#: Values for the template parameters that have no default (a deploy passes them in samconfig.toml).
#: The Outbound Message endpoint's token on this machine: the one the committed sample event carries, so
#: ``sam local invoke -e events/salesforce_webhook/...`` works too. In AWS it is a secret of the org's admin.
LOCAL_OUTBOUND_TOKEN = "CANARY-outbound-token-Qm7xR2vT9kLw4Zp8"

LOCAL_PARAMETERS: dict[str, str] = {
    "SalesforceOrgId": "00D5g000004SEEDAAA",
    "SalesforceOutboundTokenSha256": hashlib.sha256(LOCAL_OUTBOUND_TOKEN.encode()).hexdigest(),
    "SalesforceJwtSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:concord/salesforce-jwt",
    "GraphAppSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:concord/graph-app",
    "GoogleServiceAccountSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:concord/google-sa",
    "GooglePushServiceAccount": "gmail-push@concord-local.iam.gserviceaccount.com",
    # Schedules tick every minute here (``schedule_interval_s``), so a connection is caught up each
    # minute: a change whose notification a sandbox dropped is repaired while one watches.
    "CatchUpIntervalMinutes": "1",
}


@dataclass
class LambdaContext:
    """What a handler can ask of its context, as the Lambda runtime provides it."""

    function_name: str
    memory_limit_in_mb: int = 512
    timeout_s: float = 10.0
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_s - (time.monotonic() - self.started)) * 1000))


@dataclass
class Function:
    logical_id: str
    code_dir: Path
    handler: str
    env: dict[str, str]
    timeout_s: float
    memory_mb: int
    events: dict[str, dict[str, Any]]
    async_config: dict[str, Any] = field(default_factory=dict)  # EventInvokeConfig
    module: ModuleType | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    invocations: int = 0

    def load(self) -> Any:
        """Import the handler module once (its cold start), with the function's environment."""
        with self.lock:
            if self.module is None:
                module_file, attribute = self.handler.rsplit(".", 1)
                path = self.code_dir / f"{module_file.replace('.', '/')}.py"
                spec = importlib.util.spec_from_file_location(f"concord_function_{self.code_dir.name}", path)
                if spec is None or spec.loader is None:
                    raise RuntimeError(f"{self.logical_id}: cannot load handler {self.handler} from {path}")
                module = importlib.util.module_from_spec(spec)
                os.environ.update(self.env)
                spec.loader.exec_module(module)
                self.module = module
                self.entry = getattr(module, attribute)
        return self.entry

    def invoke(self, event: dict[str, Any]) -> Any:
        entry = self.load()
        self.invocations += 1
        context = LambdaContext(self.logical_id, self.memory_mb, self.timeout_s)
        return entry(event, context)


def functions_of(template: dict[str, Any], resolve: Resolver, overrides: dict[str, str]) -> dict[str, Function]:
    globals_ = template.get("Globals", {}).get("Function", {})
    global_env = resolve(globals_.get("Environment", {}).get("Variables", {}))
    found = {}
    for logical_id, resource in template.get("Resources", {}).items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        props = resource["Properties"]
        env = {**global_env, **resolve(props.get("Environment", {}).get("Variables", {}))}
        env = {k: str(v) for k, v in env.items() if v is not None}
        env.update({k: v for k, v in overrides.items()})
        found[logical_id] = Function(
            logical_id=logical_id,
            code_dir=ROOT / props["CodeUri"],
            handler=props.get("Handler", globals_.get("Handler", "app.lambda_handler")),
            env=env,
            timeout_s=float(resolve(props.get("Timeout", globals_.get("Timeout", 3)))),
            memory_mb=int(resolve(props.get("MemorySize", globals_.get("MemorySize", 128)))),
            events={
                name: {"Type": e["Type"], **resolve(e.get("Properties", {}))}
                for name, e in props.get("Events", {}).items()
            },
            async_config=resolve(props.get("EventInvokeConfig", {})),
        )
    return found


# ------------------------------------------------------------------------------------- API Gateway


def proxy_event(
    method: str, path: str, resource: str, query: str, headers: dict[str, str], body: bytes, stage: str
) -> dict[str, Any]:
    """An API Gateway REST proxy event (payload 1.0), as API Gateway builds it."""
    multi_query = parse_qs(query, keep_blank_values=True)
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode("ascii"), True
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": dict(headers),
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/{stage}{path}",
            "stage": stage,
            "requestId": str(uuid.uuid4()),
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {"sourceIp": "127.0.0.1", "userAgent": headers.get("User-Agent", "")},
            "accountId": "123456789012",
            "apiId": "local",
            "protocol": "HTTP/1.1",
        },
        "body": text if body else None,
        "isBase64Encoded": encoded,
    }


def _api_handler(runner: LocalRunner) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else each answer waits ~40 ms for a delayed ACK

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            target = runner.routes.get((self.command, parts.path))
            if target is None:
                self._answer(
                    404 if not any(p == parts.path for _, p in runner.routes) else 405,
                    {"Content-Type": "application/json"},
                    b'{"message":"Missing Authentication Token"}',
                )
                return
            event = proxy_event(
                self.command, parts.path, parts.path, parts.query, dict(self.headers.items()), body, runner.stage
            )
            try:
                result = target.invoke(event)
            except Exception as exc:  # an unhandled error is what API Gateway turns into a 502
                runner.errors.append(f"{target.logical_id}: {type(exc).__name__}")
                self._answer(502, {"Content-Type": "application/json"}, b'{"message": "Internal server error"}')
                return
            headers = {**(result.get("headers") or {})}
            for name, values in (result.get("multiValueHeaders") or {}).items():
                headers[name] = ", ".join(values)
            payload = result.get("body") or ""
            data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode("utf-8")
            self._answer(int(result.get("statusCode", 200)), headers, data)

        def _answer(self, status: int, headers: dict[str, str], data: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            return  # query strings can carry tokens (Graph's validationToken); the functions log instead

    return Handler


# ------------------------------------------------------------------------------------------ runner


class LocalRunner:
    """Runs the template's functions against a started :class:`LocalStack`."""

    def __init__(
        self,
        stack: LocalStack,
        *,
        overrides: dict[str, str] | None = None,
        parameters: dict[str, Any] | None = None,
        template: Path = TEMPLATE,
        schedule_interval_s: float = 60.0,
        poll_wait_s: float = 1.0,
        batching_window_s: float | None = None,
        poll_queues: bool = True,
        async_retry_delay_s: float = 0.5,
    ):
        assert stack.provisioned is not None, "start the stack first"
        self.stack = stack
        self.template = load_template(template)
        self.stage = str(self.template.get("Parameters", {}).get("StageName", {}).get("Default", "v1"))
        self.schedule_interval_s = schedule_interval_s
        self.poll_wait_s = poll_wait_s
        self.batching_window_s = batching_window_s  # overrides the template's window (tests use 0)
        self.poll_queues = poll_queues  # False: messages stay queued for a test to read
        self.async_retry_delay_s = async_retry_delay_s  # Lambda waits about 1 then 2 minutes
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _api_handler(self))
        self._server.daemon_threads = True
        resolve = Resolver(
            self.template,
            queue_urls=stack.provisioned.queue_urls,
            parameters={**LOCAL_PARAMETERS, **(parameters or {})},
        )
        env = {**stack.env, "WEBHOOK_BASE_URL": self.url, **(overrides or {})}
        self.functions = functions_of(self.template, resolve, env)
        self.routes = {
            (str(e["Method"]).upper(), str(e["Path"])): fn
            for fn in self.functions.values()
            for e in fn.events.values()
            if e["Type"] == "Api"
        }
        if str(LAYER) not in sys.path:
            sys.path.insert(0, str(LAYER))  # what /opt/python is in Lambda

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> LocalRunner:
        self._environ = dict(os.environ)  # handlers' imports set their variables; stop() puts these back
        self._spawn("api", self._server.serve_forever)
        for fn in self.functions.values():
            for name, event in fn.events.items():
                if event["Type"] == "SQS" and self.poll_queues:
                    self._spawn(f"sqs-{fn.logical_id}-{name}", lambda f=fn, e=event: self._poll(f, e))
                elif event["Type"] in ("Schedule", "ScheduleV2"):
                    self._spawn(f"schedule-{fn.logical_id}-{name}", lambda f=fn: self._schedule(f))
        return self

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=15)
        os.environ.clear()
        os.environ.update(self._environ)

    def __enter__(self) -> LocalRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # --- event sources

    def _poll(self, fn: Function, event: dict[str, Any]) -> None:
        sqs = self.stack.client("sqs")
        arn = str(event["Queue"])
        assert self.stack.provisioned is not None
        queue_url = self.stack.provisioned.queue_urls[arn.rsplit(":", 1)[-1]]
        batch_size = int(event.get("BatchSize", 10))
        window = self.batching_window_s
        if window is None:
            window = float(event.get("MaximumBatchingWindowInSeconds", 0))
        while not self._stop.is_set():
            messages = self._receive(sqs, queue_url, batch_size, window)
            if not messages:
                continue
            records = [sqs_record(m, arn) for m in messages]
            try:
                result = fn.invoke({"Records": records}) or {}
                failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
            except Exception as exc:  # a crashed invocation fails the whole batch, as in Lambda
                self.errors.append(f"{fn.logical_id}: {type(exc).__name__}")
                failed = {m["MessageId"] for m in messages}
            done = [m for m in messages if m["MessageId"] not in failed]
            for start in range(0, len(done), 10):
                sqs.delete_message_batch(
                    QueueUrl=queue_url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(done[start : start + 10])
                    ],
                )

    def _receive(self, sqs: Any, queue_url: str, batch_size: int, window: float) -> list[dict[str, Any]]:
        """Gather up to ``batch_size`` messages, waiting at most the batching window once some arrived."""
        messages: list[dict[str, Any]] = []
        deadline = None
        while len(messages) < batch_size and not self._stop.is_set():
            got = sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=min(10, batch_size - len(messages)),
                WaitTimeSeconds=0,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            seen = {m["MessageId"] for m in messages}
            messages += [m for m in got if m["MessageId"] not in seen]  # never twice in one batch, as in Lambda
            if messages and deadline is None:
                deadline = time.monotonic() + window
            if not got:
                if deadline is None or time.monotonic() >= deadline:
                    if not messages:
                        self._stop.wait(self.poll_wait_s / 10)
                    break
                self._stop.wait(0.05)
        return messages

    def _schedule(self, fn: Function) -> None:
        while not self._stop.wait(self.schedule_interval_s):
            self.invoke_scheduled(fn.logical_id)

    def invoke_scheduled(self, logical_id: str) -> Any:
        event = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": "us-east-1",
            "resources": [f"arn:aws:events:us-east-1:123456789012:rule/{logical_id}"],
            "detail": {},
        }
        try:
            return self.functions[logical_id].invoke(event)
        except Exception as exc:  # a failed schedule run is retried at the next tick, as in AWS
            self.errors.append(f"{logical_id}: {type(exc).__name__}")
            return None

    def put_event(self, event: dict[str, Any]) -> list[Any]:
        """EventBridge: deliver ``event`` to every function whose rule pattern matches it.

        The answers of the invocations that succeeded. Each is asynchronous, as EventBridge invokes
        Lambda: a function error never reaches the caller; see :meth:`invoke_async`.
        """
        results = []
        for fn in self.functions.values():
            for spec in fn.events.values():
                if spec["Type"] == "EventBridgeRule" and pattern_matches(spec.get("Pattern", {}), event):
                    outcome = self.invoke_async(fn, event)
                    if outcome is not _FAILED:
                        results.append(outcome)
        return results

    def invoke_async(self, fn: Function, event: dict[str, Any]) -> Any:
        """Invoke as Lambda does an asynchronous invocation.

        An error is retried ``EventInvokeConfig.MaximumRetryAttempts`` times (Lambda's default: 2).
        After the last, Lambda's failure record (the event as ``requestPayload``, the error as
        ``responsePayload``) goes to the ``OnFailure`` SQS destination if one is declared; without
        one the event is gone, as in AWS, and only :attr:`errors` says so.
        """
        attempts = 1 + int(fn.async_config.get("MaximumRetryAttempts", 2))
        request_id = str(uuid.uuid4())
        for attempt in range(1, attempts + 1):
            try:
                return fn.invoke(event)
            except Exception as exc:  # recorded and retried, then sent to the failure destination
                self.errors.append(f"{fn.logical_id}: {type(exc).__name__}")
                error = exc
            if attempt < attempts:
                self._stop.wait(self.async_retry_delay_s)
        destination = fn.async_config.get("DestinationConfig", {}).get("OnFailure", {})
        if destination.get("Type") == "SQS":
            record = failure_record(fn, event, error, request_id=request_id, attempts=attempts)
            queue_name = str(destination["Destination"]).rsplit(":", 1)[-1]
            sqs = self.stack.client("sqs")
            sqs.send_message(QueueUrl=sqs.get_queue_url(QueueName=queue_name)["QueueUrl"], MessageBody=record)
        return _FAILED


_FAILED = object()


def failure_record(fn: Function, event: dict[str, Any], error: Exception, *, request_id: str, attempts: int) -> str:
    """Lambda's record of an asynchronous invocation that exhausted its retries, as sent to OnFailure."""
    return json.dumps(
        {
            "version": "1.0",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "requestContext": {
                "requestId": request_id,
                "functionArn": f"arn:aws:lambda:us-east-1:123456789012:function:{fn.logical_id}:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": attempts,
            },
            "requestPayload": event,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": {
                "errorMessage": str(error),
                "errorType": type(error).__name__,
                "requestId": request_id,
                "stackTrace": traceback.format_tb(error.__traceback__),
            },
        }
    )


def receive_batch(sqs: Any, queue_url: str, limit: int) -> list[dict[str, Any]]:
    """Up to ``limit`` messages now (no long poll), ten a call, with the attributes the event source
    mapping passes on: one batch for a worker invocation, as the benches drive the handler."""
    messages: list[dict[str, Any]] = []
    while len(messages) < limit:
        got = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=min(10, limit - len(messages)),
            WaitTimeSeconds=0,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not got:
            break
        messages += got
    return messages


def sqs_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    """One record of an SQS event, as the Lambda event source mapping builds it."""
    attributes = message.get("Attributes", {})
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {
            "ApproximateReceiveCount": attributes.get("ApproximateReceiveCount", "1"),
            "SentTimestamp": attributes.get("SentTimestamp", str(int(time.time() * 1000))),
            "SenderId": attributes.get("SenderId", "AIDAEXAMPLE"),
            "ApproximateFirstReceiveTimestamp": attributes.get("ApproximateFirstReceiveTimestamp", "0"),
        },
        "messageAttributes": {
            k: {
                "stringValue": v.get("StringValue"),
                "binaryValue": v.get("BinaryValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": v["DataType"],
            }
            for k, v in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": "us-east-1",
    }


def pattern_matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """The subset of EventBridge pattern matching the template uses: exact values and prefixes."""
    for key, expected in pattern.items():
        actual = event.get(key)
        if isinstance(expected, dict):
            if not isinstance(actual, dict) or not pattern_matches(expected, actual):
                return False
            continue
        if not any(_value_matches(option, actual) for option in expected):
            return False
    return True


def _value_matches(option: Any, actual: Any) -> bool:
    if isinstance(option, dict) and "prefix" in option:
        return isinstance(actual, str) and actual.startswith(str(option["prefix"]))
    return bool(option == actual)
