"""The little HTTP layer the webhook apps need: REST API (v1) proxy events in, proxy answers out.

Why not Powertools' ``APIGatewayRestResolver``: importing ``aws_lambda_powertools.event_handler``
pulls in every resolver (AppSync, Bedrock, VPC Lattice …), asyncio and the data classes: about a
quarter of a second of a webhook's cold start, compiled from source as Lambda does, for what is
here an exact (method, path) lookup. Answers keep the resolver's shape (``multiValueHeaders``), so
API Gateway, ``sam local`` and the tests see the same thing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from concord.ingress.errors import Rejected

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["JSON", "TEXT", "Headers", "HttpRequest", "HttpResponse", "Routes"]

JSON = "application/json"
TEXT = "text/plain"


class Headers(Mapping[str, str]):
    """Request headers, looked up without regard to case (HTTP header names are case-insensitive)."""

    __slots__ = ("_items",)

    def __init__(self, raw: Mapping[str, Any] | None) -> None:
        self._items = {str(k).lower(): str(v) for k, v in (raw or {}).items() if v is not None}

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """What a route reads of an API Gateway REST proxy event."""

    method: str
    path: str
    headers: Headers
    query: Mapping[str, str] | None
    body: str | None
    is_base64_encoded: bool

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> HttpRequest:
        return cls(
            method=str(event.get("httpMethod") or "").upper(),
            path=str(event.get("resource") or event.get("path") or ""),
            headers=Headers(event.get("headers")),
            query=event.get("queryStringParameters") or None,
            body=event.get("body"),
            is_base64_encoded=bool(event.get("isBase64Encoded")),
        )


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status_code: int
    content_type: str
    body: str

    def to_proxy(self) -> dict[str, Any]:
        """The answer as API Gateway expects it from a proxy integration."""
        return {
            "statusCode": self.status_code,
            "body": self.body,
            "isBase64Encoded": False,
            "multiValueHeaders": {"Content-Type": [self.content_type]},
        }


class Routes:
    """Exact ``(method, path)`` routes; :class:`Rejected` raised by a route goes to ``on_rejected``."""

    def __init__(self, on_rejected: Callable[[Rejected], HttpResponse]) -> None:
        self._routes: dict[tuple[str, str], Callable[[HttpRequest], HttpResponse]] = {}
        self._on_rejected = on_rejected

    def post(self, path: str, handler: Callable[[HttpRequest], HttpResponse]) -> None:
        self._routes["POST", path] = handler

    def resolve(self, event: Mapping[str, Any]) -> dict[str, Any]:
        request = HttpRequest.from_event(event)
        handler = self._routes.get((request.method, request.path))
        if handler is None:
            return HttpResponse(404, JSON, json.dumps({"statusCode": 404, "message": "Not found"})).to_proxy()
        try:
            return handler(request).to_proxy()
        except Rejected as error:
            return self._on_rejected(error).to_proxy()
