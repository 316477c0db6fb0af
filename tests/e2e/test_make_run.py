"""`make run`, exactly as the README shows it, from a shell with nothing exported: it comes up,
serves, and goes down on Ctrl-C (SIGINT to its process group, as a terminal sends it) with no
process and no file of its own left behind, whether it had finished starting or not."""

from __future__ import annotations

from pathlib import Path

import boto3
import httpx
import pytest

from tests.e2e.make_run import ROOT, MakeRun, printed
from tests.e2e.processes import alive, descendants


def test_make_run_serves_the_provisioned_stack_and_stops_cleanly_on_ctrl_c(make_run: MakeRun) -> None:
    make_run.wait_for("ready")
    output = make_run.output
    started = descendants(make_run.process.pid)
    assert len(started) >= 3, f"make, python, DynamoDB Local and moto should all be below make: {started}"

    # WHEN a client uses the printed endpoints: a webhook route, the queue and the tables
    webhooks = printed(output, "webhooks (API Gateway)")
    answer = httpx.post(f"{webhooks}/graph/notifications", params={"validationToken": "ping"}, timeout=10)
    assert (answer.status_code, answer.text) == (200, "ping")
    queue_url, moto_url = printed(output, "CHANGES_QUEUE_URL"), printed(output, "AWS_ENDPOINT_URL")
    sqs = boto3.client("sqs", endpoint_url=moto_url, region_name="us-east-1")
    assert sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    # (the running worker polls the changes queue, so a round trip goes through a queue of the test's own)
    probe = sqs.create_queue(QueueName="make-run-probe")["QueueUrl"]
    sqs.send_message(QueueUrl=probe, MessageBody="hello")
    assert sqs.receive_message(QueueUrl=probe)["Messages"][0]["Body"] == "hello"
    ddb_url = printed(output, "AWS_ENDPOINT_URL_DYNAMODB")
    assert "LinksTable" in boto3.client("dynamodb", endpoint_url=ddb_url).list_tables()["TableNames"]
    env_file, ca_bundle = (
        Path(printed(output, "env-vars file for sam local invoke")),
        printed(output, "sandbox CA bundle"),
    )
    assert env_file.is_file()
    assert Path(ca_bundle).is_file()

    # THEN Ctrl-C stops it, with every process and every file of this run gone
    make_run.ctrl_c()
    assert "concord: stopped cleanly" in make_run.output, make_run.output
    assert not alive(started), f"left running:\n{make_run.output}"
    with pytest.raises(httpx.TransportError):
        httpx.get(moto_url, timeout=1)  # nothing listens any more
    assert not env_file.exists()
    assert not Path(ca_bundle).exists()


def test_ctrl_c_while_make_run_is_starting_stops_what_had_started(make_run: MakeRun) -> None:
    # GIVEN DynamoDB Local and moto launched but not yet answering
    make_run.wait_for("AWS servers launched")
    started = descendants(make_run.process.pid)
    assert len(started) >= 3, make_run.output

    # WHEN Ctrl-C arrives in the middle of the start
    make_run.ctrl_c()

    # THEN the start is abandoned and nothing it had started is left
    assert "start interrupted" in make_run.output, make_run.output
    assert "concord: ready" not in make_run.output
    assert not alive(started), f"left running:\n{make_run.output}"
    assert not (ROOT / ".local" / "env.json").exists()
