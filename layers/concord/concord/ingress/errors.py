"""The one error the ingress parsers and authenticators raise."""

from __future__ import annotations

__all__ = ["Rejected"]


class Rejected(Exception):
    """The request is refused with HTTP ``status`` (4xx, or 503 when *we* cannot decide now).

    ``reason`` is shown to the caller and logged, so it is always a fixed phrase or names only
    non-secret ids: never a token, a clientState, a SessionId or a field value.
    """

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"{status}: {reason}")
