"""The webhooks' HTTP layer (proxy events in, proxy answers out) and the tracer stand-in used outside Lambda."""

from __future__ import annotations

from typing import Any

import pytest

from concord.ingress.apps.routes import JSON, TEXT, Headers, HttpRequest, HttpResponse, Routes
from concord.ingress.errors import Rejected
from concord.observability import NoTracer, tracing_enabled
from tests.support.events import load_event


def _routes() -> Routes:
    def echo(request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, TEXT, request.headers.get("x-goog-channel-id") or "")

    def refuse(request: HttpRequest) -> HttpResponse:
        raise Rejected(403, "no")

    routes = Routes(lambda error: HttpResponse(error.status, JSON, error.reason))
    routes.post("/google/calendar", echo)
    routes.post("/refuse", refuse)
    return routes


def test_answers_in_the_rest_proxy_shape_and_headers_ignore_case() -> None:
    event = load_event("google_webhook/calendar_notification")
    answer = _routes().resolve(event)
    assert answer == {
        "statusCode": 200,
        "body": event["headers"]["X-Goog-Channel-ID"],
        "isBase64Encoded": False,
        "multiValueHeaders": {"Content-Type": [TEXT]},
    }


@pytest.mark.parametrize(("method", "path"), [("POST", "/nowhere"), ("GET", "/google/calendar")])
def test_unknown_route_or_method_is_404(method: str, path: str) -> None:
    event: dict[str, Any] = {"httpMethod": method, "path": path, "resource": path, "headers": None, "body": None}
    answer = _routes().resolve(event)
    assert answer["statusCode"] == 404
    assert answer["multiValueHeaders"] == {"Content-Type": [JSON]}


def test_rejected_goes_to_the_handler_given() -> None:
    answer = _routes().resolve({"httpMethod": "POST", "resource": "/refuse", "path": "/refuse"})
    assert (answer["statusCode"], answer["body"]) == (403, "no")


def test_headers_mapping() -> None:
    headers = Headers({"Authorization": "Bearer x", "X-Empty": None})
    assert headers["authorization"] == headers.get("AUTHORIZATION") == "Bearer x"
    assert "x-empty" not in headers and len(headers) == 1 and list(headers) == ["authorization"]


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
