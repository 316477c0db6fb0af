"""What every sandbox shares: an HTTPS server on 127.0.0.1, routing, fault switches and push delivery.

A sandbox is a stand-in for Salesforce, Microsoft Graph or Google that speaks the subset of the real
API Concord uses, with the real paths, shapes, status codes and error bodies. Subclasses declare
routes with :func:`route` and say how their service words an error (:meth:`Sandbox.error`).

Fault switches (the same on every sandbox, through ``POST /_sandbox/faults`` or from Python through
``sandbox.faults``): 429 with ``Retry-After`` for the next N calls, a 5xx for the next N calls, added
latency, expiring every issued token, and dropping, duplicating or reordering the next N pushed
notifications.
"""

from __future__ import annotations

import json
import re
import secrets
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import trustme

# --------------------------------------------------------------------------------------------- TLS


class _ThrowawayCA:
    """One CA per process, made on first use; every sandbox's certificate is signed by it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ca: trustme.CA | None = None
        self.bundle_path = ""

    def get(self) -> trustme.CA:
        with self._lock:
            if self._ca is None:
                self._ca = trustme.CA()
                with tempfile.NamedTemporaryFile(prefix="concord-ca-", suffix=".pem", delete=False) as bundle:
                    bundle.write(self._ca.cert_pem.bytes())
                self.bundle_path = bundle.name
            return self._ca


_CA = _ThrowawayCA()


def certificate_authority() -> trustme.CA:
    return _CA.get()


def ca_bundle_path() -> str:
    """Path of a PEM file holding the sandboxes' CA: give it to clients as their ``verify``."""
    _CA.get()
    return _CA.bundle_path


# ----------------------------------------------------------------------------------------- requests


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    params: dict[str, str] = field(default_factory=dict)  # named groups of the route pattern

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def json(self) -> Any:
        if not self.body:
            return None
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.body.decode("utf-8"), keep_blank_values=True).items()}

    def bearer(self) -> str | None:
        value = self.headers.get("authorization", "")
        return value[7:].strip() if value.lower().startswith("bearer ") else None


@dataclass
class Response:
    status: int = 200
    body: Any = None  # dict/list → JSON; bytes/str → as is
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def encode(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return json.dumps(self.body).encode("utf-8")


class HttpError(Exception):
    """Raised inside a route handler to answer with the sandbox's own error shape."""

    def __init__(self, status: int, code: str, message: str, **extra: Any):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


Handler = Callable[[Any, Request], Response]


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    """Declare a handler for ``method`` and a regular expression matched against the whole path."""

    def mark(handler: Handler) -> Handler:
        handler.__dict__["_route"] = (method, re.compile(pattern + r"\Z"))  # read by Sandbox._collect_routes
        return handler

    return mark


# ------------------------------------------------------------------------------------------- faults


@dataclass
class Faults:
    """Switches that make the sandbox misbehave the way the real service sometimes does."""

    throttle_calls: int = 0
    throttle_retry_after: float = 1.0
    error_calls: int = 0
    error_status: int = 503
    latency_s: float = 0.0
    drop_notifications: int = 0
    duplicate_notifications: int = 0
    reorder_notifications: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def throttle(self, calls: int, retry_after: float = 1.0) -> None:
        with self.lock:
            self.throttle_calls, self.throttle_retry_after = calls, retry_after

    def fail(self, calls: int, status: int = 503) -> None:
        with self.lock:
            self.error_calls, self.error_status = calls, status

    def latency(self, seconds: float) -> None:
        self.latency_s = seconds

    def notifications(self, *, drop: int = 0, duplicate: int = 0, reorder: int = 0) -> None:
        with self.lock:
            self.drop_notifications, self.duplicate_notifications = drop, duplicate
            self.reorder_notifications = reorder

    def take(self, name: str) -> bool:
        """Consume one unit of a counted fault; True when it fires."""
        with self.lock:
            left = getattr(self, name)
            if left > 0:
                setattr(self, name, left - 1)
                return True
            return False

    def clear(self) -> None:
        self.throttle(0)
        self.fail(0)
        self.latency(0.0)
        self.notifications()

    def as_dict(self) -> dict[str, float]:
        return {k: v for k, v in vars(self).items() if k != "lock"}


# ------------------------------------------------------------------------------------------- tokens


class TokenIssuer:
    """Access tokens handed out by a sandbox's token endpoint, each with an expiry."""

    def __init__(self, lifetime_s: float = 3600.0):
        self.lifetime_s = lifetime_s
        self._tokens: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def issue(self, **claims: Any) -> tuple[str, int]:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = (time.time() + self.lifetime_s, claims)
        return token, int(self.lifetime_s)

    def check(self, token: str | None) -> dict[str, Any] | None:
        """The claims the token was issued with, or None if unknown or expired."""
        if not token:
            return None
        with self._lock:
            entry = self._tokens.get(token)
        if entry is None or entry[0] < time.time():
            return None
        return entry[1]

    def expire_all(self) -> None:
        with self._lock:
            self._tokens = {t: (0.0, claims) for t, (_, claims) in self._tokens.items()}


def verify_assertion(assertion: str, public_key_pem: str | bytes, *, audience: str | list[str]) -> dict[str, Any]:
    """Verify an RS256 JWT bearer assertion as the real token endpoints do; raises ``jwt.InvalidTokenError``."""
    claims: dict[str, Any] = jwt.decode(
        assertion,
        public_key_pem,
        algorithms=["RS256"],
        audience=audience,
        options={"require": ["exp", "iss", "aud"]},
    )
    return claims


# -------------------------------------------------------------------------------------------- pushes


@dataclass
class Push:
    url: str
    body: bytes
    headers: dict[str, str]
    attempts: int = 0
    not_before: float = 0.0


class Pusher:
    """Delivers notifications in the background, retrying with backoff until acknowledged.

    ``acknowledged`` decides what counts as an acknowledgement (Salesforce wants ``<Ack>true</Ack>``,
    Graph and Google any 2xx). Drop/duplicate/reorder faults apply as notifications are queued.
    """

    def __init__(
        self,
        faults: Faults,
        *,
        acknowledged: Callable[[httpx.Response], bool] = lambda r: 200 <= r.status_code < 300,
        backoff_s: float = 0.2,
        max_backoff_s: float = 5.0,
        max_attempts: int = 20,
    ):
        self.faults = faults
        self.acknowledged = acknowledged
        self.backoff_s, self.max_backoff_s, self.max_attempts = backoff_s, max_backoff_s, max_attempts
        self.delivered: list[Push] = []
        self.abandoned: list[Push] = []
        self._queue: list[Push] = []
        self._held: list[Push] = []
        self._cond = threading.Condition()
        self._inflight = 0
        self._stop = False
        self._client = httpx.Client(timeout=httpx.Timeout(10.0))
        self._thread = threading.Thread(target=self._run, name="sandbox-pusher", daemon=True)
        self._thread.start()

    def send(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        push = Push(url, body, headers)
        with self._cond:
            if self.faults.take("drop_notifications"):
                return
            if self.faults.take("reorder_notifications"):
                self._held.append(push)  # goes out after the next one
                return
            copies = 2 if self.faults.take("duplicate_notifications") else 1
            for _ in range(copies):
                self._queue.append(Push(url, body, dict(headers)))
            self._queue.extend(self._held)
            self._held.clear()
            self._cond.notify()

    def flush_held(self) -> None:
        with self._cond:
            self._queue.extend(self._held)
            self._held.clear()
            self._cond.notify()

    def idle(self) -> bool:
        with self._cond:
            return not self._queue and not self._inflight

    def wait_idle(self, timeout: float = 10.0) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.idle():
                return True
            time.sleep(0.02)
        return False

    def _next(self) -> Push | None:
        with self._cond:
            while not self._stop:
                now = time.time()
                ready = [p for p in self._queue if p.not_before <= now]
                if ready:
                    push = ready[0]
                    self._queue.remove(push)
                    self._inflight += 1
                    return push
                wait = min((p.not_before for p in self._queue), default=now + 1.0) - now
                self._cond.wait(timeout=max(0.01, min(wait, 1.0)))
            return None

    def _run(self) -> None:
        while (push := self._next()) is not None:
            push.attempts += 1
            ok = False
            try:
                response = self._client.post(push.url, content=push.body, headers=push.headers)
                ok = self.acknowledged(response)
            except httpx.HTTPError:
                ok = False  # the receiver is down: retried below, exactly like an unacknowledged push
            with self._cond:
                self._inflight -= 1
                if ok:
                    self.delivered.append(push)
                elif push.attempts >= self.max_attempts:
                    self.abandoned.append(push)
                else:
                    push.not_before = time.time() + min(self.max_backoff_s, self.backoff_s * 2 ** (push.attempts - 1))
                    self._queue.append(push)
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=5)
        self._client.close()


# ------------------------------------------------------------------------------------------ sandbox


class Sandbox:
    """Base class: an HTTPS server on 127.0.0.1 and a free port, started and stopped from Python.

    Use as a context manager, or ``start()`` / ``stop()``. ``url`` is its base URL once started.
    """

    name: ClassVar[str] = "sandbox"

    def __init__(self, *, tls: bool = True, port: int = 0):
        self.faults = Faults()
        self.tokens = TokenIssuer()
        self.tls = tls
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.requests_served = 0
        self._routes = self._collect_routes()

    # --- lifecycle

    def start(self) -> Sandbox:
        handler = _make_handler(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), handler)
        self._server.daemon_threads = True
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            certificate_authority().issue_cert("127.0.0.1", "localhost").configure_cert(context)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"{self.name}-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the sandbox first"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def reset(self) -> None:
        """Forget all records and clear every fault; subclasses extend it."""
        self.faults.clear()
        self.tokens = TokenIssuer()

    # --- for subclasses

    def error(self, status: int, code: str, message: str, **extra: Any) -> Response:
        """The service's own error body; subclasses override."""
        return Response(status, {"error": {"code": code, "message": message, **extra}})

    def throttled(self, retry_after: float) -> Response:
        response = self.error(429, "TooManyRequests", "Too many requests; retry later.")
        response.headers["Retry-After"] = str(int(retry_after) if retry_after == int(retry_after) else retry_after)
        return response

    def unauthorized(self) -> Response:
        return self.error(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")

    def public_paths(self) -> tuple[str, ...]:
        """Path prefixes served without a bearer token (token endpoints, key sets, admin)."""
        return ("/_sandbox/",)

    def state(self) -> dict[str, Any]:
        """What ``GET /_sandbox/state`` shows; subclasses add their counts."""
        return {"name": self.name, "requests_served": self.requests_served, "faults": self.faults.as_dict()}

    # --- dispatch

    def _collect_routes(self) -> list[tuple[str, re.Pattern[str], Handler]]:
        routes = []
        for klass in reversed(type(self).__mro__):
            for attr in vars(klass).values():
                marker = getattr(attr, "_route", None)
                if marker:
                    routes.append((marker[0], marker[1], attr))
        return routes

    def dispatch(self, request: Request) -> Response:
        self.requests_served += 1
        if request.path.startswith("/_sandbox/"):
            return self._admin(request)
        if self.faults.latency_s:
            time.sleep(self.faults.latency_s)
        if self.faults.take("throttle_calls"):
            return self.throttled(self.faults.throttle_retry_after)
        if self.faults.take("error_calls"):
            return self.error(self.faults.error_status, "ServiceUnavailable", "The service is temporarily unavailable.")
        allowed = [m for m, p, _ in self._routes if p.match(request.path)]
        for method, pattern, handler in self._routes:
            match = pattern.match(request.path)
            if match and method == request.method:
                request.params = match.groupdict()
                try:
                    return handler(self, request)
                except HttpError as exc:
                    return self.error(exc.status, exc.code, exc.message, **exc.extra)
        if allowed:
            return self.error(405, "MethodNotAllowed", f"{request.method} is not allowed on {request.path}")
        return self.error(404, "NotFound", f"No such resource: {request.path}")

    def _admin(self, request: Request) -> Response:
        action = request.path.removeprefix("/_sandbox/")
        if action == "faults" and request.method == "POST":
            spec = request.json() or {}
            if "throttle" in spec:
                self.faults.throttle(int(spec["throttle"]["calls"]), float(spec["throttle"].get("retry_after", 1)))
            if "fail" in spec:
                self.faults.fail(int(spec["fail"]["calls"]), int(spec["fail"].get("status", 503)))
            if "latency_s" in spec:
                self.faults.latency(float(spec["latency_s"]))
            if spec.get("expire_tokens"):
                self.tokens.expire_all()
            if "notifications" in spec:
                self.faults.notifications(**{k: int(v) for k, v in spec["notifications"].items()})
            return Response(200, self.faults.as_dict())
        if action == "reset" and request.method == "POST":
            self.reset()
            return Response(200, {"reset": True})
        if action == "state" and request.method == "GET":
            return Response(200, self.state())
        return Response(404, {"error": f"unknown admin action {request.method} {action}"})


def _make_handler(sandbox: Sandbox) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out as separate small writes; with Nagle's algorithm and delayed ACKs
        # every answer would wait ~40 ms. Real servers set TCP_NODELAY, and so do we.
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            request = Request(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(length) if length else b"",
            )
            response = sandbox.dispatch(request)
            payload = response.encode()
            self.send_response(response.status)
            if payload or response.status not in (204, 304):
                self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _serve

        def log_message(self, format: str, *args: Any) -> None:
            return  # request logs would carry tokens in query strings; the sandbox counts instead

    return _Handler
