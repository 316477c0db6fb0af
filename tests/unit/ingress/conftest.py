"""Ingress unit tests: fakes for the queue, the idempotency store and the channel lookup; no sockets."""

from __future__ import annotations

import io
import logging
import os
from typing import TYPE_CHECKING

import pytest

os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Concord")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "ingress-tests")

from concord.observability import logger, metrics  # noqa: E402 - the namespace must be set before Metrics is built

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(autouse=True)
def _fresh_metrics() -> Iterator[None]:
    yield
    metrics.clear_metrics()


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """What Concord's logger writes during the test, formatted as in Lambda (JSON lines, extras included).

    capsys cannot see it: Powertools' handler holds the sys.stdout of the moment the logger was built.
    """
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    logger.addHandler(handler)
    yield stream
    logger.removeHandler(handler)
