"""``make run``: the whole system on this one machine.

Starts :class:`~local.system.LocalSystem` (the local AWS stack provisioned from template.yaml, the
Salesforce, Graph and Google sandboxes with seed data, and every function behind the local runner),
prints every endpoint, and stays up until Ctrl-C (SIGINT) or SIGTERM, then stops everything it
started: no process is left behind.
"""

from __future__ import annotations

import signal
import sys
import threading
import time

from local.system import LocalSystem

READY_LINE = "concord: ready"


def main() -> int:
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        print(f"\nconcord: {signal.Signals(signum).name} received, shutting down", flush=True)
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    started = time.monotonic()
    with LocalSystem() as system:
        stack = system.stack
        print(f"concord: up in {time.monotonic() - started:.1f}s", flush=True)
        for name, url in system.endpoints().items():
            print(f"  {name:<48} {url}")
        print("  environment for functions, the CLI and boto3:")
        for key, value in sorted(stack.env.items()):
            if not key.startswith("AWS_SECRET") and key != "AWS_SESSION_TOKEN":
                print(f"    {key}={value}")
        print(READY_LINE + " (Ctrl-C to stop)", flush=True)
        reported = 0
        while not stop.wait(0.5):
            for error in system.runner.errors[reported:]:
                print(f"concord: function error: {error}", file=sys.stderr, flush=True)
            reported = len(system.runner.errors)
            for server in (stack.dynamodb, stack.moto):
                if server.process is not None and server.process.poll() is not None:
                    print(f"concord: {server.name} exited unexpectedly; see {server.log}", file=sys.stderr)
                    return 1
    print("concord: stopped cleanly", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
