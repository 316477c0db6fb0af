"""Ingress unit tests: fakes for the queue, the idempotency store and the channel lookup; no sockets."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Concord")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "ingress-tests")

from concord.observability import metrics  # noqa: E402 - the namespace must be set before Metrics is built

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(autouse=True)
def _fresh_metrics() -> Iterator[None]:
    yield
    metrics.clear_metrics()
