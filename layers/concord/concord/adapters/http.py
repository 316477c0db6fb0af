"""The one HTTP policy every connector client shares: timeouts, retries, backoff and redaction.

Each client (Salesforce, Graph, Google) knows how *its* service says "try again" or "never"; it
expresses that in a ``classify`` function that turns a response into a typed error. Everything
else - how often to retry, how long to wait, honouring ``Retry-After`` without outliving the
Lambda's remaining time, and keeping secrets out of messages - lives here, once.

Why the retry budget is small: the worker runs inside a Lambda invocation fed by SQS. A call that
cannot succeed within the time left is better handed back to SQS (a :class:`TransientError`
reported as a batch item failure) than slept on until the invocation times out and the whole batch
is retried.
"""

from __future__ import annotations

import random
import re
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, TypeGuard

import httpx

DEFAULT_TIMEOUT = httpx.Timeout(connect=3.0, read=15.0, write=15.0, pool=3.0)

REDACTED = "***"


class ConnectorError(Exception):
    """Base of every error a connector raises. ``str()`` of it never contains a secret."""

    def __init__(self, system: str, message: str, *, status: int | None = None, code: str | None = None):
        self.system = system
        self.status = status
        self.code = code
        super().__init__(f"{system}: {message}" + (f" (HTTP {status}, {code})" if code else ""))


class TransientError(ConnectorError):
    """Worth retrying later: throttling, 5xx, timeouts, lock contention."""

    def __init__(
        self,
        system: str,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(system, message, status=status, code=code)
        self.retry_after = retry_after


class PermanentError(ConnectorError):
    """Retrying will not help until data or configuration changes (validation, bad field, ...)."""


class NotFoundError(PermanentError):
    """The record does not exist (or no longer does)."""


class AuthError(PermanentError):
    """Credentials were refused. Raised after the one allowed token refresh has failed too."""


class ConflictError(ConnectorError):
    """An optimistic-concurrency precondition failed (412, stale etag): re-read and plan again."""


class ResyncRequired(ConnectorError):
    """A delta cursor (delta link, sync token, history id) is no longer valid: start a full sync."""


class TokenExpired(ConnectorError):
    """The access token was refused as expired; the client refreshes it once and retries."""


@dataclass
class Redactor:
    """Removes known secret values, and anything shaped like a credential, from text.

    Secrets are registered as they become known (a fetched token, a loaded private key), so even a
    value that never matches a pattern cannot leak through an error message. Long-lived secrets
    (keys, client secrets) are kept for good; short-lived ones (access tokens, signed assertions),
    which a warm container mints without end, only the most recent ``recent_limit``: an expired token
    is no longer sent, so it can no longer come back in an answer.
    """

    recent_limit: int = 256
    _secrets: set[str] = field(default_factory=set)
    _recent: OrderedDict[str, None] = field(default_factory=OrderedDict)

    _PATTERNS = (
        re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
        re.compile(
            r"(?i)((?:access_token|refresh_token|id_token|client_secret|assertion|clientState|"
            r"token|sessionId|password|private_key)[\"']?\s*[:=]\s*[\"']?)[^\"'&\s,}<]+"
        ),
        re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S),
    )

    def add(self, *secrets: str | None) -> None:
        """Redact these for the life of the process (keys, client secrets)."""
        self._secrets.update(secret for secret in secrets if _redactable(secret))

    def add_short_lived(self, *secrets: str | None) -> None:
        """Redact these while they are among the ``recent_limit`` latest (tokens, assertions)."""
        for secret in secrets:
            if _redactable(secret):
                self._recent[secret] = None
                self._recent.move_to_end(secret)
        while len(self._recent) > self.recent_limit:
            self._recent.popitem(last=False)

    def __call__(self, text: str) -> str:
        for secret in sorted(self._secrets.union(self._recent), key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        for pattern in self._PATTERNS:
            text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, text)
        return text


def _redactable(secret: str | None) -> TypeGuard[str]:
    return secret is not None and len(secret) >= 6  # shorter values would redact ordinary words


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped by ``max_delay`` and by the time left."""

    max_attempts: int = 4
    base_delay: float = 0.2
    max_delay: float = 8.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        ceiling: float = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        backoff = ceiling * random.random()  # jitter, not crypto
        return max(backoff, retry_after or 0.0)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` is either delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def tls_verification(verify: str | bool) -> ssl.SSLContext | bool:
    """What httpx wants for ``verify``: a CA bundle path becomes an SSL context (httpx deprecates paths)."""
    return ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify


Classifier = Callable[[httpx.Response], ConnectorError | None]

#: Methods whose repetition cannot make a second record (RFC 9110 9.2.2). A POST is retried only when
#: its caller says so (``retry=True``: a token request, a read sent as POST, a create carrying an id
#: the service deduplicates on); a create answered by a timeout or a 5xx may have been committed.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class HttpTransport:
    """Sends requests with the shared policy. One per connector client.

    ``classify`` returns ``None`` for a usable response, or the typed error the response means.
    ``time_left`` returns the seconds the caller may still spend (the Lambda context's remaining
    time minus a margin); a wait that would not fit raises the :class:`TransientError` at once.
    """

    def __init__(
        self,
        system: str,
        classify: Classifier,
        *,
        client: httpx.Client | None = None,
        verify: str | bool = True,
        policy: RetryPolicy | None = None,
        redactor: Redactor | None = None,
        time_left: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        on_response: Callable[[httpx.Response], None] | None = None,
    ):
        self.system = system
        self.classify = classify
        self.client = client or httpx.Client(timeout=DEFAULT_TIMEOUT, verify=tls_verification(verify))
        self.policy = policy or RetryPolicy()
        self.redact = redactor or Redactor()
        self.time_left = time_left or (lambda: 30.0)
        self.sleep = sleep
        self.on_response = on_response
        self.calls = 0

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        json: Any = None,
        content: bytes | str | None = None,
        data: Mapping[str, str] | None = None,
        retry: bool | None = None,
    ) -> httpx.Response:
        """Send with the shared policy. ``retry`` defaults to whether ``method`` is idempotent
        (:data:`IDEMPOTENT_METHODS`): a POST or PATCH is retried only when the caller knows it is safe."""
        if retry is None:
            retry = method.upper() in IDEMPOTENT_METHODS
        attempt = 0
        while True:
            attempt += 1
            error = self._send_once(method, url, headers, params, json, content, data)
            if isinstance(error, httpx.Response):
                return error
            if not (retry and isinstance(error, TransientError)) or attempt >= self.policy.max_attempts:
                raise error
            wait = self.policy.delay(attempt, error.retry_after)
            if wait >= self.time_left():
                raise error
            self.sleep(wait)

    def _send_once(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        params: Any,
        json: Any,
        content: bytes | str | None,
        data: Mapping[str, str] | None,
    ) -> httpx.Response | ConnectorError:
        self.calls += 1
        try:
            response = self.client.request(
                method, url, headers=headers, params=params, json=json, content=content, data=data
            )
        except httpx.TimeoutException as exc:
            return TransientError(self.system, f"timed out: {type(exc).__name__} on {method} {self._path(url)}")
        except httpx.TransportError as exc:
            return TransientError(self.system, self.redact(f"transport error on {method} {self._path(url)}: {exc}"))
        if self.on_response is not None:
            self.on_response(response)
        problem = self.classify(response)
        if problem is None:
            return response
        problem.args = (self.redact(str(problem)),)
        return problem

    @staticmethod
    def _path(url: str) -> str:
        # Query strings can carry tokens (delta links, page tokens): show the path only.
        return httpx.URL(url).path

    def close(self) -> None:
        self.client.close()


def error_text(response: httpx.Response, limit: int = 300) -> str:
    """A short, printable excerpt of an error body for messages (redacted by the transport)."""
    text = response.text.strip().replace("\n", " ")
    return text[:limit]
