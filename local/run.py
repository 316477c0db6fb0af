"""``make run``: the whole system on this one machine.

Starts :class:`~local.system.LocalSystem` (the local AWS stack provisioned from template.yaml, the
Salesforce, Graph and Google sandboxes with seed data, and every function behind the local runner),
prints every endpoint and the env-vars file for ``sam local invoke``, and stays up until Ctrl-C
(SIGINT) or SIGTERM, then stops everything it started: no process is left behind, and no file of
this run either (the env-vars file, the sandboxes' CA bundle). A Ctrl-C while starting abandons
the start at its next step and stops what had started.

``--bind ADDRESS`` (``make run BIND=0.0.0.0``) lets a function in a Docker container reach the AWS
half; the env-vars file then names this machine ``host.docker.internal`` (README: "Trying a
function on a laptop with Docker").
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

from local.aws.stack import ROOT
from local.system import LocalSystem, StartInterrupted

READY_LINE = "concord: ready"
ENV_VARS_FILE = ROOT / ".local" / "env.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bind", default="127.0.0.1", help="address the AWS half listens on (default 127.0.0.1)")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        # Only a flag: an exception raised into the middle of a step could orphan a child process.
        print(f"\nconcord: {signal.Signals(signum).name} received, shutting down", flush=True)
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    started = time.monotonic()
    system = LocalSystem(
        bind=args.bind,
        env_vars_path=ENV_VARS_FILE,
        stop_requested=stop,
        on_step=lambda step: print(f"concord: {step}", flush=True),
    )
    try:
        with system:
            code = serve(system, stop, time.monotonic() - started)
    except StartInterrupted as interrupted:
        print(f"concord: {interrupted}; everything started so far is stopped", flush=True)
        return 130
    finally:
        # This process made the bundle (the sandboxes' CA, made on first use) and is its only user.
        if system.ca_bundle is not None:
            Path(system.ca_bundle).unlink(missing_ok=True)
    if code == 0:
        print("concord: stopped cleanly", flush=True)
    return code


def serve(system: LocalSystem, stop: threading.Event, took_s: float) -> int:
    """Print where everything is, then report function errors until asked to stop."""
    stack = system.stack
    print(f"concord: up in {took_s:.1f}s", flush=True)
    for name, url in system.endpoints().items():
        print(f"  {name:<48} {url}")
    print(f"  {'env-vars file for sam local invoke':<48} {system.env_vars_path}")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
