"""A stand-in for Google Workspace: OAuth token endpoint, Calendar v3, People v1 and Gmail v1 on one server.

The three APIs' paths do not collide, so one HTTPS server answers them all, with the real paths (from the
discovery documents bundled with google-api-python-client), shapes, status codes and error bodies:

* ``POST /token``: the OAuth 2.0 JWT-bearer grant of a service account with domain-wide delegation. The
  assertion is verified with the configured service-account public key; the token acts as ``sub``.
* ``/calendar/v3/calendars/{calendarId}/events[/{eventId}|/watch]``, ``/calendar/v3/channels/stop``.
* ``/v1/people/me/connections``, ``/v1/people:createContact``, ``/v1/people/{id}[:updateContact|:deleteContact]``,
  ``/v1/contactGroups[/{id}[/members:modify]]``.
* ``/gmail/v1/users/{userId}/watch|stop|profile|history|messages[/{id}]``.
* ``GET /oauth2/v3/certs``: the JWKS that verifies the OIDC tokens on Gmail's Pub/Sub pushes.

Records live in memory per user. Every change bumps a per-sandbox sequence number; a Calendar or People
sync token remembers the sequence number it was issued at and lists what changed after it. Gmail keeps a
per-user history id that grows (in uneven steps, as Gmail's does) with every delivered message.

Switches, from Python and as ``POST /_sandbox/google/<name>`` with a JSON body: ``fail_after_commit``
(``{"calls", "status"}``, ``status`` null to drop the connection: the next writes are committed, then fail),
``expire_sync_tokens``
(Calendar then answers 410 ``fullSyncRequired``, People 400 ``EXPIRED_SYNC_TOKEN``), ``expire_history``
(``{"user"}`` optional; Gmail ``history.list`` answers 404), ``expire_channels``, ``delete_calendar``
(``{"user"}``: channels get ``not_exists``), ``invite`` (see Meetings), ``deliver`` (``{"user", "from", "to",
"cc", "subject", "body", "labelIds"}``: a new email, see :meth:`GoogleSandbox.deliver_email`) and
``subscriptions`` (``{"topic", "endpoint", "audience", "serviceAccount", "name"}``: a Pub/Sub push
subscription). The fault switches of
the base class count API calls only: the token endpoint and the key set are never throttled or failed.

Pushes: a Calendar channel gets an empty POST with the ``X-Goog-*`` headers (``sync`` first, then
``exists`` for every change); a watched Gmail mailbox publishes to its Pub/Sub topic, whose push
subscriptions (:meth:`GoogleSandbox.add_push_subscription`) receive the Pub/Sub envelope with an
``Authorization: Bearer <OIDC JWT>`` signed by the sandbox's key. Gmail notifies a user at most once a
second: changes within that second are coalesced into one notification carrying the newest history id.

Simplifications, on purpose: only the ``primary`` calendar exists; recurring events are stored but not
expanded (``singleEvents`` is ignored); Gmail's ``q`` understands ``from:``, ``to:``, ``subject:`` and
bare words only; ``sendUpdates`` mails nobody but is recorded (below); invitations are not propagated
between mailboxes (a meeting the user does not organise is placed with :meth:`GoogleSandbox.invite`);
channel addresses may be plain ``http://`` (loopback receivers), where Google insists on HTTPS; any ``sub``
that looks like an email is a user of the domain (its mailbox is made on first use).

Meetings. The organiser's insert, patch, update and delete with ``sendUpdates=all`` record one entry per
mail an attendee would receive in :attr:`GoogleSandbox.attendee_mails` (``invitation``, ``update`` or
``cancellation``; guests removed by an update get a cancellation; the organiser gets none), with
``externalOnly`` only for "non-Google Calendar guests" (here: outside the organiser's domain and not on
gmail.com), with ``none`` (the default) for nobody; :meth:`GoogleSandbox.mails_to` counts them per address,
as do ``attendee_mail_counts`` in ``GET /_sandbox/state`` and :attr:`GoogleSandbox.invitations_sent` per
write. A meeting the user only attends (``invite``, also ``POST /_sandbox/google/invite`` with
``{"user", "organizer", "event"}``) is the user's copy: unless the organiser set ``guestsCanModify``, a
patch or update changes only the user's own answer and the copy's private properties and silently drops
the rest (200, event unchanged), a delete takes it off the user's calendar only, and nothing is mailed;
such writes are listed in :attr:`GoogleSandbox.attendee_copy_writes` with what was dropped.

``python -m local.sandboxes.google [--port N] [--push-endpoint URL]`` serves it with seed data.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import random
import secrets
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesParser
from email.utils import format_datetime, formatdate, parseaddr
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from local.sandboxes import seed
from local.sandboxes.server import (
    HttpError,
    Pusher,
    Request,
    Response,
    Sandbox,
    ca_bundle_path,
    route,
    verify_assertion,
)

#: The sandbox's own generator: tests that seed the global one (Hypothesis does, per example) must not
#: make it hand out the same resource names and ids again.
_random = random.Random()

REAL_TOKEN_URI = "https://oauth2.googleapis.com/token"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEFAULT_SERVICE_ACCOUNT = "concord-sync@concord-local.iam.gserviceaccount.com"
DEFAULT_PUSH_ACCOUNT = "gmail-push@concord-local.iam.gserviceaccount.com"

# Scopes that grant each API (any one suffices), as Google checks them.
_API_SCOPES = {
    "calendar": {"https://www.googleapis.com/auth/calendar", "https://www.googleapis.com/auth/calendar.events"},
    "people": {"https://www.googleapis.com/auth/contacts"},
    "gmail": {
        "https://www.googleapis.com/auth/gmail.readonly",
        "https://www.googleapis.com/auth/gmail.modify",
        "https://www.googleapis.com/auth/gmail.metadata",
        "https://mail.google.com/",
    },
}
_DELEGATED_SCOPES = set().union(*_API_SCOPES.values())

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "ALREADY_EXISTS",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

PERSON_FIELDS = frozenset(
    {
        "addresses",
        "ageRanges",
        "biographies",
        "birthdays",
        "calendarUrls",
        "clientData",
        "coverPhotos",
        "emailAddresses",
        "events",
        "externalIds",
        "genders",
        "imClients",
        "interests",
        "locales",
        "locations",
        "memberships",
        "metadata",
        "miscKeywords",
        "names",
        "nicknames",
        "occupations",
        "organizations",
        "phoneNumbers",
        "photos",
        "relations",
        "sipAddresses",
        "skills",
        "urls",
        "userDefined",
    }
)
_PERSON_LIST_FIELDS = PERSON_FIELDS - {"metadata", "memberships"}
# What ``updatePersonFields`` may name (people.updateContact reference); the rest are read-only.
_UPDATABLE_PERSON_FIELDS = PERSON_FIELDS - {"ageRanges", "coverPhotos", "metadata", "photos", "skills"}
_PUSH_ACK = frozenset({102, 200, 201, 202, 204})


def _now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey) -> tuple[str, str]:
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def _int_arg(request: Request, name: str, default: int, maximum: int) -> int:
    raw = request.arg(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HttpError(400, "invalid", f"Invalid value '{raw}'. Values must be integers.") from None
    return max(1, min(value, maximum))


# ------------------------------------------------------------------------------------------- state


@dataclass
class _Record:
    body: dict[str, Any]
    seq: int
    deleted: bool = False
    groups: set[str] = field(default_factory=set)  # People: contact group ids the person belongs to


@dataclass
class _Channel:
    id: str
    resource_id: str
    resource_uri: str
    address: str
    token: str | None
    expiration_ms: int | None
    user: str
    calendar_id: str
    message_number: int = 1


@dataclass
class _Subscription:
    name: str
    topic: str
    endpoint: str
    audience: str
    service_account: str


@dataclass
class _Mailbox:
    user: str
    events: dict[str, _Record] = field(default_factory=dict)  # the primary calendar
    calendar_resource_id: str = field(default_factory=lambda: _b64url(secrets.token_bytes(18)))
    calendar_deleted: bool = False
    people: dict[str, _Record] = field(default_factory=dict)  # "people/c…" → record
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)  # group id → ContactGroup
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    history_id: int = field(default_factory=lambda: _random.randint(100_000, 900_000))  # not crypto
    history_floor: int = 0  # start ids below this are "too old" (404)
    watch: dict[str, Any] | None = None
    last_push: float = 0.0
    push_timer: threading.Timer | None = None


# ------------------------------------------------------------------------------------------ sandbox


class GoogleSandbox(Sandbox):
    """Calendar, People and Gmail for any number of users of one Workspace domain.

    ``service_account_public_key`` is the PEM the token endpoint verifies assertions with; if omitted,
    the sandbox makes a key pair and offers the matching key file as :meth:`service_account_info`.
    """

    name: ClassVar[str] = "google"

    def __init__(
        self,
        *,
        tls: bool = True,
        port: int = 0,
        service_account_email: str = DEFAULT_SERVICE_ACCOUNT,
        service_account_public_key: str | None = None,
        private_key_id: str = "sandbox-key-1",
    ):
        super().__init__(tls=tls, port=port)
        self.service_account_email = service_account_email
        self.private_key_id = private_key_id
        if service_account_public_key is None:
            self.service_account_private_key, self.service_account_public_key = _pem(_new_key())
        else:
            self.service_account_private_key, self.service_account_public_key = "", service_account_public_key
        self._push_key = _new_key()
        self.push_key_id = secrets.token_hex(20)
        self._lock = threading.RLock()
        self._seq = itertools.count(1)
        self._init_state()
        self.pusher = Pusher(self.faults, acknowledged=lambda r: r.status_code in _PUSH_ACK)

    def _init_state(self) -> None:
        self._mailboxes: dict[str, _Mailbox] = {}
        self._sync_tokens: dict[str, tuple[str, int]] = {}  # token → (scope key, seq it was issued at)
        # page token → (scope, the first call's parameters, the items still to come, the last page's extras)
        self._page_tokens: dict[str, tuple[str, str, list[dict[str, Any]], dict[str, Any]]] = {}
        self._channels: dict[str, _Channel] = {}
        self._subscriptions: list[_Subscription] = []
        self.invitations_sent: list[dict[str, Any]] = []  # one entry per write that mailed anyone
        self.attendee_mails: list[dict[str, Any]] = []  # one entry per mail one attendee would receive
        self.attendee_copy_writes: list[dict[str, Any]] = []  # writes to meetings the user does not organise
        self.pubsub_published: list[dict[str, Any]] = []
        self._after_commit: list[int | None] = []  # one entry per pending fault: a 5xx status, or None (drop)

    # --- lifecycle and switches

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    def service_account_info(self) -> dict[str, str]:
        """A service-account key file (the JSON Google issues) whose ``token_uri`` is this sandbox."""
        return {
            "type": "service_account",
            "project_id": "concord-local",
            "private_key_id": self.private_key_id,
            "private_key": self.service_account_private_key,
            "client_email": self.service_account_email,
            "client_id": "100000000000000000001",
            "token_uri": self.token_url,
        }

    def start(self) -> GoogleSandbox:
        super().start()
        assert self._server is not None
        # http.server writes headers and body separately; with Nagle on, each answer then waits ~40 ms for
        # the client's delayed ACK. Accepted sockets inherit TCP_NODELAY from the listener (Linux).
        self._server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        report = self._server.handle_error

        def handle_error(request: Any, client_address: Any) -> None:
            # A dropped connection is a fault asked for, not a sandbox bug: the server closes it quietly.
            if not isinstance(sys.exc_info()[1], _DropConnection):
                report(request, client_address)

        self._server.__dict__["handle_error"] = handle_error  # an instance attribute overrides the method
        return self

    def stop(self) -> None:
        self._cancel_timers()
        self.pusher.close()
        super().stop()

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._cancel_timers()
            self._init_state()
        self.pusher.close()
        self.pusher = Pusher(self.faults, acknowledged=lambda r: r.status_code in _PUSH_ACK)

    def _cancel_timers(self) -> None:
        for mailbox in self._mailboxes.values():
            if mailbox.push_timer is not None:
                mailbox.push_timer.cancel()
                mailbox.push_timer = None

    def fail_after_commit(self, calls: int = 1, *, status: int | None = 503) -> None:
        """The next ``calls`` writes are committed and then answered with ``status`` (a 5xx), or, with
        ``status=None``, by closing the connection without an answer: what a client sees when Google
        times out or fails after the record exists, so that a retried create can be shown not to duplicate."""
        with self._lock:
            self._after_commit = [status] * calls

    def _take_after_commit(self) -> tuple[bool, int | None]:
        with self._lock:
            if not self._after_commit:
                return False, None
            return True, self._after_commit.pop(0)

    def expire_sync_tokens(self) -> None:
        """Every Calendar and People sync token (and page token) issued so far becomes invalid."""
        with self._lock:
            self._sync_tokens.clear()
            self._page_tokens.clear()

    def expire_history(self, user: str | None = None) -> None:
        """Make every history id handed out so far too old: ``history.list`` from them answers 404."""
        with self._lock:
            for mailbox in self._mailboxes.values():
                if user is None or mailbox.user == user:
                    # Every id handed out so far, the current one included, is now too old; ids from
                    # here on are fine (a full sync's fresh cursor must work).
                    mailbox.history_id += 1
                    mailbox.history_floor = mailbox.history_id
                    mailbox.history.clear()

    def expire_channels(self) -> None:
        """Every Calendar channel (and Gmail watch) reaches its expiration now."""
        with self._lock:
            now_ms = int(time.time() * 1000)
            for channel in self._channels.values():
                channel.expiration_ms = now_ms - 1
            for mailbox in self._mailboxes.values():
                if mailbox.watch is not None:
                    mailbox.watch["expiration"] = now_ms - 1

    def delete_calendar(self, user: str) -> None:
        """The watched calendar goes away (say, the user is deprovisioned): its channels get ``not_exists``
        and every Calendar call for the user answers 404 from now on."""
        with self._lock:
            mailbox = self._mailbox(user)
            mailbox.calendar_deleted = True
            mailbox.events.clear()
            self._notify_channels(mailbox, "not_exists")

    def add_push_subscription(
        self,
        topic: str,
        endpoint: str,
        *,
        audience: str | None = None,
        service_account: str = DEFAULT_PUSH_ACCOUNT,
        name: str = "projects/concord-local/subscriptions/gmail-push",
    ) -> None:
        """A Pub/Sub push subscription on ``topic``: Gmail notifications published there POST to ``endpoint``."""
        with self._lock:
            self._subscriptions.append(_Subscription(name, topic, endpoint, audience or endpoint, service_account))

    def wait_pushes(self, timeout: float = 10.0) -> bool:
        """Wait until coalesced Gmail notifications are published and every push is delivered or abandoned."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self._lock:
                pending = any(m.push_timer is not None for m in self._mailboxes.values())
            if not pending and self.pusher.idle():
                return True
            time.sleep(0.02)
        return False

    def attendee_mail_counts(self) -> dict[str, int]:
        """How many mails each address would have received from Calendar so far (addresses lower-cased)."""
        with self._lock:
            counts: dict[str, int] = {}
            for mail in self.attendee_mails:
                counts[mail["recipient"]] = counts.get(mail["recipient"], 0) + 1
            return counts

    def mails_to(self, address: str) -> int:
        """How many invitations, updates and cancellations ``address`` would have received."""
        return self.attendee_mail_counts().get(address.lower(), 0)

    def invite(self, user: str, event: dict[str, Any], *, organizer: str) -> dict[str, Any]:
        """Put in ``user``'s primary calendar their copy of a meeting ``organizer`` organises, as Google does
        when an invitation arrives; returns the copy. ``event`` is an Event body (its ``id`` is kept if given);
        ``user`` is added to its guests if missing. Writes to the copy then follow the rules for a guest."""
        with self._lock:
            mailbox = self._mailbox(user)
            body = json.loads(json.dumps(event))
            _validate_calendar(body)
            _check_times(body)
            event_id = str(body.get("id") or secrets.token_hex(13))
            attendees = body.setdefault("attendees", [])
            if not any(_same_address(a.get("email"), user) for a in attendees):
                attendees.append({"email": user})
            now = _now_rfc3339()
            copy = {k: v for k, v in body.items() if k not in _EVENT_READ_ONLY}
            copy.update(
                {
                    "kind": "calendar#event",
                    "id": event_id,
                    "status": body.get("status", "confirmed"),
                    "htmlLink": f"https://www.google.com/calendar/event?eid={_b64url(event_id.encode())}",
                    "created": now,
                    "creator": {"email": organizer},
                    "organizer": {"email": organizer},
                    "iCalUID": body.get("iCalUID") or f"{event_id}@google.com",
                    "sequence": int(body.get("sequence", 0)),
                    "reminders": body.get("reminders", {"useDefault": True}),
                    "eventType": body.get("eventType", "default"),
                }
            )
            _mark_attendees(copy, user)
            record = _Record(copy, 0)
            self._touch_event(mailbox, record, now)
            mailbox.events[event_id] = record
            self._notify_channels(mailbox, "exists")
            return self._event_out(record)

    def jwks(self) -> dict[str, Any]:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self._push_key.public_key(), as_dict=True)
        return {"keys": [{**jwk, "kid": self.push_key_id, "alg": "RS256", "use": "sig"}]}

    def state(self) -> dict[str, Any]:
        with self._lock:
            users = {
                m.user: {
                    "events": sum(not r.deleted for r in m.events.values()),
                    "contacts": sum(not r.deleted for r in m.people.values()),
                    "messages": len(m.messages),
                    "history_id": m.history_id,
                    "watching": m.watch is not None,
                }
                for m in self._mailboxes.values()
            }
            return {
                **super().state(),
                "users": users,
                "channels": len(self._channels),
                "invitations_sent": len(self.invitations_sent),
                "attendee_mails": [dict(m) for m in self.attendee_mails],
                "attendee_mail_counts": self.attendee_mail_counts(),
                "attendee_copy_writes": [dict(w) for w in self.attendee_copy_writes],
                "pushes_delivered": len(self.pusher.delivered),
            }

    def public_paths(self) -> tuple[str, ...]:
        return ("/_sandbox/", "/token", "/oauth2/v3/certs")

    # --- error shapes

    def error(self, status: int, code: str, message: str, **extra: Any) -> Response:
        """Google's error JSON. ``code`` is the reason; ``status_name`` and ``style`` may refine it."""
        if code == "ServiceUnavailable":  # the base class's fault switch
            code, message = (
                ("rateLimitExceeded", "Rate Limit Exceeded") if status == 403 else ("backendError", "Backend Error")
            )
        elif code in ("NotFound", "MethodNotAllowed"):
            code = "notFound" if status == 404 else "badRequest"
        status_name = extra.pop("status_name", None) or _STATUS_NAMES.get(status, "UNKNOWN")
        headers: dict[str, str] = extra.pop("headers", {})
        error: dict[str, Any] = {"code": status, "message": message}
        violation = extra.pop("violation", None)
        if extra.pop("style", "classic") == "people":
            error["status"] = status_name
            if violation is not None:
                error["details"] = [
                    {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [violation]}
                ]
            elif code and code[0].isupper():  # ErrorInfo reasons are UPPER_SNAKE
                error["details"] = [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": code,
                        "domain": "people.googleapis.com",
                    }
                ]
        else:
            domain = "usageLimits" if code in ("rateLimitExceeded", "userRateLimitExceeded") else "global"
            error["errors"] = [{"domain": domain, "reason": code, "message": message, **extra}]
            if status != 410:  # Calendar's 410 carries no status name
                error["status"] = status_name
        return Response(status, {"error": error}, headers=headers)

    def throttled(self, retry_after: float) -> Response:
        response = self.error(
            429,
            "rateLimitExceeded",
            "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user'.",
        )
        response.headers["Retry-After"] = str(int(retry_after) if retry_after == int(retry_after) else retry_after)
        return response

    def unauthorized(self) -> Response:
        return self.error(
            401,
            "authError",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other "
            "valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
            location="Authorization",
            locationType="header",
            headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'},
        )

    def dispatch(self, request: Request) -> Response:
        # The fault switches model the APIs; the token endpoint and the key set stay well-behaved so
        # that "the next N calls" means N API calls, whatever tokens the client fetches in between.
        if request.method == "POST" and request.path == "/token":
            self.requests_served += 1
            return self.token(request)
        if request.method == "GET" and request.path == "/oauth2/v3/certs":
            self.requests_served += 1
            return self.certs(request)
        try:
            response = super().dispatch(request)
        except _Unauthorized:
            return self.unauthorized()
        if request.method != "GET" and response.status < 300 and not request.path.startswith("/_sandbox/"):
            fires, status = self._take_after_commit()
            if fires and status is None:
                raise _DropConnection
            if fires:
                return self.error(status or 503, "ServiceUnavailable", "The service is temporarily unavailable.")
        return response

    def _authorize(self, request: Request, api: str) -> str:
        """The user the bearer token acts as; raises for a missing, expired or under-scoped token."""
        claims = self.tokens.check(request.bearer())
        if claims is None:
            raise _Unauthorized
        if not set(str(claims.get("scope", "")).split()) & _API_SCOPES[api]:
            raise HttpError(
                403,
                "insufficientPermissions",
                "Request had insufficient authentication scopes.",
                **({"style": "people"} if api == "people" else {}),
            )
        return str(claims["sub"])

    def _mailbox(self, user: str) -> _Mailbox:
        with self._lock:
            mailbox = self._mailboxes.get(user)
            if mailbox is None:
                mailbox = self._mailboxes[user] = _Mailbox(user)
                mailbox.groups.update(
                    {
                        "myContacts": _system_group("myContacts", "My Contacts"),
                        "starred": _system_group("starred", "Starred"),
                    }
                )
            return mailbox

    def _issue_sync_token(self, scope: str) -> str:
        token = _b64url(secrets.token_bytes(24))
        self._sync_tokens[token] = (scope, next(self._seq))
        return token

    def _paginate(
        self, request: Request, scope: str, items: list[dict[str, Any]], page_size: int, tail: dict[str, Any]
    ) -> dict[str, Any]:
        """One page of ``items``; ``tail`` (e.g. ``nextSyncToken``) is added to the last page only."""
        page, rest = items[:page_size], items[page_size:]
        answer: dict[str, Any] = {"page": page}
        if rest:
            token = _b64url(secrets.token_bytes(18))
            self._page_tokens[token] = (scope, _call_signature(request), rest, tail)
            answer["nextPageToken"] = token
        else:
            answer.update(tail)
        return answer

    def _continue(self, request: Request, scope: str, page_size: int) -> dict[str, Any] | None:
        """The page a ``pageToken`` asks for. Page tokens stay valid when reused (a client may retry a page),
        and, as Google requires, every other parameter must match the call that started the listing."""
        token = request.arg("pageToken")
        if not token:
            return None
        entry = self._page_tokens.get(token)
        style = {"style": "people"} if scope.startswith("people:") else {}
        if entry is None or entry[0] != scope:
            raise HttpError(400, "INVALID_ARGUMENT" if style else "invalid", "Invalid page token value.", **style)
        if entry[1] != _call_signature(request):
            raise HttpError(
                400,
                "INVALID_ARGUMENT" if style else "invalid",
                "Parameters provided with a page token must match the call that provided the page token.",
                **style,
            )
        return self._paginate(request, scope, entry[2], page_size, entry[3])

    # ------------------------------------------------------------------------------------- OAuth

    @route("POST", r"/token")
    def token(self, request: Request) -> Response:
        form = request.form()
        if form.get("grant_type") != JWT_GRANT:
            return _oauth_error("unsupported_grant_type", f"Invalid grant_type: {form.get('grant_type', '')}")
        try:
            claims = verify_assertion(
                form.get("assertion", ""), self.service_account_public_key, audience=[self.token_url, REAL_TOKEN_URI]
            )
        except jwt.InvalidSignatureError:
            return _oauth_error("invalid_grant", "Invalid JWT Signature.")
        except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError):
            return _oauth_error("invalid_grant", _SHORT_LIVED)
        except jwt.InvalidAudienceError:
            return _oauth_error(
                "invalid_grant", f"Invalid JWT: Failed audience check. The right audience is {REAL_TOKEN_URI}"
            )
        except jwt.InvalidTokenError:
            return _oauth_error("invalid_grant", "Invalid JWT: Token must be a valid, signed JWT.")
        if int(claims["exp"]) - int(claims.get("iat", time.time())) > 3600:
            return _oauth_error("invalid_grant", _SHORT_LIVED)
        if claims.get("iss") != self.service_account_email:
            return _oauth_error("invalid_grant", "Invalid grant: account not found")
        subject = str(claims.get("sub", ""))
        if "@" not in subject:
            return _oauth_error("invalid_grant", "Invalid email or User ID")
        scopes = set(str(claims.get("scope", "")).split())
        if not scopes:
            return _oauth_error("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        if not scopes <= _DELEGATED_SCOPES:
            return _oauth_error(
                "unauthorized_client",
                "Client is unauthorized to retrieve access tokens using this method, or client not authorized for "
                "any of the scopes requested.",
            )
        self._mailbox(subject)
        token, expires_in = self.tokens.issue(sub=subject, scope=" ".join(sorted(scopes)))
        return Response(200, {"access_token": token, "expires_in": expires_in - 1, "token_type": "Bearer"})

    @route("GET", r"/oauth2/v3/certs")
    def certs(self, request: Request) -> Response:
        return Response(200, self.jwks(), headers={"Cache-Control": "public, max-age=19857, must-revalidate"})

    # ---------------------------------------------------------------------------------- Calendar

    def _calendar(self, request: Request) -> _Mailbox:
        user = self._authorize(request, "calendar")
        calendar_id = unquote(request.params["cal"])
        mailbox = self._mailbox(user)
        if calendar_id not in ("primary", user) or mailbox.calendar_deleted:
            raise HttpError(404, "notFound", "Not Found")
        return mailbox

    def _event_out(self, record: _Record) -> dict[str, Any]:
        if record.deleted:
            return {k: record.body[k] for k in ("kind", "etag", "id", "status")}
        copy: dict[str, Any] = json.loads(json.dumps(record.body))
        return copy

    def _touch_event(self, mailbox: _Mailbox, record: _Record, now: str) -> None:
        record.seq = next(self._seq)
        record.body["etag"] = f'"{int(time.time() * 1000) * 1000 + record.seq % 1000:d}"'
        record.body["updated"] = now

    @route("GET", r"/calendar/v3/calendars/(?P<cal>[^/]+)/events")
    def events_list(self, request: Request) -> Response:
        with self._lock:
            mailbox = self._calendar(request)
            scope = f"calendar:{mailbox.user}"
            page_size = _int_arg(request, "maxResults", 250, 2500)
            page = self._continue(request, scope, page_size)
            if page is None:
                page = self._first_events_page(request, mailbox, scope, page_size)
            body = {
                "kind": "calendar#events",
                "etag": f'"{next(self._seq)}"',
                "summary": mailbox.user,
                "updated": _now_rfc3339(),
                "timeZone": "UTC",
                "accessRole": "owner",
                "defaultReminders": [],
                **{k: v for k, v in page.items() if k != "page"},
                "items": page["page"],
            }
            return Response(200, body)

    def _first_events_page(self, request: Request, mailbox: _Mailbox, scope: str, page_size: int) -> dict[str, Any]:
        sync_token = request.arg("syncToken")
        if sync_token:
            for name in ("timeMin", "timeMax", "updatedMin", "iCalUID", "q", "orderBy"):
                if request.arg(name):
                    raise HttpError(400, "invalid", f"Sync token is incompatible with the {name} parameter.")
            issued = self._sync_tokens.get(sync_token)
            if issued is None or issued[0] != scope:
                raise HttpError(
                    410,
                    "fullSyncRequired",
                    "Sync token is no longer valid, a full sync is required.",
                    locationType="parameter",
                    location="syncToken",
                )
            records = [r for r in mailbox.events.values() if r.seq > issued[1]]
        else:
            show_deleted = request.arg("showDeleted") == "true"
            records = [r for r in mailbox.events.values() if show_deleted or not r.deleted]
            ical_uid = request.arg("iCalUID")
            if ical_uid:
                records = [r for r in records if r.body.get("iCalUID") == ical_uid]
            records = [r for r in records if _in_window(r.body, request.arg("timeMin"), request.arg("timeMax"))]
        records.sort(key=lambda r: r.seq)
        tail = {} if request.arg("q") else {"nextSyncToken": self._issue_sync_token(scope)}
        return self._paginate(request, scope, [self._event_out(r) for r in records], page_size, tail)

    @route("POST", r"/calendar/v3/calendars/(?P<cal>[^/]+)/events")
    def events_insert(self, request: Request) -> Response:
        with self._lock:
            mailbox = self._calendar(request)
            body = request.json() or {}
            _validate_calendar(body)
            _check_times(body)
            event_id = str(body.get("id") or secrets.token_hex(13))
            if not (5 <= len(event_id) <= 1024) or any(c not in "0123456789abcdefghijklmnopqrstuv" for c in event_id):
                raise HttpError(400, "invalid", "Invalid resource id value.")
            if event_id in mailbox.events:
                raise HttpError(409, "duplicate", "The requested identifier already exists.")
            now = _now_rfc3339()
            user = mailbox.user
            event = {k: v for k, v in body.items() if k not in _EVENT_READ_ONLY}
            event.update(
                {
                    "kind": "calendar#event",
                    "id": event_id,
                    "status": body.get("status", "confirmed"),
                    "htmlLink": f"https://www.google.com/calendar/event?eid={_b64url(event_id.encode())}",
                    "created": now,
                    "creator": {"email": user, "self": True},
                    "organizer": {"email": user, "self": True},
                    "iCalUID": body.get("iCalUID") or f"{event_id}@google.com",
                    "sequence": int(body.get("sequence", 0)),
                    "reminders": body.get("reminders", {"useDefault": True}),
                    "eventType": body.get("eventType", "default"),
                }
            )
            _mark_attendees(event, user)
            record = _Record(event, 0)
            self._touch_event(mailbox, record, now)
            mailbox.events[event_id] = record
            self._after_event_write(request, mailbox, record, "created")
            return Response(200, self._event_out(record))

    def _event(self, request: Request) -> tuple[_Mailbox, _Record]:
        mailbox = self._calendar(request)
        record = mailbox.events.get(unquote(request.params["eid"]))
        if record is None:
            raise HttpError(404, "notFound", "Not Found")
        return mailbox, record

    def _check_if_match(self, request: Request, record: _Record) -> None:
        expected = request.headers.get("if-match")
        if expected and expected != "*" and expected != record.body["etag"]:
            raise HttpError(412, "conditionNotMet", "Precondition Failed", locationType="header", location="If-Match")

    @route("GET", r"/calendar/v3/calendars/(?P<cal>[^/]+)/events/(?P<eid>[^/]+)")
    def events_get(self, request: Request) -> Response:
        with self._lock:
            _, record = self._event(request)
            # A deleted event stays readable, with status "cancelled", as on Google.
            body = json.loads(json.dumps(record.body))
            return Response(200, body)

    @route("PATCH", r"/calendar/v3/calendars/(?P<cal>[^/]+)/events/(?P<eid>[^/]+)")
    def events_patch(self, request: Request) -> Response:
        return self._events_write(request, replace=False)

    @route("PUT", r"/calendar/v3/calendars/(?P<cal>[^/]+)/events/(?P<eid>[^/]+)")
    def events_update(self, request: Request) -> Response:
        return self._events_write(request, replace=True)

    def _events_write(self, request: Request, *, replace: bool) -> Response:
        with self._lock:
            mailbox, record = self._event(request)
            self._check_if_match(request, record)
            changes = request.json() or {}
            _validate_calendar(changes)
            if not _may_change_meeting(record.body, mailbox.user):
                if replace:
                    _check_times({"status": "confirmed", **changes})
                return self._guest_write(mailbox, record, changes, replace=replace)
            before = [] if record.deleted else _guest_addresses(record.body, mailbox.user)
            if changes.get("attendeesOmitted") and isinstance(changes.get("attendees"), list):
                # "When updating an event, this can be used to only update the participant's response"
                changes["attendees"] = _answer_only(record.body.get("attendees") or [], changes["attendees"])
            changes = {k: v for k, v in changes.items() if k not in _EVENT_READ_ONLY | {"attendeesOmitted"}}
            if replace:
                kept = {k: v for k, v in record.body.items() if k in _EVENT_READ_ONLY}
                merged = {**kept, "status": "confirmed", **changes}
            else:
                merged = _merge(record.body, changes)
            _check_times(merged)
            _mark_attendees(merged, mailbox.user)
            record.body = merged
            record.deleted = merged.get("status") == "cancelled"
            self._touch_event(mailbox, record, _now_rfc3339())
            self._after_event_write(request, mailbox, record, "updated", before)
            return Response(200, self._event_out(record))

    def _guest_write(self, mailbox: _Mailbox, record: _Record, changes: dict[str, Any], *, replace: bool) -> Response:
        """A guest's patch or update of their copy of a meeting someone else organises (``guestsCanModify``
        false, Google's default). The copy takes the guest's own answer (``responseStatus``, ``comment``,
        ``additionalGuests`` of their attendee entry) and the properties private to it (``reminders``,
        ``colorId``, ``transparency``, ``extendedProperties.private``); every other change is dropped
        without an error: Google answers 200 with the event unchanged (googleapis/google-api-nodejs-client
        #2989), and no mail goes to anyone. What was dropped is recorded in ``attendee_copy_writes``."""
        stored = record.body
        copy, ignored = _guest_copy(stored, changes, replace=replace)
        if "attendees" in stored:
            copy["attendees"], refused = _guest_attendees(stored["attendees"], changes, mailbox.user)
            if refused:
                ignored.add("attendees")
        if copy != stored:
            changed = {k for k in copy.keys() | stored.keys() if copy.get(k) != stored.get(k)}
            record.body = copy
            # "changing reminders does not also change the updated property" (Event resource reference)
            self._touch_event(mailbox, record, stored["updated"] if changed == {"reminders"} else _now_rfc3339())
            self._notify_channels(mailbox, "exists")
        self.attendee_copy_writes.append(
            {"user": mailbox.user, "event_id": stored["id"], "action": "updated", "ignored": sorted(ignored)}
        )
        return Response(200, self._event_out(record))

    @route("DELETE", r"/calendar/v3/calendars/(?P<cal>[^/]+)/events/(?P<eid>[^/]+)")
    def events_delete(self, request: Request) -> Response:
        with self._lock:
            mailbox, record = self._event(request)
            if record.deleted:
                raise HttpError(410, "deleted", "Resource has been deleted")
            self._check_if_match(request, record)
            before = _guest_addresses(record.body, mailbox.user)
            record.deleted = True
            record.body["status"] = "cancelled"
            self._touch_event(mailbox, record, _now_rfc3339())
            if not _organises(record.body, mailbox.user):
                # A guest's delete takes the meeting off their own calendar only: the meeting goes on for
                # everyone else, and nobody is told, whatever sendUpdates says.
                self.attendee_copy_writes.append(
                    {"user": mailbox.user, "event_id": record.body["id"], "action": "deleted", "ignored": []}
                )
                self._notify_channels(mailbox, "exists")
            else:
                self._after_event_write(request, mailbox, record, "cancelled", before)
            return Response(204, None)

    def _after_event_write(
        self, request: Request, mailbox: _Mailbox, record: _Record, action: str, before: list[str] | None = None
    ) -> None:
        """Record the mail Calendar sends for a write to a meeting, one entry per attendee in ``attendee_mails``:
        guests who stay get an ``update``, guests added an ``invitation``, guests removed (or all, when the
        meeting is cancelled) a ``cancellation``; the writer gets none. ``sendUpdates=none`` (the default)
        mails nobody; ``externalOnly`` mails only "non-Google Calendar guests" (the sendUpdates reference):
        here, guests outside the organiser's domain and not on gmail.com/googlemail.com."""
        send_updates = request.arg("sendUpdates") or ("all" if request.arg("sendNotifications") == "true" else "none")
        before = before or []
        after = [] if record.deleted else _guest_addresses(record.body, mailbox.user)
        mails = [(a, "update" if a in before else "invitation") for a in after]
        mails += [(a, "cancellation") for a in before if a not in after]
        if send_updates == "externalOnly":
            organizer = str((record.body.get("organizer") or {}).get("email") or mailbox.user)
            mails = [(a, kind) for a, kind in mails if not _has_google_calendar(a, organizer)]
        elif send_updates != "all":
            mails = []
        if mails:
            event_id = record.body["id"]
            self.invitations_sent.append(
                {"user": mailbox.user, "event_id": event_id, "action": action, "recipients": [a for a, _ in mails]}
            )
            self.attendee_mails.extend(
                {"user": mailbox.user, "event_id": event_id, "action": action, "recipient": a, "kind": kind}
                for a, kind in mails
            )
        self._notify_channels(mailbox, "exists")

    @route("POST", r"/calendar/v3/calendars/(?P<cal>[^/]+)/events/watch")
    def events_watch(self, request: Request) -> Response:
        with self._lock:
            mailbox = self._calendar(request)
            body = request.json() or {}
            channel_id, address = body.get("id"), body.get("address")
            if not channel_id or not address:
                raise HttpError(400, "required", "Required")
            if body.get("type") not in ("web_hook", "webhook"):
                raise HttpError(400, "invalid", f"Invalid value for: {body.get('type')} is not a valid value")
            if channel_id in self._channels:
                raise HttpError(400, "channelIdNotUnique", f"Channel id {channel_id} not unique")
            token = body.get("token")
            if token is not None and len(str(token)) > 256:
                raise HttpError(400, "invalid", "Channel token too long")
            now_ms = int(time.time() * 1000)
            requested = int(body["expiration"]) if body.get("expiration") else now_ms + 7 * 86_400_000
            calendar_id = unquote(request.params["cal"])
            channel = _Channel(
                id=str(channel_id),
                resource_id=mailbox.calendar_resource_id,
                resource_uri=f"{self.url}/calendar/v3/calendars/{calendar_id}/events?alt=json",
                address=str(address),
                token=str(token) if token is not None else None,
                expiration_ms=min(requested, now_ms + 30 * 86_400_000),
                user=mailbox.user,
                calendar_id=calendar_id,
            )
            self._channels[channel.id] = channel
            self._push_channel(channel, "sync")
            answer = {
                "kind": "api#channel",
                "id": channel.id,
                "resourceId": channel.resource_id,
                "resourceUri": channel.resource_uri,
                "expiration": str(channel.expiration_ms),
            }
            if channel.token is not None:
                answer["token"] = channel.token
            return Response(200, answer)

    @route("POST", r"/calendar/v3/channels/stop")
    def channels_stop(self, request: Request) -> Response:
        with self._lock:
            user = self._authorize(request, "calendar")
            body = request.json() or {}
            channel = self._channels.get(str(body.get("id")))
            if channel is None or channel.resource_id != body.get("resourceId") or channel.user != user:
                raise HttpError(404, "notFound", f"Channel '{body.get('id')}' not found for project 'concord-local'")
            del self._channels[channel.id]
            return Response(204, None)

    def _notify_channels(self, mailbox: _Mailbox, state: str) -> None:
        now_ms = int(time.time() * 1000)
        for channel in list(self._channels.values()):
            if channel.user != mailbox.user:
                continue
            if channel.expiration_ms is not None and channel.expiration_ms < now_ms:
                del self._channels[channel.id]  # expired channels are gone, not renewed
                continue
            channel.message_number += _random.randint(1, 7)  # increasing, not consecutive; not crypto
            self._push_channel(channel, state)

    def _push_channel(self, channel: _Channel, state: str) -> None:
        headers = {
            "Content-Type": "application/json; utf-8",
            "X-Goog-Channel-ID": channel.id,
            "X-Goog-Resource-ID": channel.resource_id,
            "X-Goog-Resource-URI": channel.resource_uri,
            "X-Goog-Resource-State": state,
            "X-Goog-Message-Number": str(channel.message_number),
        }
        if channel.token is not None:
            headers["X-Goog-Channel-Token"] = channel.token
        if channel.expiration_ms is not None:
            headers["X-Goog-Channel-Expiration"] = formatdate(channel.expiration_ms / 1000, usegmt=True)
        self.pusher.send(channel.address, b"", headers)

    # ------------------------------------------------------------------------------------ People

    def _people_user(self, request: Request) -> _Mailbox:
        return self._mailbox(self._authorize(request, "people"))

    def _person_fields(self, request: Request, name: str, *, required: bool) -> set[str]:
        raw = request.arg(name) or request.arg("requestMask.includeField")
        if not raw:
            if required:
                raise HttpError(
                    400,
                    "INVALID_ARGUMENT",
                    f"{name} mask is required. Please specify one or more valid paths. Valid paths are documented at "
                    "https://developers.google.com/people/api/rest/v1/people/get.",
                    style="people",
                )
            return set(PERSON_FIELDS)
        fields = {f.strip().removeprefix("person.") for f in raw.split(",") if f.strip()}
        unknown = sorted(fields - PERSON_FIELDS)
        if unknown:
            raise HttpError(
                400,
                "INVALID_ARGUMENT",
                f'Invalid {name} mask path: "{unknown[0]}". Valid paths are documented at '
                "https://developers.google.com/people/api/rest/v1/people/get.",
                style="people",
            )
        return fields

    def _person_out(self, mailbox: _Mailbox, record: _Record, fields: set[str]) -> dict[str, Any]:
        body = record.body
        source = {"type": "CONTACT", "id": body["resourceName"].removeprefix("people/c"), "etag": body["etag"]}
        out: dict[str, Any] = {"resourceName": body["resourceName"], "etag": body["etag"]}
        if record.deleted:
            out["metadata"] = {
                "sources": [{**source, "updateTime": body["updateTime"]}],
                "deleted": True,
                "objectType": "PERSON",
            }
            return out
        item_meta = {"primary": True, "source": {"type": "CONTACT", "id": source["id"]}}
        for name in sorted(fields & _PERSON_LIST_FIELDS):
            values = body.get(name)
            if values:
                out[name] = [{"metadata": item_meta, **v} for v in values]
                if name == "names":
                    out[name] = [_display_names(v) for v in out[name]]
        if "memberships" in fields:
            out["memberships"] = [
                {
                    "metadata": {"source": {"type": "CONTACT", "id": source["id"]}},
                    "contactGroupMembership": {"contactGroupId": g, "contactGroupResourceName": f"contactGroups/{g}"},
                }
                for g in sorted(record.groups)
            ]
        if "metadata" in fields:
            out["metadata"] = {"sources": [{**source, "updateTime": body["updateTime"]}], "objectType": "PERSON"}
        return out

    def _touch_person(self, record: _Record) -> None:
        record.seq = next(self._seq)
        record.body["etag"] = "%" + _b64url(secrets.token_bytes(18))
        record.body["updateTime"] = _now_rfc3339()

    def _person(self, mailbox: _Mailbox, person_id: str) -> _Record:
        record = mailbox.people.get(f"people/{unquote(person_id)}")
        if record is None or record.deleted:
            raise HttpError(404, "NOT_FOUND", "Requested entity was not found.", style="people")
        return record

    @route("GET", r"/v1/people/me/connections")
    def connections_list(self, request: Request) -> Response:
        with self._lock:
            mailbox = self._people_user(request)
            fields = self._person_fields(request, "personFields", required=True)
            scope = f"people:{mailbox.user}"
            page_size = _int_arg(request, "pageSize", 100, 1000)
            page = self._continue(request, scope, page_size)
            if page is None:
                sync_token = request.arg("syncToken")
                if sync_token:
                    issued = self._sync_tokens.get(sync_token)
                    if issued is None or issued[0] != scope:
                        raise HttpError(
                            400,
                            "EXPIRED_SYNC_TOKEN",
                            "Sync token is expired. Clear local cache and retry call without the sync token.",
                            style="people",
                            status_name="FAILED_PRECONDITION",
                        )
                    records = [r for r in mailbox.people.values() if r.seq > issued[1]]
                else:
                    records = [r for r in mailbox.people.values() if not r.deleted]
                records.sort(key=lambda r: r.seq)
                wants_token = request.arg("requestSyncToken") == "true"
                tail: dict[str, Any] = {"nextSyncToken": self._issue_sync_token(scope)} if wants_token else {}
                live = sum(not r.deleted for r in mailbox.people.values())
                tail.update({"totalPeople": live, "totalItems": live})
                page = self._paginate(
                    request, scope, [self._person_out(mailbox, r, fields) for r in records], page_size, tail
                )
            body = {k: v for k, v in page.items() if k != "page"}
            if page["page"]:
                body["connections"] = page["page"]
            return Response(200, body)

    @route("GET", r"/v1/people/(?P<pid>[^/:]+)")
    def people_get(self, request: Request) -> Response:
        with self._lock:
            mailbox = self._people_user(request)
            fields = self._person_fields(request, "personFields", required=True)
            return Response(200, self._person_out(mailbox, self._person(mailbox, request.params["pid"]), fields))

    @route("POST", r"/v1/people:createContact")
    def people_create(self, request: Request) -> Response:
        with self._lock:
            mailbox = self._people_user(request)
            fields = self._person_fields(request, "personFields", required=False)
            person = request.json() or {}
            _validate_people(person, "Person", "person")
            resource_name = f"people/c{_random.randint(10**18, 10**19 - 1)}"  # not crypto
            record = _Record({"resourceName": resource_name}, 0, groups={"myContacts"})
            self._apply_person(mailbox, record, person, _PERSON_LIST_FIELDS | {"memberships"})
            self._touch_person(record)
            mailbox.people[resource_name] = record
            return Response(200, self._person_out(mailbox, record, fields))

    @route("PATCH", r"/v1/people/(?P<pid>[^/:]+):updateContact")
    def people_update(self, request: Request) -> Response:
        with self._lock:
            mailbox = self._people_user(request)
            record = self._person(mailbox, request.params["pid"])
            update = self._person_fields(request, "updatePersonFields", required=True)
            _check_updatable(update)
            fields = self._person_fields(request, "personFields", required=False)
            person = request.json() or {}
            _validate_people(person, "Person", "person")
            if not person.get("etag"):
                raise HttpError(400, "INVALID_ARGUMENT", "Request must set person.etag.", style="people")
            if person["etag"] != record.body["etag"]:
                raise HttpError(
                    400,
                    "FAILED_PRECONDITION",
                    "Request person.etag is different than the current person.etag. Clear local cache and get the "
                    "latest person.",
                    style="people",
                    status_name="FAILED_PRECONDITION",
                )
            self._apply_person(mailbox, record, person, update)
            self._touch_person(record)
            return Response(200, self._person_out(mailbox, record, fields))

    def _apply_person(
        self, mailbox: _Mailbox, record: _Record, person: dict[str, Any], fields: set[str] | frozenset[str]
    ) -> None:
        for name in fields & _PERSON_LIST_FIELDS:
            values = [{k: v for k, v in item.items() if k != "metadata"} for item in person.get(name) or ()]
            if values:
                record.body[name] = values
            else:
                record.body.pop(name, None)
        if "memberships" in fields and "memberships" in person:
            groups = set()
            for membership in person.get("memberships") or ():
                name = (membership.get("contactGroupMembership") or {}).get("contactGroupResourceName", "")
                group_id = name.removeprefix("contactGroups/")
                if group_id not in mailbox.groups:
                    raise HttpError(400, "INVALID_ARGUMENT", f"Contact group not found: {name}", style="people")
                groups.add(group_id)
            record.groups = groups or {"myContacts"}

    def _response_of(self, mailbox: _Mailbox, name: str, fields: set[str]) -> dict[str, Any]:
        """A ``PersonResponse`` of the batch methods."""
        record = mailbox.people.get(name)
        if record is None or record.deleted:
            return {
                "httpStatusCode": 404,
                "requestedResourceName": name,
                "status": {"code": 5, "message": "Requested entity was not found."},
            }
        return {
            "httpStatusCode": 200,
            "person": self._person_out(mailbox, record, fields),
            "requestedResourceName": name,
            "status": {},
        }

    @staticmethod
    def _batch_size(count: int, limit: int, what: str) -> None:
        if count == 0 or count > limit:
            raise HttpError(
                400, "INVALID_ARGUMENT", f"{what} must contain between 1 and {limit} items.", style="people"
            )

    @route("GET", r"/v1/people:batchGet")
    def people_batch_get(self, request: Request) -> Response:
        """people.getBatchGet: up to 200 ``resourceNames``, one ``PersonResponse`` each, in order."""
        with self._lock:
            mailbox = self._people_user(request)
            fields = self._person_fields(request, "personFields", required=True)
            names = request.query.get("resourceNames", [])
            self._batch_size(len(names), 200, "resourceNames")
            return Response(200, {"responses": [self._response_of(mailbox, n, fields) for n in names]})

    def _read_mask(self, body: dict[str, Any], name: str) -> set[str]:
        raw = str(body.get(name) or "")
        fields = {f.strip() for f in raw.split(",") if f.strip()}
        unknown = sorted(fields - PERSON_FIELDS)
        if unknown:
            raise HttpError(400, "INVALID_ARGUMENT", f'Invalid {name} path: "{unknown[0]}".', style="people")
        return fields

    @route("POST", r"/v1/people:batchCreateContacts")
    def people_batch_create(self, request: Request) -> Response:
        """Up to 200 ``contacts[].contactPerson``; ``createdPeople`` in order (``readMask`` empty: no data)."""
        with self._lock:
            mailbox = self._people_user(request)
            body = request.json() or {}
            _validate_people(body, "_BatchCreateContactsRequest", "")
            contacts = body.get("contacts") or []
            self._batch_size(len(contacts), 200, "contacts")
            fields = self._read_mask(body, "readMask")
            created = []
            for contact in contacts:
                resource_name = f"people/c{_random.randint(10**18, 10**19 - 1)}"  # not crypto
                record = _Record({"resourceName": resource_name}, 0, groups={"myContacts"})
                self._apply_person(
                    mailbox, record, contact.get("contactPerson") or {}, _PERSON_LIST_FIELDS | {"memberships"}
                )
                self._touch_person(record)
                mailbox.people[resource_name] = record
                created.append(self._response_of(mailbox, resource_name, fields))
            if not fields:
                for response in created:
                    response.pop("person")
            return Response(200, {"createdPeople": created})

    @route("POST", r"/v1/people:batchUpdateContacts")
    def people_batch_update(self, request: Request) -> Response:
        """Up to 200 ``contacts`` (resource name → person with its current etag), all or none: one stale etag or
        unknown person fails the request (400), as People's ``BatchUpdateContactsErrorDetails`` do."""
        with self._lock:
            mailbox = self._people_user(request)
            body = request.json() or {}
            _validate_people(body, "_BatchUpdateContactsRequest", "")
            contacts: dict[str, Any] = body.get("contacts") or {}
            self._batch_size(len(contacts), 200, "contacts")
            update = self._read_mask(body, "updateMask")
            if not update:
                raise HttpError(400, "INVALID_ARGUMENT", "updateMask is required.", style="people")
            _check_updatable(update)
            fields = self._read_mask(body, "readMask")
            records = {}
            for name, person in contacts.items():
                record = mailbox.people.get(name)
                if record is None or record.deleted:
                    raise HttpError(404, "NOT_FOUND", f"Requested entity was not found: {name}", style="people")
                if not person.get("etag"):
                    raise HttpError(400, "INVALID_ARGUMENT", "Request must set person.etag.", style="people")
                if person["etag"] != record.body["etag"]:
                    raise HttpError(
                        400,
                        "FAILED_PRECONDITION",
                        f"Request person.etag is different than the current person.etag for {name}. Clear local "
                        "cache and get the latest person.",
                        style="people",
                        status_name="FAILED_PRECONDITION",
                    )
                records[name] = record
            for name, record in records.items():
                self._apply_person(mailbox, record, contacts[name], update)
                self._touch_person(record)
            result = {name: self._response_of(mailbox, name, fields) for name in records}
            return Response(200, {"updateResult": result})

    @route("POST", r"/v1/people:batchDeleteContacts")
    def people_batch_delete(self, request: Request) -> Response:
        """Up to 500 ``resourceNames``, all or none (an unknown one: 404)."""
        with self._lock:
            mailbox = self._people_user(request)
            body = request.json() or {}
            _validate_people(body, "_BatchDeleteContactsRequest", "")
            names = body.get("resourceNames") or []
            self._batch_size(len(names), 500, "resourceNames")
            records = [mailbox.people.get(n) for n in names]
            if any(r is None or r.deleted for r in records):
                raise HttpError(404, "NOT_FOUND", "Requested entity was not found.", style="people")
            for record in records:
                assert record is not None
                record.deleted = True
                record.groups.clear()
                self._touch_person(record)
            return Response(200, {})

    @route("DELETE", r"/v1/people/(?P<pid>[^/:]+):deleteContact")
    def people_delete(self, request: Request) -> Response:
        with self._lock:
            mailbox = self._people_user(request)
            record = self._person(mailbox, request.params["pid"])
            record.deleted = True
            record.groups.clear()
            self._touch_person(record)
            return Response(200, {})

    def _group_out(self, mailbox: _Mailbox, group: dict[str, Any]) -> dict[str, Any]:
        group_id = group["resourceName"].removeprefix("contactGroups/")
        members = sum(1 for r in mailbox.people.values() if not r.deleted and group_id in r.groups)
        return {**group, "memberCount": members} if members else dict(group)

    @route("GET", r"/v1/contactGroups")
    def groups_list(self, request: Request) -> Response:
        with self._lock:
            mailbox = self._people_user(request)
            groups = [self._group_out(mailbox, g) for g in mailbox.groups.values()]
            return Response(
                200,
                {"contactGroups": groups, "totalItems": len(groups), "nextSyncToken": _b64url(secrets.token_bytes(12))},
            )

    @route("POST", r"/v1/contactGroups")
    def groups_create(self, request: Request) -> Response:
        with self._lock:
            mailbox = self._people_user(request)
            body = request.json() or {}
            _validate_people(body, "_CreateContactGroupRequest", "")
            name = str((body.get("contactGroup") or {}).get("name") or "").strip()
            if not name:
                raise HttpError(400, "INVALID_ARGUMENT", "Contact group name must not be empty.", style="people")
            if any(g["name"] == name for g in mailbox.groups.values()):
                raise HttpError(409, "ALREADY_EXISTS", "Contact group name already exists.", style="people")
            return Response(200, self._create_group(mailbox, name))

    def _create_group(self, mailbox: _Mailbox, name: str) -> dict[str, Any]:
        group_id = secrets.token_hex(8)
        group = {
            "resourceName": f"contactGroups/{group_id}",
            "etag": _b64url(secrets.token_bytes(9)),
            "metadata": {"updateTime": _now_rfc3339()},
            "groupType": "USER_CONTACT_GROUP",
            "name": name,
            "formattedName": name,
        }
        mailbox.groups[group_id] = group
        return group

    @route("GET", r"/v1/contactGroups/(?P<gid>[^/:]+)")
    def groups_get(self, request: Request) -> Response:
        with self._lock:
            mailbox = self._people_user(request)
            group = mailbox.groups.get(unquote(request.params["gid"]))
            if group is None:
                raise HttpError(404, "NOT_FOUND", "Requested entity was not found.", style="people")
            return Response(200, self._group_out(mailbox, group))

    @route("POST", r"/v1/contactGroups/(?P<gid>[^/:]+)/members:modify")
    def groups_modify(self, request: Request) -> Response:
        with self._lock:
            mailbox = self._people_user(request)
            group_id = unquote(request.params["gid"])
            if group_id not in mailbox.groups:
                raise HttpError(404, "NOT_FOUND", "Requested entity was not found.", style="people")
            body = request.json() or {}
            not_found: list[str] = []
            last_group: list[str] = []
            for name in body.get("resourceNamesToAdd") or ():
                record = mailbox.people.get(name)
                if record is None or record.deleted:
                    not_found.append(name)
                elif group_id not in record.groups:
                    record.groups.add(group_id)
                    self._touch_person(record)
            for name in body.get("resourceNamesToRemove") or ():
                record = mailbox.people.get(name)
                if record is None or record.deleted:
                    not_found.append(name)
                elif record.groups == {group_id}:
                    last_group.append(name)
                elif group_id in record.groups:
                    record.groups.discard(group_id)
                    self._touch_person(record)
            answer: dict[str, Any] = {}
            if not_found:
                answer["notFoundResourceNames"] = not_found
            if last_group:
                answer["canNotRemoveLastContactGroupResourceNames"] = last_group
            return Response(200, answer)

    # ------------------------------------------------------------------------------------- batch

    @route("POST", r"/batch(?:/gmail/v1|/calendar/v3|/people/v1)?")
    def batch(self, request: Request) -> Response:
        """Google's HTTP batch (the ``batchPath`` of the discovery documents: ``batch`` for Gmail and People,
        ``batch/calendar/v3``; ``/batch/gmail/v1`` as Gmail's guide writes it): a ``multipart/mixed`` body of
        ``application/http`` parts, each an inner request that inherits the outer headers (the bearer token),
        answered by a ``multipart/mixed`` of inner responses with ``Content-ID: <response-…>``. Gmail takes at
        most 100 calls a batch, the others 1000."""
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("multipart/mixed") or "boundary=" not in content_type:
            raise HttpError(400, "badContent", "Unsupported content with type: " + content_type)
        message = BytesParser().parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + request.body)
        payload = message.get_payload() if message.is_multipart() else []
        assert isinstance(payload, list)
        parts: list[Any] = payload  # the parts of a multipart message are messages
        limit = 100 if any(b"/gmail/" in _part_bytes(p)[:300] for p in parts) else 1000
        if len(parts) > limit:
            raise HttpError(400, "invalid", f"A batch request cannot contain more than {limit} requests")
        boundary = "batch_" + secrets.token_hex(12)
        out: list[bytes] = []
        for part in parts:
            inner = self._inner_request(_part_bytes(part), request)
            answer = self.dispatch(inner)
            status_line = f"HTTP/1.1 {answer.status} {_REASONS.get(answer.status, 'Error')}"
            content_id = str(part.get("Content-ID") or "").strip("<>")
            out.append(
                f"--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <response-{content_id}>\r\n\r\n"
                f"{status_line}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".encode()
                + answer.encode()
                + b"\r\n"
            )
        out.append(f"--{boundary}--\r\n".encode())
        return Response(200, b"".join(out), content_type=f"multipart/mixed; boundary={boundary}")

    @staticmethod
    def _inner_request(raw: bytes, outer: Request) -> Request:
        head, _, body = raw.partition(b"\r\n\r\n") if b"\r\n\r\n" in raw else raw.partition(b"\n\n")
        lines = head.decode().splitlines()
        method, target, *_ = (lines[0].split(" ") + ["", ""])[:3]
        headers = dict(outer.headers)
        headers.pop("content-type", None)
        headers.pop("content-length", None)
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        parts = urlsplit(target)
        return Request(method, parts.path, parse_qs(parts.query, keep_blank_values=True), headers, body.strip())

    # ------------------------------------------------------------------------------------- Gmail

    def _gmail(self, request: Request) -> _Mailbox:
        user = self._authorize(request, "gmail")
        user_id = unquote(request.params["uid"])
        if user_id not in ("me", user):
            raise HttpError(403, "forbidden", f"Delegation denied for {user}")
        return self._mailbox(user)

    @route("POST", r"/gmail/v1/users/(?P<uid>[^/]+)/watch")
    def gmail_watch(self, request: Request) -> Response:
        with self._lock:
            mailbox = self._gmail(request)
            body = request.json() or {}
            topic = str(body.get("topicName") or "")
            parts = topic.split("/")
            if len(parts) != 4 or parts[0] != "projects" or parts[2] != "topics" or not parts[1] or not parts[3]:
                raise HttpError(
                    400, "invalidArgument", "Invalid topicName does not match projects/SOME-PROJECT/topics/SOME-TOPIC"
                )
            behavior = str(body.get("labelFilterBehavior") or body.get("labelFilterAction") or "include").lower()
            expiration = int(time.time() * 1000) + 7 * 86_400_000
            mailbox.watch = {
                "topic": topic,
                "labelIds": list(body.get("labelIds") or ()),
                "behavior": behavior,
                "expiration": expiration,
            }
            return Response(200, {"historyId": str(mailbox.history_id), "expiration": str(expiration)})

    @route("POST", r"/gmail/v1/users/(?P<uid>[^/]+)/stop")
    def gmail_stop(self, request: Request) -> Response:
        with self._lock:
            mailbox = self._gmail(request)
            mailbox.watch = None
            return Response(204, None)

    @route("GET", r"/gmail/v1/users/(?P<uid>[^/]+)/profile")
    def gmail_profile(self, request: Request) -> Response:
        with self._lock:
            mailbox = self._gmail(request)
            threads = {m["threadId"] for m in mailbox.messages.values()}
            return Response(
                200,
                {
                    "emailAddress": mailbox.user,
                    "messagesTotal": len(mailbox.messages),
                    "threadsTotal": len(threads),
                    "historyId": str(mailbox.history_id),
                },
            )

    @route("GET", r"/gmail/v1/users/(?P<uid>[^/]+)/history")
    def gmail_history(self, request: Request) -> Response:
        with self._lock:
            mailbox = self._gmail(request)
            scope = f"history:{mailbox.user}"
            page_size = _int_arg(request, "maxResults", 100, 500)
            page = self._continue(request, scope, page_size)
            if page is None:
                raw = request.arg("startHistoryId")
                if not raw or not raw.isdigit():
                    raise HttpError(400, "invalidArgument", "Invalid startHistoryId")
                start = int(raw)
                if start < mailbox.history_floor:
                    raise HttpError(404, "notFound", "Requested entity was not found.")
                types = set(request.query.get("historyTypes", []))
                label = request.arg("labelId")
                records = [
                    h
                    for h in mailbox.history
                    if int(h["id"]) > start
                    and (not types or "messageAdded" in types)
                    and (not label or any(label in a["message"]["labelIds"] for a in h["messagesAdded"]))
                ]
                page = self._paginate(request, scope, records, page_size, {})
            body: dict[str, Any] = {k: v for k, v in page.items() if k != "page"}
            if page["page"]:
                body["history"] = page["page"]
            body["historyId"] = str(mailbox.history_id)
            return Response(200, body)

    @route("GET", r"/gmail/v1/users/(?P<uid>[^/]+)/messages")
    def gmail_messages_list(self, request: Request) -> Response:
        with self._lock:
            mailbox = self._gmail(request)
            scope = f"messages:{mailbox.user}"
            page_size = _int_arg(request, "maxResults", 100, 500)
            page = self._continue(request, scope, page_size)
            if page is None:
                labels = set(request.query.get("labelIds", []))
                include_spam = request.arg("includeSpamTrash") == "true"
                found = [
                    m
                    for m in mailbox.messages.values()
                    if labels <= set(m["labelIds"])
                    and (include_spam or not {"SPAM", "TRASH"} & set(m["labelIds"]))
                    and _matches_query(m, request.arg("q") or "")
                ]
                found.sort(key=lambda m: int(m["internalDate"]), reverse=True)
                refs = [{"id": m["id"], "threadId": m["threadId"]} for m in found]
                page = self._paginate(request, scope, refs, page_size, {})
                page["resultSizeEstimate"] = len(refs)
            body = {k: v for k, v in page.items() if k != "page"}
            if page["page"]:
                body["messages"] = page["page"]
            body.setdefault("resultSizeEstimate", len(page["page"]))
            return Response(200, body)

    @route("GET", r"/gmail/v1/users/(?P<uid>[^/]+)/messages/(?P<mid>[^/]+)")
    def gmail_message_get(self, request: Request) -> Response:
        with self._lock:
            mailbox = self._gmail(request)
            message_id = unquote(request.params["mid"])
            if any(c not in "0123456789abcdef" for c in message_id):
                raise HttpError(400, "invalidArgument", "Invalid id value")
            message = mailbox.messages.get(message_id)
            if message is None:
                raise HttpError(404, "notFound", "Requested entity was not found.")
            return Response(200, _message_out(message, request))

    def deliver_email(
        self,
        user: str,
        *,
        sender: str,
        to: list[str] | tuple[str, ...],
        subject: str,
        cc: list[str] | tuple[str, ...] = (),
        body: str = "",
        label_ids: list[str] | tuple[str, ...] = ("INBOX", "UNREAD"),
        thread_id: str | None = None,
        date: datetime | None = None,
    ) -> dict[str, Any]:
        """Put a new message into ``user``'s mailbox (bumping its history id) and notify a watch on it.

        Returns ``{"id", "threadId", "historyId"}``.
        """
        with self._lock:
            mailbox = self._mailbox(user)
            mailbox.history_id += _random.randint(1, 9)  # Gmail's ids grow unevenly; not crypto
            when = date or datetime.now(UTC)
            message_id = secrets.token_hex(8)
            headers = [
                {"name": "From", "value": sender},
                {"name": "To", "value": ", ".join(to)},
                *([{"name": "Cc", "value": ", ".join(cc)}] if cc else []),
                {"name": "Subject", "value": subject},
                {"name": "Date", "value": format_datetime(when)},
                {
                    "name": "Message-ID",
                    "value": f"<{secrets.token_hex(12)}@{parseaddr(sender)[1].rpartition('@')[2] or 'mail'}>",
                },
            ]
            text = body or f"{subject}: a message from {sender}."
            message = {
                "id": message_id,
                "threadId": thread_id or message_id,
                "labelIds": list(label_ids),
                "snippet": text[:200],
                "historyId": str(mailbox.history_id),
                "internalDate": str(int(when.timestamp() * 1000)),
                "sizeEstimate": 512 + len(text),
                "_headers": headers,
                "_body": text,
            }
            mailbox.messages[message_id] = message
            ref = {"id": message_id, "threadId": message["threadId"]}
            mailbox.history.append(
                {
                    "id": str(mailbox.history_id),
                    "messages": [ref],
                    "messagesAdded": [{"message": {**ref, "labelIds": list(label_ids)}}],
                }
            )
            self._gmail_changed(mailbox, set(label_ids))
            return {"id": message_id, "threadId": message["threadId"], "historyId": str(mailbox.history_id)}

    def _gmail_changed(self, mailbox: _Mailbox, labels: set[str]) -> None:
        watch = mailbox.watch
        if watch is None or watch["expiration"] < time.time() * 1000:
            return
        filtered = set(watch["labelIds"])
        if filtered and ((watch["behavior"] == "include") != bool(filtered & labels)):
            return
        if mailbox.push_timer is not None:
            return  # a notification is already due within the second; it will carry the newest history id
        delay = mailbox.last_push + 1.0 - time.time()
        if delay <= 0:
            self._publish_gmail(mailbox)
        else:
            mailbox.push_timer = threading.Timer(delay, self._publish_due, args=(mailbox,))
            mailbox.push_timer.daemon = True
            mailbox.push_timer.start()

    def _publish_due(self, mailbox: _Mailbox) -> None:
        with self._lock:
            if mailbox.push_timer is None:
                return  # cancelled by a reset
            mailbox.push_timer = None
            self._publish_gmail(mailbox)

    def _publish_gmail(self, mailbox: _Mailbox) -> None:
        assert mailbox.watch is not None
        mailbox.last_push = time.time()
        data = json.dumps({"emailAddress": mailbox.user, "historyId": mailbox.history_id}).encode()
        message_id = str(_random.randint(10**15, 10**16 - 1))  # not crypto
        published = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        self.pubsub_published.append({"topic": mailbox.watch["topic"], "data": data, "messageId": message_id})
        for subscription in self._subscriptions:
            if subscription.topic != mailbox.watch["topic"]:
                continue
            envelope = {
                "message": {
                    "data": base64.b64encode(data).decode(),
                    "attributes": {},
                    "messageId": message_id,
                    "message_id": message_id,
                    "publishTime": published,
                    "publish_time": published,
                },
                "subscription": subscription.name,
            }
            headers = {
                "Content-Type": "application/json",
                "Authorization": f"Bearer {self._oidc_token(subscription)}",
                "User-Agent": "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)",
            }
            self.pusher.send(subscription.endpoint, json.dumps(envelope).encode(), headers)

    def _oidc_token(self, subscription: _Subscription) -> str:
        now = int(time.time())
        subject = str(abs(hash(subscription.service_account)) % 10**21).rjust(21, "1")
        claims = {
            "aud": subscription.audience,
            "azp": subject,
            "email": subscription.service_account,
            "email_verified": True,
            "exp": now + 3600,
            "iat": now,
            "iss": "https://accounts.google.com",
            "sub": subject,
        }
        return jwt.encode(claims, self._push_key, algorithm="RS256", headers={"kid": self.push_key_id, "typ": "JWT"})

    # ------------------------------------------------------------------------------------- admin

    def _admin(self, request: Request) -> Response:
        action = request.path.removeprefix("/_sandbox/google/")
        if not request.path.startswith("/_sandbox/google/") or request.method != "POST":
            return super()._admin(request)
        spec = request.json() or {}
        if action == "expire_sync_tokens":
            self.expire_sync_tokens()
        elif action == "expire_history":
            self.expire_history(spec.get("user"))
        elif action == "expire_channels":
            self.expire_channels()
        elif action == "fail_after_commit":
            self.fail_after_commit(int(spec.get("calls", 1)), status=spec.get("status", 503))
        elif action == "delete_calendar":
            self.delete_calendar(spec.get("user", seed.GOOGLE_USER))
        elif action == "deliver":
            return Response(
                200,
                self.deliver_email(
                    spec.get("user", seed.GOOGLE_USER),
                    sender=spec["from"],
                    to=spec.get("to") or [spec.get("user", seed.GOOGLE_USER)],
                    cc=spec.get("cc") or (),
                    subject=spec.get("subject", ""),
                    body=spec.get("body", ""),
                    label_ids=spec.get("labelIds") or ("INBOX", "UNREAD"),
                ),
            )
        elif action == "invite":
            return Response(
                200, self.invite(spec.get("user", seed.GOOGLE_USER), spec["event"], organizer=spec["organizer"])
            )
        elif action == "subscriptions":
            self.add_push_subscription(
                spec["topic"],
                spec["endpoint"],
                audience=spec.get("audience"),
                service_account=spec.get("serviceAccount", DEFAULT_PUSH_ACCOUNT),
                name=spec.get("name", "projects/concord-local/subscriptions/gmail-push"),
            )
        else:
            return Response(404, {"error": f"unknown admin action POST {action}"})
        return Response(200, {"done": action})

    # -------------------------------------------------------------------------------------- seed

    def seed(self) -> None:
        """``seed.GOOGLE_USER``: a "Salesforce Sync" group with the people flagged ``in_google`` (plus one
        contact outside it), the ``in_google`` meetings on the primary calendar, and a few messages."""
        user = seed.GOOGLE_USER
        with self._lock:
            mailbox = self._mailbox(user)
            group = self._create_group(mailbox, "Salesforce Sync")
            group_id = group["resourceName"].removeprefix("contactGroups/")
            outsider = seed.Person(
                "Quinn",
                "Outsider",
                "quinn@elsewhere.example",
                "Elsewhere",
                "Plumber",
                "+1 555 0100",
                False,
                False,
                True,
            )
            for person in [p for p in seed.PEOPLE if p.in_google] + [outsider]:
                resource_name = f"people/c{_random.randint(10**18, 10**19 - 1)}"  # not crypto
                groups = {"myContacts"} if person is outsider else {"myContacts", group_id}
                record = _Record({"resourceName": resource_name}, 0, groups=groups)
                record.body.update(
                    {
                        "names": [{"givenName": person.first, "familyName": person.last}],
                        "emailAddresses": [{"value": person.email, "type": "work"}],
                        "phoneNumbers": [{"value": person.phone, "type": "work"}],
                        "organizations": [{"name": person.company, "title": person.title}],
                    }
                )
                self._touch_person(record)
                mailbox.people[resource_name] = record
            for meeting in (m for m in seed.MEETINGS if m.in_google):
                event_id = secrets.token_hex(13)
                record = _Record(
                    {
                        "kind": "calendar#event",
                        "id": event_id,
                        "status": "confirmed",
                        "htmlLink": f"https://www.google.com/calendar/event?eid={_b64url(event_id.encode())}",
                        "created": _now_rfc3339(),
                        "summary": meeting.subject,
                        "location": meeting.location,
                        "creator": {"email": user, "self": True},
                        "organizer": {"email": user, "self": True},
                        "start": {"dateTime": meeting.start, "timeZone": "UTC"},
                        "end": {"dateTime": meeting.end, "timeZone": "UTC"},
                        "iCalUID": meeting.ical_uid,
                        "sequence": 0,
                        "attendees": [{"email": user, "organizer": True, "self": True, "responseStatus": "accepted"}]
                        + [{"email": a, "responseStatus": "needsAction"} for a in meeting.attendees],
                        "reminders": {"useDefault": True},
                        "eventType": "default",
                    },
                    0,
                )
                self._touch_event(mailbox, record, _now_rfc3339())
                mailbox.events[event_id] = record
        self.deliver_email(user, sender="Ada Lovelace <ada@analytical.example>", to=[user], subject="Engine demo notes")
        self.deliver_email(
            user,
            sender=f"Sam <{user}>",
            to=["alan@bletchley.example"],
            subject="Re: Bombe schedule",
            label_ids=("SENT",),
        )
        self.deliver_email(
            user,
            sender="Donald Knuth <don@stanford.example>",
            to=[user],
            cc=["fran@ibm.example"],
            subject="Lunch on Friday?",
        )


class _Unauthorized(Exception):
    """Raised by :meth:`GoogleSandbox._authorize`; answered with Google's exact 401."""


_REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}


def _part_bytes(part: Any) -> bytes:
    payload = part.get_payload(decode=False)
    return payload.encode() if isinstance(payload, str) else bytes(payload)


class _DropConnection(Exception):
    """Raised out of the request handler to close the connection with no answer (a fault after commit)."""


# ------------------------------------------------------------------------------------------ helpers

_SHORT_LIVED = (
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
    "Check your iat and exp values in the JWT claim."
)
_EVENT_READ_ONLY = frozenset(
    {"kind", "etag", "id", "htmlLink", "created", "updated", "creator", "organizer", "iCalUID"}
)
# What a guest may set on their own copy of someone else's meeting: "the invitee can ... to some extent also
# modify their copy of the event — for example, change the color it has in their calendar, and add a
# reminder" (Calendar API, Sharing and attendees); reminders are "for the authenticated user" and
# transparency whether the event "blocks time on the calendar" (Event resource reference).
# extendedProperties.private ("private to the copy of the event that appears on this calendar") is handled
# apart, since its sibling "shared" is not the guest's.
_GUEST_COPY_FIELDS = frozenset({"reminders", "colorId", "transparency"})


def _call_signature(request: Request) -> str:
    return json.dumps(sorted((k, v) for k, v in request.query.items() if k != "pageToken"))


def _oauth_error(code: str, description: str) -> Response:
    return Response(400, {"error": code, "error_description": description})


def _system_group(group_id: str, formatted: str) -> dict[str, Any]:
    return {
        "resourceName": f"contactGroups/{group_id}",
        "etag": _b64url(secrets.token_bytes(9)),
        "groupType": "SYSTEM_CONTACT_GROUP",
        "name": group_id,
        "formattedName": formatted,
    }


def _display_names(name: dict[str, Any]) -> dict[str, Any]:
    given, family = name.get("givenName", ""), name.get("familyName", "")
    display = " ".join(p for p in (given, family) if p)
    last_first = ", ".join(p for p in (family, given) if p)
    return {**name, "displayName": display, "displayNameLastFirst": last_first, "unstructuredName": display}


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """PATCH semantics: objects merge, arrays and scalars replace, ``null`` clears."""
    merged: dict[str, Any] = json.loads(json.dumps(base))
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _when(point: dict[str, Any] | None) -> datetime | None:
    if not point:
        return None
    raw = point.get("dateTime") or point.get("date")
    if not raw:
        return None
    try:
        parsed = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        raise HttpError(400, "invalid", "Invalid value for: " + str(raw)) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _check_times(event: dict[str, Any]) -> None:
    if event.get("status") == "cancelled":
        return
    if not event.get("start"):
        raise HttpError(400, "required", "Missing start time.")
    if not event.get("end"):
        raise HttpError(400, "required", "Missing end time.")
    start, end = _when(event["start"]), _when(event["end"])
    if start is None or end is None:
        raise HttpError(400, "required", "Start and end times must either both be date or both be dateTime.")
    if end < start:
        raise HttpError(400, "timeRangeEmpty", "The specified time range is empty.")


def _in_window(event: dict[str, Any], time_min: str | None, time_max: str | None) -> bool:
    start, end = _when(event.get("start")), _when(event.get("end"))
    lower = _when({"dateTime": time_min}) if time_min else None
    upper = _when({"dateTime": time_max}) if time_max else None
    if start is None or end is None:
        return True  # a cancelled tombstone carries no times
    return (lower is None or end > lower) and (upper is None or start < upper)


def _mark_attendees(event: dict[str, Any], user: str) -> None:
    organizer = (event.get("organizer") or {}).get("email")
    for attendee in event.get("attendees") or ():
        attendee.setdefault("responseStatus", "needsAction")
        if _same_address(attendee.get("email"), user):
            attendee["self"] = True
        if organizer and _same_address(attendee.get("email"), organizer):
            attendee["organizer"] = True


def _same_address(a: Any, b: Any) -> bool:
    return isinstance(a, str) and isinstance(b, str) and a.lower() == b.lower()


def _organises(event: dict[str, Any], user: str) -> bool:
    organizer = event.get("organizer") or {}
    return bool(organizer.get("self")) or _same_address(organizer.get("email"), user)


def _may_change_meeting(event: dict[str, Any], user: str) -> bool:
    """The organiser may change the meeting; a guest only if the organiser let guests modify it."""
    return _organises(event, user) or event.get("guestsCanModify") is True


def _guest_addresses(event: dict[str, Any], writer: str) -> list[str]:
    """Who would be mailed about a change ``writer`` makes: every attendee but the writer, lower-cased."""
    addresses = [str(a["email"]).lower() for a in event.get("attendees") or () if a.get("email")]
    return [a for a in dict.fromkeys(addresses) if a != writer.lower()]


def _has_google_calendar(address: str, organizer: str) -> bool:
    """Whether a guest uses Google Calendar, as far as the sandbox can tell: a user of the organiser's
    Workspace domain, or a consumer Google account."""
    domain = address.rpartition("@")[2].lower()
    return domain in ("gmail.com", "googlemail.com") or domain == organizer.rpartition("@")[2].lower()


def _guest_copy(stored: dict[str, Any], changes: dict[str, Any], *, replace: bool) -> tuple[dict[str, Any], set[str]]:
    """A guest's copy with the per-copy properties the request sets, and the shared ones it tried to change."""
    copy: dict[str, Any] = json.loads(json.dumps(stored))
    ignored: set[str] = set()
    if replace:  # a full update resets what belongs to the copy and the request leaves out
        copy["reminders"] = {"useDefault": True}
        for key in ("colorId", "transparency"):
            copy.pop(key, None)
        copy.get("extendedProperties", {}).pop("private", None)
    for key, value in changes.items():
        if key in _EVENT_READ_ONLY or key in ("attendees", "attendeesOmitted"):
            continue
        if key == "extendedProperties" and isinstance(value, dict):
            ignored |= _guest_extended_properties(copy, stored, value)
        elif key not in _GUEST_COPY_FIELDS:
            if value != stored.get(key):
                ignored.add(key)
        elif value is None:
            copy.pop(key, None)
        else:
            copy[key] = _merge(copy.get(key) or {}, value) if isinstance(value, dict) and not replace else value
    if not copy.get("extendedProperties"):
        copy.pop("extendedProperties", None)
    return copy, ignored


def _guest_extended_properties(copy: dict[str, Any], stored: dict[str, Any], sent: dict[str, Any]) -> set[str]:
    """Take ``private`` (the copy's own); report a change to ``shared`` (every copy's), which is not taken."""
    if "private" in sent:
        copy["extendedProperties"] = _merge(copy.get("extendedProperties") or {}, {"private": sent["private"]})
    shared = (stored.get("extendedProperties") or {}).get("shared")
    return {"extendedProperties.shared"} if "shared" in sent and sent["shared"] != shared else set()


def _guest_attendees(
    stored: list[dict[str, Any]], changes: dict[str, Any], user: str
) -> tuple[list[dict[str, Any]], bool]:
    """The guest list after a guest's request: only the guest's own answer is taken. Also says whether the
    request tried to add, alter or (without ``attendeesOmitted``) remove anyone else."""
    if "attendees" not in changes:
        return json.loads(json.dumps(stored)), False
    sent = [a for a in changes.get("attendees") or () if isinstance(a, dict)]
    others = [a for a in sent if not _same_address(a.get("email"), user)]
    refused = any(_attendee_changed(a, stored) for a in others)
    if not changes.get("attendeesOmitted"):
        listed = {str(a.get("email", "")).lower() for a in others}
        refused |= any(str(a.get("email", "")).lower() not in listed | {user.lower()} for a in stored)
    return _answer_only(stored, [a for a in sent if a not in others]), refused


def _answer_only(stored: list[dict[str, Any]], sent: list[Any]) -> list[dict[str, Any]]:
    """The attendee list with only the answers (status, comment, extra guests) ``sent`` gives for its entries."""
    merged: list[dict[str, Any]] = json.loads(json.dumps(stored))
    for attendee in (a for a in sent if isinstance(a, dict)):
        match = next((a for a in merged if _same_address(a.get("email"), attendee.get("email"))), None)
        if match is not None:
            match.update({k: attendee[k] for k in ("responseStatus", "comment", "additionalGuests") if k in attendee})
    return merged


def _attendee_changed(sent: dict[str, Any], stored: Any) -> bool:
    """Whether a guest's request adds someone else or alters someone else's entry (which Google ignores)."""
    match = next((a for a in stored if _same_address(a.get("email"), sent.get("email"))), None)
    if match is None:
        return True
    return any(match.get(k) != v for k, v in sent.items() if k not in ("self", "organizer", "id"))


def _matches_query(message: dict[str, Any], query: str) -> bool:
    headers = {h["name"].lower(): h["value"].lower() for h in message["_headers"]}
    for term in query.lower().split():
        key, _, value = term.partition(":")
        if value and key in ("from", "to", "subject"):
            if value not in headers.get(key, ""):
                return False
        elif term not in (message["snippet"].lower() + " " + headers.get("subject", "")):
            return False
    return True


def _message_out(message: dict[str, Any], request: Request) -> dict[str, Any]:
    fmt = request.arg("format", "full")
    out = {k: v for k, v in message.items() if not k.startswith("_")}
    if fmt == "minimal":
        return out
    if fmt == "raw":
        lines = "".join(f"{h['name']}: {h['value']}\r\n" for h in message["_headers"])
        out["raw"] = _b64url((lines + "\r\n" + message["_body"]).encode())
        return out
    headers = message["_headers"]
    if fmt == "metadata":
        wanted = {h.lower() for h in request.query.get("metadataHeaders", [])}
        if wanted:
            headers = [h for h in headers if h["name"].lower() in wanted]
        out["payload"] = {"mimeType": "text/plain", "headers": headers}
        return out
    data = message["_body"].encode()
    out["payload"] = {
        "partId": "",
        "mimeType": "text/plain",
        "filename": "",
        "headers": [*headers, {"name": "Content-Type", "value": 'text/plain; charset="UTF-8"'}],
        "body": {"size": len(data), "data": _b64url(data)},
    }
    return out


# ------------------------------------------------------------------------------------------ schemas

# The request schemas of what Concord writes, taken from the discovery documents Google publishes
# (calendar v3 ``Event``, people v1 ``Person`` and ``ContactGroup``, with what they reference): a property
# maps to "string", "integer" (int32), "int64", "number", "boolean", "any", a schema name, ``[item]`` for an
# array, ``{"*": value}`` for a map, or an inline object. Carried here, not read from a client library, so
# that the sandbox depends on nothing but its own knowledge of the service.
_SCHEMAS: dict[str, dict[str, dict[str, Any]]] = {
    "calendar": {
        "ConferenceData": {
            "conferenceId": "string",
            "conferenceSolution": "ConferenceSolution",
            "createRequest": "CreateConferenceRequest",
            "entryPoints": ["EntryPoint"],
            "notes": "string",
            "parameters": "ConferenceParameters",
            "signature": "string",
        },
        "ConferenceParameters": {"addOnParameters": "ConferenceParametersAddOnParameters"},
        "ConferenceParametersAddOnParameters": {"parameters": {"*": "string"}},
        "ConferenceRequestStatus": {"statusCode": "string"},
        "ConferenceSolution": {"iconUri": "string", "key": "ConferenceSolutionKey", "name": "string"},
        "ConferenceSolutionKey": {"type": "string"},
        "CreateConferenceRequest": {
            "conferenceSolutionKey": "ConferenceSolutionKey",
            "requestId": "string",
            "status": "ConferenceRequestStatus",
        },
        "EntryPoint": {
            "accessCode": "string",
            "entryPointFeatures": ["string"],
            "entryPointType": "string",
            "label": "string",
            "meetingCode": "string",
            "passcode": "string",
            "password": "string",
            "pin": "string",
            "regionCode": "string",
            "uri": "string",
        },
        "Event": {
            "anyoneCanAddSelf": "boolean",
            "attachments": ["EventAttachment"],
            "attendees": ["EventAttendee"],
            "attendeesOmitted": "boolean",
            "birthdayProperties": "EventBirthdayProperties",
            "colorId": "string",
            "conferenceData": "ConferenceData",
            "created": "string",
            "creator": {"displayName": "string", "email": "string", "id": "string", "self": "boolean"},
            "description": "string",
            "end": "EventDateTime",
            "endTimeUnspecified": "boolean",
            "etag": "string",
            "eventType": "string",
            "extendedProperties": {"private": {"*": "string"}, "shared": {"*": "string"}},
            "focusTimeProperties": "EventFocusTimeProperties",
            "gadget": {
                "display": "string",
                "height": "integer",
                "iconLink": "string",
                "link": "string",
                "preferences": {"*": "string"},
                "title": "string",
                "type": "string",
                "width": "integer",
            },
            "guestsCanInviteOthers": "boolean",
            "guestsCanModify": "boolean",
            "guestsCanSeeOtherGuests": "boolean",
            "hangoutLink": "string",
            "htmlLink": "string",
            "iCalUID": "string",
            "id": "string",
            "kind": "string",
            "location": "string",
            "locked": "boolean",
            "organizer": {"displayName": "string", "email": "string", "id": "string", "self": "boolean"},
            "originalStartTime": "EventDateTime",
            "outOfOfficeProperties": "EventOutOfOfficeProperties",
            "privateCopy": "boolean",
            "recurrence": ["string"],
            "recurringEventId": "string",
            "reminders": {"overrides": ["EventReminder"], "useDefault": "boolean"},
            "sequence": "integer",
            "source": {"title": "string", "url": "string"},
            "start": "EventDateTime",
            "status": "string",
            "summary": "string",
            "transparency": "string",
            "updated": "string",
            "visibility": "string",
            "workingLocationProperties": "EventWorkingLocationProperties",
        },
        "EventAttachment": {
            "fileId": "string",
            "fileUrl": "string",
            "iconLink": "string",
            "mimeType": "string",
            "title": "string",
        },
        "EventAttendee": {
            "additionalGuests": "integer",
            "comment": "string",
            "displayName": "string",
            "email": "string",
            "id": "string",
            "optional": "boolean",
            "organizer": "boolean",
            "resource": "boolean",
            "responseStatus": "string",
            "self": "boolean",
        },
        "EventBirthdayProperties": {"contact": "string", "customTypeName": "string", "type": "string"},
        "EventDateTime": {"date": "string", "dateTime": "string", "timeZone": "string"},
        "EventFocusTimeProperties": {"autoDeclineMode": "string", "chatStatus": "string", "declineMessage": "string"},
        "EventOutOfOfficeProperties": {"autoDeclineMode": "string", "declineMessage": "string"},
        "EventReminder": {"method": "string", "minutes": "integer"},
        "EventWorkingLocationProperties": {
            "customLocation": {"label": "string"},
            "homeOffice": "any",
            "officeLocation": {
                "buildingId": "string",
                "deskId": "string",
                "floorId": "string",
                "floorSectionId": "string",
                "label": "string",
            },
            "type": "string",
        },
    },
    "people": {
        "_CreateContactGroupRequest": {"contactGroup": "ContactGroup", "readGroupFields": "string"},
        "_BatchCreateContactsRequest": {
            "contacts": [{"contactPerson": "Person"}],
            "readMask": "string",
            "sources": ["string"],
        },
        "_BatchUpdateContactsRequest": {
            "contacts": {"*": "Person"},
            "updateMask": "string",
            "readMask": "string",
            "sources": ["string"],
        },
        "_BatchDeleteContactsRequest": {"resourceNames": ["string"]},
        "Address": {
            "city": "string",
            "country": "string",
            "countryCode": "string",
            "extendedAddress": "string",
            "formattedType": "string",
            "formattedValue": "string",
            "metadata": "FieldMetadata",
            "poBox": "string",
            "postalCode": "string",
            "region": "string",
            "streetAddress": "string",
            "type": "string",
        },
        "AgeRangeType": {"ageRange": "string", "metadata": "FieldMetadata"},
        "Biography": {"contentType": "string", "metadata": "FieldMetadata", "value": "string"},
        "Birthday": {"date": "Date", "metadata": "FieldMetadata", "text": "string"},
        "BraggingRights": {"metadata": "FieldMetadata", "value": "string"},
        "CalendarUrl": {"formattedType": "string", "metadata": "FieldMetadata", "type": "string", "url": "string"},
        "ClientData": {"key": "string", "metadata": "FieldMetadata", "value": "string"},
        "ContactGroup": {
            "clientData": ["GroupClientData"],
            "etag": "string",
            "formattedName": "string",
            "groupType": "string",
            "memberCount": "integer",
            "memberResourceNames": ["string"],
            "metadata": "ContactGroupMetadata",
            "name": "string",
            "resourceName": "string",
        },
        "ContactGroupMembership": {"contactGroupId": "string", "contactGroupResourceName": "string"},
        "ContactGroupMetadata": {"deleted": "boolean", "updateTime": "string"},
        "CoverPhoto": {"default": "boolean", "metadata": "FieldMetadata", "url": "string"},
        "Date": {"day": "integer", "month": "integer", "year": "integer"},
        "DomainMembership": {"inViewerDomain": "boolean"},
        "EmailAddress": {
            "displayName": "string",
            "formattedType": "string",
            "metadata": "FieldMetadata",
            "type": "string",
            "value": "string",
        },
        "Event": {"date": "Date", "formattedType": "string", "metadata": "FieldMetadata", "type": "string"},
        "ExternalId": {"formattedType": "string", "metadata": "FieldMetadata", "type": "string", "value": "string"},
        "FieldMetadata": {"primary": "boolean", "source": "Source", "sourcePrimary": "boolean", "verified": "boolean"},
        "FileAs": {"metadata": "FieldMetadata", "value": "string"},
        "Gender": {"addressMeAs": "string", "formattedValue": "string", "metadata": "FieldMetadata", "value": "string"},
        "GroupClientData": {"key": "string", "value": "string"},
        "ImClient": {
            "formattedProtocol": "string",
            "formattedType": "string",
            "metadata": "FieldMetadata",
            "protocol": "string",
            "type": "string",
            "username": "string",
        },
        "Interest": {"metadata": "FieldMetadata", "value": "string"},
        "Locale": {"metadata": "FieldMetadata", "value": "string"},
        "Location": {
            "buildingId": "string",
            "current": "boolean",
            "deskCode": "string",
            "floor": "string",
            "floorSection": "string",
            "metadata": "FieldMetadata",
            "type": "string",
            "value": "string",
        },
        "Membership": {
            "contactGroupMembership": "ContactGroupMembership",
            "domainMembership": "DomainMembership",
            "metadata": "FieldMetadata",
        },
        "MiscKeyword": {"formattedType": "string", "metadata": "FieldMetadata", "type": "string", "value": "string"},
        "Name": {
            "displayName": "string",
            "displayNameLastFirst": "string",
            "familyName": "string",
            "givenName": "string",
            "honorificPrefix": "string",
            "honorificSuffix": "string",
            "metadata": "FieldMetadata",
            "middleName": "string",
            "phoneticFamilyName": "string",
            "phoneticFullName": "string",
            "phoneticGivenName": "string",
            "phoneticHonorificPrefix": "string",
            "phoneticHonorificSuffix": "string",
            "phoneticMiddleName": "string",
            "unstructuredName": "string",
        },
        "Nickname": {"metadata": "FieldMetadata", "type": "string", "value": "string"},
        "Occupation": {"metadata": "FieldMetadata", "value": "string"},
        "Organization": {
            "costCenter": "string",
            "current": "boolean",
            "department": "string",
            "domain": "string",
            "endDate": "Date",
            "formattedType": "string",
            "fullTimeEquivalentMillipercent": "integer",
            "jobDescription": "string",
            "location": "string",
            "metadata": "FieldMetadata",
            "name": "string",
            "phoneticName": "string",
            "startDate": "Date",
            "symbol": "string",
            "title": "string",
            "type": "string",
        },
        "Person": {
            "addresses": ["Address"],
            "ageRange": "string",
            "ageRanges": ["AgeRangeType"],
            "biographies": ["Biography"],
            "birthdays": ["Birthday"],
            "braggingRights": ["BraggingRights"],
            "calendarUrls": ["CalendarUrl"],
            "clientData": ["ClientData"],
            "coverPhotos": ["CoverPhoto"],
            "emailAddresses": ["EmailAddress"],
            "etag": "string",
            "events": ["Event"],
            "externalIds": ["ExternalId"],
            "fileAses": ["FileAs"],
            "genders": ["Gender"],
            "imClients": ["ImClient"],
            "interests": ["Interest"],
            "locales": ["Locale"],
            "locations": ["Location"],
            "memberships": ["Membership"],
            "metadata": "PersonMetadata",
            "miscKeywords": ["MiscKeyword"],
            "names": ["Name"],
            "nicknames": ["Nickname"],
            "occupations": ["Occupation"],
            "organizations": ["Organization"],
            "phoneNumbers": ["PhoneNumber"],
            "photos": ["Photo"],
            "relations": ["Relation"],
            "relationshipInterests": ["RelationshipInterest"],
            "relationshipStatuses": ["RelationshipStatus"],
            "residences": ["Residence"],
            "resourceName": "string",
            "sipAddresses": ["SipAddress"],
            "skills": ["Skill"],
            "taglines": ["Tagline"],
            "urls": ["Url"],
            "userDefined": ["UserDefined"],
        },
        "PersonMetadata": {
            "deleted": "boolean",
            "linkedPeopleResourceNames": ["string"],
            "objectType": "string",
            "previousResourceNames": ["string"],
            "sources": ["Source"],
        },
        "PhoneNumber": {
            "canonicalForm": "string",
            "formattedType": "string",
            "metadata": "FieldMetadata",
            "type": "string",
            "value": "string",
        },
        "Photo": {"default": "boolean", "metadata": "FieldMetadata", "url": "string"},
        "ProfileMetadata": {"objectType": "string", "userTypes": ["string"]},
        "Relation": {"formattedType": "string", "metadata": "FieldMetadata", "person": "string", "type": "string"},
        "RelationshipInterest": {"formattedValue": "string", "metadata": "FieldMetadata", "value": "string"},
        "RelationshipStatus": {"formattedValue": "string", "metadata": "FieldMetadata", "value": "string"},
        "Residence": {"current": "boolean", "metadata": "FieldMetadata", "value": "string"},
        "SipAddress": {"formattedType": "string", "metadata": "FieldMetadata", "type": "string", "value": "string"},
        "Skill": {"metadata": "FieldMetadata", "value": "string"},
        "Source": {
            "etag": "string",
            "id": "string",
            "profileMetadata": "ProfileMetadata",
            "type": "string",
            "updateTime": "string",
        },
        "Tagline": {"metadata": "FieldMetadata", "value": "string"},
        "Url": {"formattedType": "string", "metadata": "FieldMetadata", "type": "string", "value": "string"},
        "UserDefined": {"key": "string", "metadata": "FieldMetadata", "value": "string"},
    },
}


def _check_updatable(fields: set[str]) -> None:
    read_only = sorted(fields - _UPDATABLE_PERSON_FIELDS)
    if read_only:
        raise HttpError(
            400,
            "INVALID_ARGUMENT",
            f'Invalid updatePersonFields mask path: "{read_only[0]}". Valid paths are documented at '
            "https://developers.google.com/people/api/rest/v1/people/updateContact.",
            style="people",
        )


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


class _Invalid(Exception):
    def __init__(self, kind: str, path: str, detail: str):
        super().__init__(detail)
        self.kind, self.path, self.detail = kind, path, detail


def _check(value: Any, spec: Any, api: str, path: str) -> None:
    """Raise :class:`_Invalid` for an unknown property or a value of the wrong JSON type (proto3 JSON rules:
    an int32 or int64 may be a number or a string of digits; null means "not set")."""
    if value is None or spec == "any":
        return
    if isinstance(spec, list):
        if not isinstance(value, list):
            raise _Invalid("type", path, "array")
        for index, item in enumerate(value):
            _check(item, spec[0], api, f"{path}[{index}]")
        return
    name = spec if isinstance(spec, str) and spec in _SCHEMAS[api] else None
    if name is not None:
        spec = _SCHEMAS[api][name]
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise _Invalid("type", path, name or "object")
        for key, item in value.items():
            if "*" in spec:
                _check(item, spec["*"], api, f"{path}[{key}]")
            elif key not in spec:
                raise _Invalid("unknown", path, key)
            else:
                _check(item, spec[key], api, f"{path}.{key}" if path else key)
        return
    if not _scalar_ok(value, spec):
        raise _Invalid("type", path, spec)


def _scalar_ok(value: Any, spec: str) -> bool:
    if spec in ("integer", "int64"):
        number = isinstance(value, int) and not isinstance(value, bool)
        return number or (isinstance(value, str) and value.lstrip("-").isdigit())
    if spec == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if spec == "boolean":
        return isinstance(value, bool)
    return isinstance(value, str)


def _validate_calendar(body: Any, schema: str = "Event") -> None:
    """Calendar's answers to a body it cannot read: 400 ``invalid`` with ``Invalid JSON payload received.
    Unknown name "x": Cannot find field.`` (the ESF front end every Google API now sits behind) and
    ``Invalid value for: <value> is not a valid value`` for a wrong type (Calendar's errors guide)."""
    if not isinstance(body, dict):
        raise HttpError(400, "parseError", "Parse Error")
    try:
        _check(body, schema, "calendar", "")
    except _Invalid as exc:
        if exc.kind == "unknown":
            where = f" at '{exc.path}'" if exc.path else ""
            raise HttpError(
                400, "invalid", f'Invalid JSON payload received. Unknown name "{exc.detail}"{where}: Cannot find field.'
            ) from None
        raise HttpError(400, "invalid", f"Invalid value for: {_at(body, exc.path)!r} is not a valid value") from None


def _validate_people(body: Any, schema: str, root: str) -> None:
    """People (gRPC transcoding) refuses what does not parse into its messages with 400 INVALID_ARGUMENT, a
    ``google.rpc.BadRequest`` field violation, and the messages ``Invalid JSON payload received. Unknown name
    "x" at 'person': Cannot find field.`` or ``Invalid value at 'person.birthdays[0].date'
    (type.googleapis.com/google.type.Date), "1990-02-03"`` (field paths in the proto's snake_case)."""
    if not isinstance(body, dict):
        raise HttpError(400, "INVALID_ARGUMENT", "Invalid JSON payload received.", style="people")
    try:
        _check(body, schema, "people", "")
    except _Invalid as exc:
        proto_path = ".".join(p for p in (root, _snake(exc.path)) if p)
        if exc.kind == "unknown":
            where = f" at '{proto_path}'" if proto_path else ""
            message = f'Invalid JSON payload received. Unknown name "{exc.detail}"{where}: Cannot find field.'
        else:
            proto_type = {
                "string": "TYPE_STRING",
                "integer": "TYPE_INT32",
                "int64": "TYPE_INT64",
                "boolean": "TYPE_BOOL",
                "number": "TYPE_DOUBLE",
                "array": "TYPE_MESSAGE",
            }.get(exc.detail, f"type.googleapis.com/{_PROTO_NAMES.get(exc.detail, 'google.people.v1.' + exc.detail)}")
            message = f"Invalid value at '{proto_path}' ({proto_type}), {json.dumps(_at(body, exc.path))}"
        raise HttpError(
            400, "INVALID_ARGUMENT", message, style="people", violation={"field": proto_path, "description": message}
        ) from None


_PROTO_NAMES = {"Date": "google.type.Date", "FieldMetadata": "google.people.v1.FieldMetadata"}


def _at(body: Any, path: str) -> Any:
    """The value at a path such as ``birthdays[0].date`` (for error messages)."""
    value = body
    for part in path.replace("[", ".[").split("."):
        if not part:
            continue
        if part.startswith("["):
            key = part[1:-1]
            value = value[int(key)] if isinstance(value, list) else value[key]
        else:
            value = value[part]
    return value


# --------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    """``python -m local.sandboxes.google [--port N] [--push-endpoint URL --topic projects/P/topics/T]``."""
    parser = argparse.ArgumentParser(description="Google Workspace sandbox (Calendar, People, Gmail) with seed data")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = a free one)")
    parser.add_argument("--push-endpoint", help="Pub/Sub push endpoint for Gmail notifications")
    parser.add_argument("--topic", default="projects/concord-local/topics/gmail", help="the Gmail watch topic")
    parser.add_argument("--audience", help="OIDC audience of the pushes (default: the endpoint)")
    args = parser.parse_args(argv)
    sandbox = GoogleSandbox(port=args.port)
    sandbox.start()
    sandbox.seed()
    if args.push_endpoint:
        sandbox.add_push_subscription(args.topic, args.push_endpoint, audience=args.audience)
    with tempfile.NamedTemporaryFile("w", prefix="concord-google-sa-", suffix=".json", delete=False) as key_file:
        json.dump(sandbox.service_account_info(), key_file)
    print(f"Google sandbox: {sandbox.url}", flush=True)
    print(f"CA bundle: {ca_bundle_path()}", flush=True)
    print(f"Service account key file: {key_file.name}", flush=True)
    print(f"Seeded user: {seed.GOOGLE_USER}; Ctrl-C to stop", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("stopping", flush=True)
    finally:
        sandbox.stop()


if __name__ == "__main__":
    main()
