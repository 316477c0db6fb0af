"""The sync worker's Lambda process for ``bench.worker``: nothing but the handler, so its peak RSS is the worker's.

``bench.worker`` starts ``python -m bench.worker_process`` with the function's environment (as Lambda
would give it) and plays the SQS event source itself: it writes one JSON line per invocation on this
process's stdin, ``{"event": <SQS event>}`` (or ``{"stats": true}`` to read the counters only), and reads
one JSON line back per line written. The answer carries the handler's result and this process's
cumulative counters: DynamoDB requests per operation and table (counted at the one connection the
worker's stores share, which ``bootstrap`` makes), the API calls the worker's own clients counted, and
its peak RSS (``VmHWM``, see :func:`_maxrss_kb`: the whole interpreter, as Lambda's memory figure is).

The handler logs and prints EMF metrics to stdout, as in Lambda; those go to the file named by
``BENCH_WORKER_LOG`` (or nowhere), and the answers go to the stdout this process was started with.
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

APP = Path(__file__).resolve().parent.parent / "functions" / "sync_worker" / "app.py"


@dataclass
class Context:
    """What the handler and Powertools ask of Lambda's context object."""

    function_name: str
    memory_limit_in_mb: int
    timeout_s: float
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "bench"
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_s - (time.monotonic() - self.started)) * 1000))


def _maxrss_kb() -> int:
    """This process's peak resident memory in KiB: ``VmHWM``, the high-water mark of its own address space.

    Not ``ru_maxrss``: on Linux, exec carries the high-water mark of the address space it replaces into
    ``ru_maxrss`` (``setmax_mm_hiwater_rss`` in ``exec_mmap``), and ``subprocess`` starts this process by
    vfork, so ``ru_maxrss`` would report the bench process's memory, sandboxes and all.
    """
    if os.path.exists("/proc/self/status"):
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # elsewhere: the best figure there is


def main() -> None:
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    log_path = os.environ.get("BENCH_WORKER_LOG") or os.devnull
    os.dup2(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), 1)
    started_kb = _maxrss_kb()

    spec = importlib.util.spec_from_file_location("sync_worker_app", APP)
    assert spec is not None and spec.loader is not None
    app = importlib.util.module_from_spec(spec)
    cold_start = time.perf_counter()
    spec.loader.exec_module(app)
    cold_start_s = time.perf_counter() - cold_start
    loaded_kb = _maxrss_kb()

    dynamodb = app.service.links.dynamodb  # the one connection bootstrap gave the worker's three stores
    operations: Counter[str] = Counter()
    count_and_send = dynamodb.connection.dispatch

    def dispatch(operation_name: str, operation_kwargs: dict[str, Any]) -> dict[str, Any]:
        tables = {operation_kwargs.get("TableName", ""), *operation_kwargs.get("RequestItems", {})}
        for item in operation_kwargs.get("TransactItems", []):
            tables.update(action.get("TableName", "") for action in item.values())
        operations[f"{operation_name} {'+'.join(sorted(tables - {''})) or '-'}"] += 1
        return count_and_send(operation_name, operation_kwargs)

    # The connection counts requests itself; this adds which operation on which table, for the report.
    dynamodb.connection.dispatch = dispatch

    timeout_s = float(os.environ.get("BENCH_WORKER_TIMEOUT_S", "120"))
    memory_mb = int(os.environ.get("BENCH_WORKER_MEMORY_MB", "1024"))
    service = app.service
    for line in sys.stdin:
        command = json.loads(line)
        result: Any = None
        if "event" in command:
            result = app.lambda_handler(command["event"], Context("SyncWorkerFunction", memory_mb, timeout_s))
        calls = {"salesforce": service.crm.calls()}
        calls.update({provider: mailbox.calls() for provider, mailbox in service.mailboxes.items()})
        answer = {
            "result": result,
            "dynamodb_requests": dynamodb.requests,
            "dynamodb_operations": dict(operations),
            "worker_calls": calls,
            "maxrss_kb": _maxrss_kb(),
            "started_kb": started_kb,
            "loaded_kb": loaded_kb,
            "cold_start_s": cold_start_s,
        }
        answers.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
