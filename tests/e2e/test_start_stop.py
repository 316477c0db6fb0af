"""A start of the local system that fails or is interrupted stops everything it had started, and the
env-vars file it writes for `sam local invoke` describes the system that is running."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from local.runner import LOCAL_PARAMETERS
from local.sandboxes import seed
from local.system import CONTAINER_HOST, GMAIL_TOPIC, LocalSystem, StartInterrupted
from tests.e2e.processes import alive, descendants, listening_address

if TYPE_CHECKING:
    from collections.abc import Callable


class SeedFailed(RuntimeError):
    pass


def _start(system: LocalSystem) -> None:
    with system:
        raise AssertionError("the start should not have finished")


class Steps:
    """Records each step of the start (and each sandbox's URL while it is up); may act at one step."""

    def __init__(self, system: LocalSystem, at: str, action: Callable[[], None]):
        self.system, self.at, self.action = system, at, action
        self.sandbox_urls: list[str] = []
        system.on_step = self

    def __call__(self, step: str) -> None:
        if step.endswith(" sandbox started"):
            self.sandbox_urls.append(getattr(self.system, step.split()[0]).url)
        if step == self.at:
            self.action()

    def assert_nothing_left(self, before: set[int]) -> None:
        stack = self.system.stack
        servers = {s.process.pid for s in (stack.dynamodb, stack.moto) if s.process is not None}
        assert len(servers) == 2
        assert not alive(servers), "DynamoDB Local or moto left running"
        assert not alive(descendants(os.getpid()) - before)
        for url in self.sandbox_urls:
            with pytest.raises(httpx.TransportError):
                httpx.get(url, verify=False, timeout=1)


def _fail() -> None:
    raise SeedFailed("injected")


def test_a_start_that_fails_while_seeding_a_sandbox_stops_the_aws_servers_and_the_sandboxes(tmp_path: Path) -> None:
    before = descendants(os.getpid())
    system = LocalSystem(env_vars_path=tmp_path / "env.json")
    steps = Steps(system, at="graph sandbox seeded", action=_fail)

    with pytest.raises(SeedFailed):
        _start(system)

    assert len(steps.sandbox_urls) == 2  # Salesforce and Graph were serving
    steps.assert_nothing_left(before)
    assert not (tmp_path / "env.json").exists()


@pytest.mark.parametrize(
    "step",
    [
        "AWS servers launched",
        "AWS resources provisioned",
        "salesforce sandbox started",
        "secrets stored",
        "functions started",
        "env-vars file written",
    ],
)
def test_ctrl_c_at_any_step_of_the_start_stops_everything_started_so_far(tmp_path: Path, step: str) -> None:
    before = descendants(os.getpid())
    system = LocalSystem(env_vars_path=tmp_path / "env.json")
    steps = Steps(system, at=step, action=system.stop_requested.set)  # what make run's Ctrl-C handler does

    with pytest.raises(StartInterrupted) as interrupted:
        _start(system)

    assert interrupted.value.step == step
    steps.assert_nothing_left(before)
    assert not (tmp_path / "env.json").exists()


def test_the_env_vars_file_holds_the_running_systems_ports_secrets_and_seeded_settings(tmp_path: Path) -> None:
    path = tmp_path / "env.json"
    with LocalSystem(schedule_interval_s=3600, poll_queues=False, env_vars_path=path) as system:
        sections = json.loads(path.read_text())
        secrets = system.stack.client("secretsmanager")

        # SAM's per-function format, one section for every function of the template
        assert set(sections) == set(system.runner.functions)
        for function, env in sections.items():
            assert env["AWS_ENDPOINT_URL"] == system.stack.moto.url, function
            assert env["AWS_ENDPOINT_URL_DYNAMODB"] == system.stack.dynamodb.url, function
            assert env["SALESFORCE_ORG_ID"] == system.salesforce.org_id == seed.ORG_ID
            assert env["SALESFORCE_LOGIN_URL"] == system.salesforce.url
            assert env["GRAPH_BASE_URL"] == system.graph.graph_url
            assert env["GOOGLE_API_BASE_URL"] == system.google.url
            assert env["CA_BUNDLE"] == system.ca_bundle
            assert Path(env["CA_BUNDLE"]).is_file()
            for key in ("SALESFORCE_JWT_SECRET_ARN", "GRAPH_APP_SECRET_ARN", "GOOGLE_SERVICE_ACCOUNT_SECRET_ARN"):
                assert secrets.get_secret_value(SecretId=env[key])["SecretString"], (function, key)

        # variables only some functions declare carry this run's values too
        assert sections["SalesforceWebhookFunction"]["CHANGES_QUEUE_URL"] == system.stack.env["CHANGES_QUEUE_URL"]
        assert sections["SubscriptionsFunction"]["GOOGLE_PUSH_TOPIC"] == GMAIL_TOPIC
        assert sections["SubscriptionsFunction"]["WEBHOOK_BASE_URL"] == system.runner.url
        assert "LINKS_TABLE" not in sections["GraphWebhookFunction"]  # SAM passes only what is declared
        # the file's secret ARNs are the ones the functions are given
        assert sections["GraphWebhookFunction"]["GRAPH_APP_SECRET_ARN"] == LOCAL_PARAMETERS["GraphAppSecretArn"]

    assert not path.exists(), "a stale env-vars file outlived the system it describes"


def test_bound_off_loopback_the_stack_listens_there_and_the_file_names_the_docker_host(tmp_path: Path) -> None:
    path = tmp_path / "env.json"
    with LocalSystem(schedule_interval_s=3600, poll_queues=False, bind="0.0.0.0", env_vars_path=path) as system:
        env = json.loads(path.read_text())["SalesforceWebhookFunction"]

        assert listening_address(system.stack.moto.port) == "0.0.0.0"
        assert listening_address(system.stack.dynamodb.port) in ("0.0.0.0", "::")  # DynamoDB Local always does
        assert env["AWS_ENDPOINT_URL"] == f"http://{CONTAINER_HOST}:{system.stack.moto.port}"
        assert env["AWS_ENDPOINT_URL_DYNAMODB"] == f"http://{CONTAINER_HOST}:{system.stack.dynamodb.port}"
        assert env["CHANGES_QUEUE_URL"].startswith(f"http://{CONTAINER_HOST}:{system.stack.moto.port}/")
        assert env["CA_BUNDLE"] == ""  # a path on this machine means nothing inside a container


def test_by_default_moto_listens_on_loopback_only(tmp_path: Path) -> None:
    with LocalSystem(schedule_interval_s=3600, poll_queues=False) as system:
        assert listening_address(system.stack.moto.port) == "127.0.0.1"
