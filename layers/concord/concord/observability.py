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
:func:`trace_httpx` first.

The Tracer exists only where tracing is on. Creating Powertools' ``Tracer`` imports the X-Ray SDK
(``aws_xray_sdk.core``: about a quarter of a second of cold start, compiled from source as Lambda
does) even when it then disables itself. So :data:`tracer` is the real ``Tracer`` in Lambda (Active
tracing: ``LAMBDA_TASK_ROOT`` set, ``POWERTOOLS_TRACE_DISABLED`` not true, not ``sam local``; the
same rule Powertools applies) and a :class:`NoTracer` elsewhere (tests, ``make run``, the benches),
whose decorators return the function they are given.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from aws_lambda_powertools import Tracer

__all__ = ["MetricUnit", "NoTracer", "correlate", "logger", "metrics", "trace_httpx", "tracer", "tracing_enabled"]

_F = TypeVar("_F", bound="Callable[..., Any]")
_TRUE = frozenset({"1", "y", "yes", "t", "true", "on"})


def tracing_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Powertools' own rule: on in Lambda, off when disabled by variable, outside Lambda, in emulators."""
    env = os.environ if environ is None else environ
    if env.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() in _TRUE:
        return False
    return bool(env.get("LAMBDA_TASK_ROOT")) and not (env.get("AWS_SAM_LOCAL") or env.get("AWS_CHALICE_CLI_MODE"))


class NoTracer:
    """Tracing off: the Tracer's decorators and calls, doing nothing (and importing nothing)."""

    disabled = True

    def capture_lambda_handler(self, lambda_handler: _F | None = None, **_: Any) -> Any:
        return lambda_handler if lambda_handler is not None else (lambda function: function)

    def capture_method(self, method: _F | None = None, **_: Any) -> Any:
        return method if method is not None else (lambda function: function)

    def patch(self, modules: Sequence[str] | None = None) -> None:
        return None

    def put_annotation(self, key: str, value: Any) -> None:
        return None

    def put_metadata(self, key: str, value: Any, namespace: str | None = None) -> None:
        return None


def _make_tracer() -> Tracer | NoTracer:
    if not tracing_enabled():
        return NoTracer()
    from aws_lambda_powertools import Tracer

    return Tracer(patch_modules=("botocore",))


logger = Logger()
tracer = _make_tracer()
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
