"""How GoogleClient reads Google's error bodies, including shapes the sandbox never produces."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from concord.adapters.google import classify, classify_token
from concord.adapters.http import (
    AuthError,
    ConflictError,
    NotFoundError,
    PermanentError,
    ResyncRequired,
    TokenExpired,
    TransientError,
)


def _response(
    status: int, body: object, url: str = "https://www.googleapis.com/calendar/v3/x", **headers: str
) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers, request=httpx.Request("GET", url))


def _classic(status: int, reason: str, status_name: str = "") -> dict[str, Any]:
    error: dict[str, Any] = {
        "code": status,
        "message": reason,
        "errors": [{"domain": "global", "reason": reason, "message": reason}],
    }
    if status_name:
        error["status"] = status_name
    return {"error": error}


@pytest.mark.parametrize(
    ("status", "body", "url", "expected"),
    [
        (401, _classic(401, "authError", "UNAUTHENTICATED"), "https://g/calendar/v3/x", TokenExpired),
        (403, _classic(403, "rateLimitExceeded"), "https://g/calendar/v3/x", TransientError),
        (403, _classic(403, "userRateLimitExceeded"), "https://g/calendar/v3/x", TransientError),
        (403, _classic(403, "quotaExceeded"), "https://g/calendar/v3/x", TransientError),
        (403, _classic(403, "forbidden", "PERMISSION_DENIED"), "https://g/gmail/v1/users/a/profile", AuthError),
        (410, _classic(410, "fullSyncRequired"), "https://g/calendar/v3/calendars/primary/events", ResyncRequired),
        (410, _classic(410, "deleted"), "https://g/calendar/v3/calendars/primary/events/e1", NotFoundError),
        (412, _classic(412, "conditionNotMet"), "https://g/calendar/v3/calendars/primary/events/e1", ConflictError),
        (404, _classic(404, "notFound", "NOT_FOUND"), "https://g/gmail/v1/users/me/history", ResyncRequired),
        (404, _classic(404, "notFound", "NOT_FOUND"), "https://g/gmail/v1/users/me/messages/1", NotFoundError),
        (
            400,
            _classic(400, "failedPrecondition", "FAILED_PRECONDITION"),
            "https://g/gmail/v1/users/me/history",
            PermanentError,
        ),
        (
            400,
            {"error": {"code": 400, "message": "stale", "status": "FAILED_PRECONDITION"}},
            "https://p/v1/people/c1:updateContact",
            ConflictError,
        ),
        (
            400,
            {
                "error": {
                    "code": 400,
                    "message": "Sync token is expired.",
                    "status": "FAILED_PRECONDITION",
                    "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "EXPIRED_SYNC_TOKEN"}],
                }
            },
            "https://p/v1/people/me/connections",
            ResyncRequired,
        ),
        (502, "<html>Bad Gateway</html>", "https://g/calendar/v3/x", TransientError),
    ],
)
def test_error_shapes(status: int, body: object, url: str, expected: type) -> None:
    error = classify(_response(status, body, url))
    assert type(error) is expected


def test_success_is_none_and_retry_after_is_read() -> None:
    assert classify(_response(200, {})) is None
    error = classify(_response(429, _classic(429, "rateLimitExceeded"), **{"Retry-After": "7"}))
    assert isinstance(error, TransientError) and error.retry_after == 7


def test_token_endpoint_errors() -> None:
    refused = classify_token(_response(400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}))
    assert isinstance(refused, AuthError) and refused.code == "invalid_grant"
    assert isinstance(classify_token(_response(503, "oops")), TransientError)
    odd = classify_token(_response(401, {"error": {"code": 401}}))
    assert isinstance(odd, AuthError) and odd.code is None


def _newer(status: int, reason: str, status_name: str) -> dict[str, Any]:
    """The shape of newer Google APIs (People): the reason in an ``ErrorInfo`` detail, no ``errors[]``."""
    detail = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com"}
    return {"error": {"code": status, "message": reason, "status": status_name, "details": [detail]}}


@pytest.mark.parametrize(
    "body",
    [
        _classic(403, "rateLimitExceeded"),
        _classic(403, "userRateLimitExceeded"),
        _newer(403, "RATE_LIMIT_EXCEEDED", "PERMISSION_DENIED"),
        _newer(403, "rateLimitExceeded", "PERMISSION_DENIED"),
        _newer(403, "userRateLimitExceeded", "PERMISSION_DENIED"),
        {"error": {"code": 403, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}},
    ],
)
def test_403_rate_limits_are_transient_with_backoff(body: dict[str, Any]) -> None:
    error = classify(_response(403, body, "https://p/v1/people/me/connections"))
    assert isinstance(error, TransientError) and error.retry_after is None  # the transport's own backoff


@pytest.mark.parametrize(
    "body", [_classic(403, "dailyLimitExceeded"), _newer(403, "dailyLimitExceeded", "PERMISSION_DENIED")]
)
def test_a_spent_daily_quota_is_deferred_not_an_auth_error(body: dict[str, Any]) -> None:
    error = classify(_response(403, body))
    assert isinstance(error, TransientError)
    assert error.retry_after is not None and error.retry_after >= 3600  # beyond any invocation: handed back
