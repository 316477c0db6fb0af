"""Test-session wiring shared by every tier.

Nothing may leave the machine: dummy AWS credentials and region are set before anything imports
boto3, so no test can reach real AWS or the instance metadata service by accident.

``local_stack`` starts DynamoDB Local and the patched moto server once per session (10-15 s) and
provisions them from template.yaml; ``aws`` hands a test that stack with empty tables and queues.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from local.aws.stack import OFFLINE_ENV, LocalStack

if TYPE_CHECKING:
    from collections.abc import Iterator

for _key, _value in OFFLINE_ENV.items():
    os.environ[_key] = _value
for _key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
    os.environ.pop(_key, None)
# Whatever test first imports concord.observability fixes its service name for the session.
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "concord-tests")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Concord")


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    with LocalStack() as stack:
        yield stack


@pytest.fixture
def aws(local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalStack]:
    """The local stack with fresh state, and this process's environment pointed at it."""
    local_stack.reset()
    for key, value in local_stack.env.items():
        monkeypatch.setenv(key, value)
    yield local_stack
