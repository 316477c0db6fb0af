"""The webhooks' HTTP layer (Powertools' REST resolver, proxy events in and out) and the tracer stand-in."""

from __future__ import annotations

from typing import Any

import pytest
from aws_lambda_powertools.event_handler import Response

from concord.ingress.apps.common import JSON, TEXT, json_error, webhook_resolver
from concord.ingress.errors import Rejected
from concord.observability import NoTracer, tracing_enabled
from tests.support.events import load_event
from tests.unit.ingress.helpers import CONTEXT


def _resolve(event: dict[str, Any]) -> dict[str, Any]:
    app = webhook_resolver(lambda error: json_error(error.status, error.reason))

    @app.post("/google/calendar")
    def echo() -> Response[str]:
        # Header names are matched without regard to case, as HTTP requires.
        channel = app.current_event.headers.get("x-goog-channel-id") or ""
        return Response(status_code=200, content_type=TEXT, body=channel)

    @app.post("/refuse")
    def refuse() -> Response[str]:
        raise Rejected(403, "no")

    return app.resolve(event, CONTEXT)


def _event(method: str, path: str) -> dict[str, Any]:
    return {"httpMethod": method, "path": path, "resource": path, "headers": None, "body": None}


def test_answers_in_the_rest_proxy_shape_and_headers_ignore_case() -> None:
    event = load_event("google_webhook/calendar_notification")
    answer = _resolve(event)
    assert answer["statusCode"] == 200
    assert answer["body"] == event["headers"]["X-Goog-Channel-ID"]
    assert answer["isBase64Encoded"] is False
    assert answer["multiValueHeaders"]["Content-Type"] == [TEXT]


@pytest.mark.parametrize(("method", "path"), [("POST", "/nowhere"), ("GET", "/google/calendar")])
def test_unknown_route_or_method_is_404(method: str, path: str) -> None:
    answer = _resolve(_event(method, path))
    assert answer["statusCode"] == 404
    assert answer["multiValueHeaders"]["Content-Type"] == [JSON]


def test_rejected_goes_to_the_handler_given() -> None:
    answer = _resolve(_event("POST", "/refuse"))
    assert (answer["statusCode"], answer["body"]) == (403, '{"error": "no"}')


@pytest.mark.parametrize(
    ("environ", "enabled"),
    [
        ({}, False),
        ({"LAMBDA_TASK_ROOT": "/var/task"}, True),
        ({"LAMBDA_TASK_ROOT": "/var/task", "POWERTOOLS_TRACE_DISABLED": "true"}, False),
        ({"LAMBDA_TASK_ROOT": "/var/task", "AWS_SAM_LOCAL": "true"}, False),
    ],
)
def test_tracing_is_on_only_in_lambda(environ: dict[str, str], enabled: bool) -> None:
    assert tracing_enabled(environ) is enabled


def test_no_tracer_leaves_functions_as_they_are() -> None:
    def handler(event: dict[str, Any], context: Any) -> str:
        return "done"

    tracer = NoTracer()
    assert tracer.capture_lambda_handler(handler) is handler
    assert tracer.capture_method(handler) is handler
    assert tracer.capture_method(capture_response=False)(handler) is handler
