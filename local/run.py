"""``make run``: the whole system on this one machine.

Starts the local AWS stack (DynamoDB Local and moto, provisioned from template.yaml), prints every
endpoint, and stays up until Ctrl-C (SIGINT) or SIGTERM, then stops everything it started: no
process is left behind.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from contextlib import ExitStack

from local.aws.stack import LocalStack

READY_LINE = "concord: ready"


def main() -> int:
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        print(f"\nconcord: {signal.Signals(signum).name} received, shutting down", flush=True)
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    started = time.monotonic()
    with ExitStack() as running:
        stack = running.enter_context(LocalStack())
        print(f"concord: local AWS stack up in {time.monotonic() - started:.1f}s", flush=True)
        print(f"  DynamoDB Local   {stack.dynamodb.url}")
        print(f"  moto (SQS, Secrets Manager, SSM, EventBridge)   {stack.moto.url}")
        print("  environment for functions, the CLI and boto3:")
        for key, value in sorted(stack.env.items()):
            if not key.startswith("AWS_SECRET") and key != "AWS_SESSION_TOKEN":
                print(f"    {key}={value}")
        print(READY_LINE + " (Ctrl-C to stop)", flush=True)
        while not stop.wait(0.5):
            for server in (stack.dynamodb, stack.moto):
                if server.process is not None and server.process.poll() is not None:
                    print(f"concord: {server.name} exited unexpectedly; see {server.log}", file=sys.stderr)
                    return 1
    print("concord: stopped cleanly", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
