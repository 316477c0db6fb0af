"""The one place that creates the Powertools Logger, Tracer and Metrics.

Every handler and module imports these three objects from here, so there is one logger
configuration, one tracer (one set of patched libraries) and one metrics buffer per process.
Configuration comes from the environment that ``template.yaml`` sets:
``POWERTOOLS_SERVICE_NAME`` (the function family, also the metrics ``service`` dimension),
``POWERTOOLS_METRICS_NAMESPACE`` (``Concord``), ``POWERTOOLS_LOG_LEVEL``.

Correlation: the ingress functions log under the API Gateway request id (or the EventBridge event
id) until a change notice exists; the worker sets each record's correlation id to the change
notice's id (:func:`correlate`), so one notice can be followed from ingress to the sync log.

Tracing patches only ``botocore`` at import (boto3, pynamodb and Powertools' own clients all go
through it). Patching every library X-Ray knows would import httpx, pynamodb and more at cold start
whether or not the function uses them; an adapter that builds an httpx client calls
:func:`trace_httpx` first. Outside Lambda (tests, ``make run``) the tracer disables itself.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

__all__ = ["MetricUnit", "correlate", "logger", "metrics", "trace_httpx", "tracer"]

logger = Logger()
tracer = Tracer(patch_modules=("botocore",))
# The template sets POWERTOOLS_METRICS_NAMESPACE; the default keeps a process that lacks it (a tool,
# a test) from failing at its first metrics flush.
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "Concord")

_httpx_traced = False


def trace_httpx() -> None:
    """Patch httpx for X-Ray once per process; call it before creating an httpx client."""
    global _httpx_traced  # noqa: PLW0603 - a once-per-process flag is the point
    if not _httpx_traced:
        tracer.patch(("httpx",))
        _httpx_traced = True


def correlate(notice_id: str | None) -> None:
    """Log what follows under a change notice's id (``None`` clears it)."""
    logger.set_correlation_id(notice_id)
