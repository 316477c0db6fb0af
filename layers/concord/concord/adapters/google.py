"""Google Workspace client: Calendar events, People contacts and Gmail metadata, as one user at a time.

Concord acts *as* each mailbox user through a service account with domain-wide delegation: it signs a
short JWT (``iss`` the service account, ``sub`` the user, ``scope``, ``aud`` the token URL) and trades it
for an access token, cached per (user, scope) until shortly before it expires. A 401 on an API call
means the token was revoked or expired early: the client drops it, signs a new assertion and retries
the call once; a second 401 is an :class:`AuthError`.

Error mapping (Google's JSON ``{"error": {"code", "message", "status", "errors": [{reason}]}}``):

* 429, 403 ``rateLimitExceeded``/``userRateLimitExceeded`` (in ``errors[].reason``, ``error.details[].reason``
  or as ``RESOURCE_EXHAUSTED``) and 5xx → :class:`TransientError` (the shared transport backs off, honouring
  ``Retry-After``); 403 ``dailyLimitExceeded`` → :class:`TransientError` with ``retry_after`` an hour (defer);
* Calendar 410 ``fullSyncRequired``, People 400 ``EXPIRED_SYNC_TOKEN`` and Gmail history 404 →
  :class:`ResyncRequired` (the cursor is gone: do a full sync);
* Calendar 412 (``If-Match``) and People ``updateContact`` 400 ``FAILED_PRECONDITION`` (stale ``etag``) →
  :class:`ConflictError`;
* other 404 (and Calendar 410 ``deleted``) → :class:`NotFoundError`; other 4xx → :class:`PermanentError`.

Writes never mail attendees unless asked: every Calendar write sends ``sendUpdates=none`` by default.

The service layer depends on :class:`GoogleMailbox` only; :class:`GoogleClient` is the production
implementation and ``local.sandboxes.google`` the server it is contract-tested against.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import ssl
import threading
import time
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import quote
from uuid import uuid4

import httpx
import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from concord.adapters.http import (
    DEFAULT_TIMEOUT,
    AuthError,
    ConflictError,
    ConnectorError,
    NotFoundError,
    PermanentError,
    Redactor,
    ResyncRequired,
    RetryPolicy,
    TokenExpired,
    TransientError,
    error_text,
    parse_retry_after,
)
from concord.adapters.http import HttpTransport as _HttpTransport
from concord.observability import trace_httpx

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

SendUpdates = Literal["none", "all", "externalOnly"]

# --------------------------------------------------------------------------------------- interface


class GoogleMailbox(Protocol):
    """What the service layer needs from a Google Workspace mailbox. ``user`` is the user's email."""

    # Calendar
    def list_events(
        self, user: str, *, calendar_id: str = "primary", sync_token: str | None = None, ical_uid: str | None = None
    ) -> Delta:
        """All events (full sync, no ``sync_token``) or the changes since ``sync_token`` (deleted ones
        with ``status: "cancelled"``), every page followed. Raises :class:`ResyncRequired` (410)."""
        ...

    def get_event(self, user: str, event_id: str, *, calendar_id: str = "primary") -> dict[str, Any]: ...

    def get_events(
        self, user: str, event_ids: Sequence[str], *, calendar_id: str = "primary"
    ) -> dict[str, dict[str, Any] | None]:
        """Many events in HTTP batches: event id → event, ``None`` for one that no longer exists."""
        ...

    def insert_event(
        self,
        user: str,
        event: Mapping[str, Any],
        *,
        calendar_id: str = "primary",
        send_updates: SendUpdates = "none",
        event_id: str | None = None,
    ) -> dict[str, Any]:
        """Create under a client-chosen id (``event["id"]``, ``event_id`` or a random one); a create that
        already happened (409) returns the existing event instead of making a second one."""
        ...

    def patch_event(
        self,
        user: str,
        event_id: str,
        changes: Mapping[str, Any],
        *,
        etag: str | None = None,
        calendar_id: str = "primary",
        send_updates: SendUpdates = "none",
    ) -> dict[str, Any]:
        """Patch with ``If-Match: etag`` when given; a stale etag raises :class:`ConflictError`."""
        ...

    def delete_event(
        self,
        user: str,
        event_id: str,
        *,
        etag: str | None = None,
        calendar_id: str = "primary",
        send_updates: SendUpdates = "none",
    ) -> None: ...

    def watch_events(
        self,
        user: str,
        *,
        channel_id: str,
        address: str,
        token: str | None = None,
        expiration_ms: int | None = None,
        calendar_id: str = "primary",
    ) -> Channel: ...

    def stop_channel(self, user: str, channel_id: str, resource_id: str) -> None: ...

    # People
    def list_contacts(self, user: str, *, sync_token: str | None = None) -> Delta:
        """All contacts, or the changes since ``sync_token`` (deleted ones carry ``metadata.deleted``).
        Raises :class:`ResyncRequired` when the token expired."""
        ...

    def get_contact(self, user: str, resource_name: str) -> dict[str, Any]: ...

    def create_contact(self, user: str, person: Mapping[str, Any], *, marker: str | None = None) -> dict[str, Any]:
        """Create with Concord's ``marker`` in ``clientData``; an ambiguous failure is resolved by finding
        the marker before the create is sent again."""
        ...

    def update_contact(
        self, user: str, resource_name: str, person: Mapping[str, Any], update_fields: Iterable[str]
    ) -> dict[str, Any]:
        """``person`` must carry the current ``etag``; a stale one raises :class:`ConflictError`."""
        ...

    def delete_contact(self, user: str, resource_name: str) -> None: ...

    def ensure_contact_group(self, user: str, name: str) -> str:
        """The resource name of the user's contact group called ``name``, created if missing."""
        ...

    def modify_group_members(
        self, user: str, group: str, *, add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> list[str]:
        """Add/remove people (resource names) to a group; returns the names Google did not find."""
        ...

    # Gmail
    def watch_mailbox(self, user: str, topic: str, *, label_ids: Iterable[str] = ("INBOX",)) -> MailboxWatch: ...

    def stop_mailbox_watch(self, user: str) -> None: ...

    def mailbox_history_id(self, user: str) -> int:
        """The mailbox's current history id: the cursor to store after a full sync."""
        ...

    def list_history(self, user: str, start_history_id: int) -> History:
        """Ids of messages added since ``start_history_id``. Raises :class:`ResyncRequired` (404)."""
        ...

    def list_message_ids(self, user: str, *, query: str | None = None, limit: int = 500) -> list[str]: ...

    def get_message(self, user: str, message_id: str) -> dict[str, Any]:
        """Metadata only: ids, labels, snippet, ``internalDate`` and the headers in :data:`MESSAGE_HEADERS`."""
        ...


# ------------------------------------------------------------------------------------------ values


@dataclass(frozen=True)
class ServiceAccount:
    """A service account key with domain-wide delegation (the fields of Google's JSON key file)."""

    client_email: str
    private_key: str = field(repr=False)  # PEM; never printed
    private_key_id: str | None = None
    token_uri: str = "https://oauth2.googleapis.com/token"

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> ServiceAccount:
        """From the parsed JSON key file (as stored in Secrets Manager)."""
        return cls(
            client_email=str(info["client_email"]),
            private_key=str(info["private_key"]),
            private_key_id=info.get("private_key_id"),
            token_uri=str(info.get("token_uri") or "https://oauth2.googleapis.com/token"),
        )


@dataclass(frozen=True)
class GoogleEndpoints:
    """Base URLs of the three APIs (no trailing slash). ``for_base`` points all of them at one host."""

    calendar: str = "https://www.googleapis.com/calendar/v3"
    people: str = "https://people.googleapis.com/v1"
    gmail: str = "https://gmail.googleapis.com/gmail/v1"

    @classmethod
    def for_base(cls, base_url: str) -> GoogleEndpoints:
        base = base_url.rstrip("/")
        return cls(calendar=f"{base}/calendar/v3", people=f"{base}/v1", gmail=f"{base}/gmail/v1")


@dataclass(frozen=True)
class Delta:
    """The result of a full or incremental listing: every item of every page, and the next cursor."""

    items: list[dict[str, Any]]
    next_sync_token: str | None


@dataclass(frozen=True)
class Channel:
    """A Calendar push channel (``api#channel``)."""

    id: str
    resource_id: str
    resource_uri: str
    expiration_ms: int | None
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class MailboxWatch:
    history_id: int
    expiration_ms: int


@dataclass(frozen=True)
class History:
    """Messages added since the start id (oldest first, without duplicates) and the mailbox's history id."""

    message_ids: list[str]
    history_id: int


SCOPE_CALENDAR = "https://www.googleapis.com/auth/calendar"
SCOPE_CONTACTS = "https://www.googleapis.com/auth/contacts"
SCOPE_GMAIL = "https://www.googleapis.com/auth/gmail.readonly"

PERSON_FIELDS = "names,emailAddresses,phoneNumbers,organizations,addresses,birthdays,memberships,metadata,clientData"
MAX_GMAIL_BATCH = 50  # calls per Gmail HTTP batch: Gmail takes 100, and advises 50 against rate limiting
MAX_PEOPLE_BATCH = 200  # batchGet, batchCreateContacts, batchUpdateContacts
MAX_PEOPLE_DELETE_BATCH = 500  # batchDeleteContacts
#: The ``clientData`` key of the marker Concord puts on the contacts it creates (see ``create_contact``).
CLIENT_MARKER_KEY = "concord.marker"
MESSAGE_HEADERS = ("From", "To", "Cc", "Subject", "Date", "Message-ID")

# Calendar also answers 403 ``quotaExceeded`` ("Calendar usage limits exceeded") and asks for backoff.
_RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded", "RATE_LIMIT_EXCEEDED"})
# A spent daily quota (403 usageLimits ``dailyLimitExceeded``) comes back only when the quota resets: no wait
# within one invocation can help, so it is handed back at once with a long ``retry_after`` to defer on.
_DAILY_REASONS = frozenset({"dailyLimitExceeded", "dailyLimitExceededUnreg"})
DAILY_LIMIT_BACKOFF_S = 3600.0
#: Pages one listing may follow before giving up: a guard against a server that never ends a listing.
MAX_PAGES = 1000
_RESYNC_REASONS = frozenset({"fullSyncRequired", "updatedMinTooLongAgo", "EXPIRED_SYNC_TOKEN"})
# A transient answer with one of these statuses proves the request was refused before anything was written.
_NOTHING_WRITTEN = frozenset({429, 403})
_TOKEN_MARGIN_S = 120.0  # refresh this long before expiry: a call must not start with a dying token
_ASSERTION_LIFETIME_S = 3600  # Google's maximum

_log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------- classification


def _error_parts(response: httpx.Response) -> tuple[str, str, set[str]]:
    """(message, status name, reasons) of a Google error body; tolerant of non-JSON bodies."""
    try:
        body = response.json()
    except ValueError:
        return error_text(response, 200), "", set()
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return error_text(response, 200), "", set()
    reasons = {str(e.get("reason")) for e in error.get("errors") or () if isinstance(e, dict) and e.get("reason")}
    # Newer APIs (People) carry the reason in an ``ErrorInfo`` detail instead of ``errors``.
    reasons |= {str(d.get("reason")) for d in error.get("details") or () if isinstance(d, dict) and d.get("reason")}
    return str(error.get("message", ""))[:300], str(error.get("status", "")), reasons


def classify(response: httpx.Response) -> ConnectorError | None:
    """Turn a Google API response into ``None`` (usable) or the typed error it means."""
    status = response.status_code
    if status < 300:
        return None
    message, status_name, reasons = _error_parts(response)
    code = next(iter(sorted(reasons)), None) or status_name or None
    request = response.request
    what = f"{request.method} {request.url.path}: {message}"
    if status == 401:
        return TokenExpired("google", what, status=status, code=code)
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status == 403 and reasons & _DAILY_REASONS:
        return TransientError(
            "google", what, status=status, code=code, retry_after=retry_after or DAILY_LIMIT_BACKOFF_S
        )
    if status == 429 or (status == 403 and (reasons & _RATE_REASONS or status_name == "RESOURCE_EXHAUSTED")):
        return TransientError("google", what, status=status, code=code, retry_after=retry_after)
    if status >= 500:
        return TransientError("google", what, status=status, code=code, retry_after=retry_after)
    if reasons & _RESYNC_REASONS or (status == 404 and request.url.path.endswith("/history")):
        return ResyncRequired("google", what, status=status, code=code or "RESYNC")
    # People words a stale etag as 400 FAILED_PRECONDITION; Gmail uses the same status for "mail service not
    # enabled", which is no conflict: only updateContact's is one.
    stale_person = status_name == "FAILED_PRECONDITION" and request.url.path.endswith(
        (":updateContact", ":batchUpdateContacts")
    )
    if status == 412 or (status == 400 and stale_person):
        return ConflictError("google", what, status=status, code=code)
    if status in (404, 410):
        return NotFoundError("google", what, status=status, code=code)
    if status == 403:
        return AuthError("google", what, status=status, code=code)
    return PermanentError("google", what, status=status, code=code)


def classify_token(response: httpx.Response) -> ConnectorError | None:
    """The OAuth token endpoint speaks RFC 6749 errors (``{"error", "error_description"}``)."""
    status = response.status_code
    if status < 300:
        return None
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status == 429 or status >= 500:
        return TransientError("google", f"token endpoint answered {status}", status=status, retry_after=retry_after)
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    code = body.get("error") if isinstance(body.get("error"), str) else ""  # RFC 6749: a string
    description = str(body.get("error_description", ""))[:200]
    return AuthError("google", f"token request refused: {description}", status=status, code=code or None)


# -------------------------------------------------------------------------------------------- tokens


class _TokenCache:
    """Access tokens per (user, scope), obtained with signed JWT assertions. Thread-safe."""

    def __init__(self, account: ServiceAccount, transport: _HttpTransport, clock: Callable[[], float]):
        self._account = account
        self._transport = transport
        self._clock = clock
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._signing_key: rsa.RSAPrivateKey | None = None

    def get(self, user: str, scope: str) -> str:
        with self._lock:
            cached = self._tokens.get((user, scope))
        if cached and cached[1] - _TOKEN_MARGIN_S > self._clock():
            return cached[0]
        token, expires_at = self._fetch(user, scope)
        with self._lock:
            self._tokens[(user, scope)] = (token, expires_at)
        return token

    def drop(self, user: str, scope: str) -> None:
        with self._lock:
            self._tokens.pop((user, scope), None)

    def _fetch(self, user: str, scope: str) -> tuple[str, float]:
        now = int(self._clock())
        claims = {
            "iss": self._account.client_email,
            "sub": user,
            "scope": scope,
            "aud": self._account.token_uri,
            "iat": now,
            "exp": now + _ASSERTION_LIFETIME_S,
        }
        headers = {"kid": self._account.private_key_id} if self._account.private_key_id else None
        try:
            if self._signing_key is None:  # parsing the PEM costs ~50 ms: once per warm container
                key = serialization.load_pem_private_key(self._account.private_key.encode(), password=None)
                if not isinstance(key, rsa.RSAPrivateKey):
                    raise TypeError("RS256 needs an RSA key")
                self._signing_key = key
            assertion = jwt.encode(claims, self._signing_key, algorithm="RS256", headers=headers)
        except (ValueError, TypeError, UnsupportedAlgorithm, jwt.PyJWTError):
            # The library's message could quote the key material: say only what failed (as Salesforce's client).
            raise AuthError("google", "the service account's private key could not sign the JWT assertion") from None
        self._transport.redact.add_short_lived(assertion)
        response = self._transport.request(
            "POST",
            self._account.token_uri,
            data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion},
            retry=True,  # a token request creates nothing
        )
        try:
            body = response.json()
            token = str(body["access_token"])
            expires_in = float(body.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError):
            raise AuthError("google", "token endpoint answered without an access token") from None
        self._transport.redact.add_short_lived(token)
        return token, now + expires_in


# -------------------------------------------------------------------------------------------- client


class GoogleClient:
    """Production :class:`GoogleMailbox` over httpx. Safe to keep for the life of a Lambda container.

    ``time_left`` bounds retries (seconds the caller may still spend); ``sleep`` is injectable for tests;
    ``page_sizes`` holds the page size each list call asks for (Google's maxima by default).
    """

    def __init__(
        self,
        account: ServiceAccount,
        *,
        endpoints: GoogleEndpoints | None = None,
        verify: str | bool = True,
        client: httpx.Client | None = None,
        time_left: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.endpoints = endpoints or GoogleEndpoints()
        self.page_sizes = {"events": 2500, "contacts": 1000, "history": 500, "messages": 500, "groups": 1000}
        self.max_pages = MAX_PAGES
        self._redactor = Redactor()
        self._redactor.add(account.private_key)
        # httpx deprecates a CA-bundle path for ``verify``: give it a context made from the bundle.
        tls: ssl.SSLContext | bool = ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
        if client is None:
            trace_httpx()
        http = client or httpx.Client(timeout=DEFAULT_TIMEOUT, verify=tls)
        common: dict[str, Any] = {
            "client": http,
            "policy": policy,
            "redactor": self._redactor,
            "time_left": time_left,
            "sleep": sleep,
        }
        self.transport = _HttpTransport("google", classify, **common)
        self._token_transport = _HttpTransport("google", classify_token, **common)
        self._tokens = _TokenCache(account, self._token_transport, clock)

    def close(self) -> None:
        self.transport.close()

    # --- plumbing

    def _call(
        self,
        scope: str,
        user: str,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        retry: bool | None = None,
    ) -> httpx.Response:
        """One API call as ``user``, refreshing the token once if Google refuses it (a 401 was not processed,
        so even a create may be sent again). ``retry`` as in :meth:`HttpTransport.request`: POST/PATCH only when
        the caller knows a repeat cannot make a second record."""

        def send() -> httpx.Response:
            token = self._tokens.get(user, scope)
            auth = {**(headers or {}), "Authorization": f"Bearer {token}"}
            return self.transport.request(
                method, url, params=params, json=json, content=content, headers=auth, retry=retry
            )

        try:
            return send()
        except TokenExpired:
            self._tokens.drop(user, scope)
            _log.info("google refused an access token; refreshing it once")
        try:
            return send()
        except TokenExpired as exc:
            self._tokens.drop(user, scope)
            raise AuthError("google", str(exc).removeprefix("google: "), status=401, code=exc.code) from None

    def _json(self, scope: str, user: str, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        response = self._call(scope, user, method, url, **kwargs)
        if not response.content:
            return {}
        body = response.json()
        return body if isinstance(body, dict) else {}

    def _pages(self, scope: str, user: str, url: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every page of a list call, following ``nextPageToken``, at most :attr:`max_pages` of them
        (then :class:`PermanentError`: a listing that long is a server that never ends it, as in Graph's client)."""
        page_token: str | None = None
        for _ in range(self.max_pages):
            page = self._json(
                scope, user, "GET", url, params={**params, **({"pageToken": page_token} if page_token else {})}
            )
            yield page
            page_token = page.get("nextPageToken")
            if not page_token:
                return
        raise PermanentError("google", f"{httpx.URL(url).path}: more than {self.max_pages} pages; giving up")

    # --- Calendar

    def _events_url(self, calendar_id: str, *rest: str) -> str:
        parts = [self.endpoints.calendar, "calendars", _quote(calendar_id), "events", *(_quote(r) for r in rest)]
        return "/".join(parts)

    def list_events(
        self, user: str, *, calendar_id: str = "primary", sync_token: str | None = None, ical_uid: str | None = None
    ) -> Delta:
        params: dict[str, Any] = {"maxResults": self.page_sizes["events"]}
        if sync_token:
            params["syncToken"] = sync_token  # incompatible with time filters: the API refuses both
        elif ical_uid:
            params["iCalUID"] = ical_uid
        items: list[dict[str, Any]] = []
        next_sync: str | None = None
        for page in self._pages(SCOPE_CALENDAR, user, self._events_url(calendar_id), params):
            items.extend(page.get("items") or [])
            next_sync = page.get("nextSyncToken") or next_sync
        return Delta(items, next_sync)

    def get_event(self, user: str, event_id: str, *, calendar_id: str = "primary") -> dict[str, Any]:
        return self._json(SCOPE_CALENDAR, user, "GET", self._events_url(calendar_id, event_id))

    def insert_event(
        self,
        user: str,
        event: Mapping[str, Any],
        *,
        calendar_id: str = "primary",
        send_updates: SendUpdates = "none",
        event_id: str | None = None,
    ) -> dict[str, Any]:
        """Create an event under a client-chosen id, so that the create can be retried without a duplicate.

        The id is ``event["id"]``, else ``event_id`` (use :func:`event_id_for` on something stable, such as
        the Salesforce Event id, so a later invocation retrying the same create uses it too), else a random
        one made for this call. Calendar refuses a second insert under an id it holds (or held: a deleted
        event keeps its id) with 409 ``duplicate``; that answer means "already created", and the event
        with that id is fetched and returned (``status: "cancelled"`` if it was deleted since). Because of
        that, the insert is retried on timeouts and 5xx like an idempotent call, and a retry mails nobody
        a second time.
        """
        body = dict(event)
        body["id"] = str(body.get("id") or event_id or new_event_id())
        try:
            return self._json(
                SCOPE_CALENDAR,
                user,
                "POST",
                self._events_url(calendar_id),
                params={"sendUpdates": send_updates},
                json=body,
                retry=True,
            )
        except PermanentError as exc:
            if exc.status != 409:
                raise
        _log.info("calendar already holds the event id of a create; reading it instead")
        return self.get_event(user, body["id"], calendar_id=calendar_id)

    def patch_event(
        self,
        user: str,
        event_id: str,
        changes: Mapping[str, Any],
        *,
        etag: str | None = None,
        calendar_id: str = "primary",
        send_updates: SendUpdates = "none",
    ) -> dict[str, Any]:
        return self._json(
            SCOPE_CALENDAR,
            user,
            "PATCH",
            self._events_url(calendar_id, event_id),
            params={"sendUpdates": send_updates},
            json=dict(changes),
            headers={"If-Match": etag} if etag else None,
        )

    def delete_event(
        self,
        user: str,
        event_id: str,
        *,
        etag: str | None = None,
        calendar_id: str = "primary",
        send_updates: SendUpdates = "none",
    ) -> None:
        self._call(
            SCOPE_CALENDAR,
            user,
            "DELETE",
            self._events_url(calendar_id, event_id),
            params={"sendUpdates": send_updates},
            headers={"If-Match": etag} if etag else None,
        )

    def watch_events(
        self,
        user: str,
        *,
        channel_id: str,
        address: str,
        token: str | None = None,
        expiration_ms: int | None = None,
        calendar_id: str = "primary",
    ) -> Channel:
        if token:
            self._redactor.add_short_lived(token)
        body: dict[str, Any] = {"id": channel_id, "type": "web_hook", "address": address}
        if token:
            body["token"] = token
        if expiration_ms:
            body["expiration"] = str(expiration_ms)
        answer = self._json(SCOPE_CALENDAR, user, "POST", self._events_url(calendar_id, "watch"), json=body)
        expiration = answer.get("expiration")
        return Channel(
            id=str(answer["id"]),
            resource_id=str(answer["resourceId"]),
            resource_uri=str(answer.get("resourceUri", "")),
            expiration_ms=int(expiration) if expiration else None,
            token=answer.get("token"),
        )

    def stop_channel(self, user: str, channel_id: str, resource_id: str) -> None:
        self._call(
            SCOPE_CALENDAR,
            user,
            "POST",
            f"{self.endpoints.calendar}/channels/stop",
            json={"id": channel_id, "resourceId": resource_id},
        )

    # --- People

    def _person_url(self, resource_name: str, action: str = "") -> str:
        if not resource_name.startswith("people/"):
            raise PermanentError("google", "a person's resource name starts with 'people/'")
        return f"{self.endpoints.people}/people/{_quote(resource_name.removeprefix('people/'))}{action}"

    def list_contacts(self, user: str, *, sync_token: str | None = None) -> Delta:
        params: dict[str, Any] = {"personFields": PERSON_FIELDS, "pageSize": self.page_sizes["contacts"]}
        # Every call repeats the first call's parameters, as People requires of incremental syncs.
        params["requestSyncToken"] = "true"
        if sync_token:
            params["syncToken"] = sync_token
        items: list[dict[str, Any]] = []
        next_sync: str | None = None
        url = f"{self.endpoints.people}/people/me/connections"
        for page in self._pages(SCOPE_CONTACTS, user, url, params):
            items.extend(page.get("connections") or [])
            next_sync = page.get("nextSyncToken") or next_sync
        return Delta(items, next_sync)

    def get_contact(self, user: str, resource_name: str) -> dict[str, Any]:
        return self._json(
            SCOPE_CONTACTS, user, "GET", self._person_url(resource_name), params={"personFields": PERSON_FIELDS}
        )

    def create_contact(self, user: str, person: Mapping[str, Any], *, marker: str | None = None) -> dict[str, Any]:
        """Create a contact carrying ``clientData [{key: CLIENT_MARKER_KEY, value: marker}]``.

        People has no client-chosen id, so the marker stands in for one: ``marker`` should come from
        something stable (the Salesforce record id) so that a later invocation can find what an earlier one
        made; without it a random marker is used for this call's attempts. A create is never resent blind:
        after an answer that proves nothing was written (429, 403 rate limit) it is resent after the usual
        backoff; after an ambiguous one (timeout, dropped connection, 5xx) the user's contacts are searched
        for the marker first, and the contact found is returned instead of creating a second one.
        Caveat: People documents a propagation delay for new contacts in listings; a contact the search
        misses is found by the next sync's match-before-create through the same marker.
        """
        marker = marker or uuid4().hex
        body = with_marker(person, marker)

        def create() -> dict[str, Any]:
            return self._json(
                SCOPE_CONTACTS,
                user,
                "POST",
                f"{self.endpoints.people}/people:createContact",
                params={"personFields": PERSON_FIELDS},
                json=body,
                retry=False,
            )

        def find() -> dict[str, Any] | None:
            return self.find_contacts_by_marker(user, [marker]).get(marker)

        return self._create_once(create, find)

    def _create_once[T](self, create: Callable[[], T], find: Callable[[], T | None]) -> T:
        """Send a create; after a failure that may have been committed, look for the result before resending."""
        policy, attempt = self.transport.policy, 0
        while True:
            attempt += 1
            try:
                return create()
            except TransientError as exc:
                if exc.status not in _NOTHING_WRITTEN:
                    found = find()
                    if found is not None:
                        _log.info("a create answered %s had been committed; using what it made", exc.status)
                        return found
                wait = policy.delay(attempt, exc.retry_after)
                if attempt >= policy.max_attempts or wait >= self.transport.time_left():
                    raise
                self.transport.sleep(wait)

    def find_contacts_by_marker(self, user: str, markers: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The user's contacts carrying one of ``markers`` in ``clientData`` (see :meth:`create_contact`),
        by marker. Reads every contact: meant for resolving a failed create, not for every sync."""
        wanted = set(markers)
        found: dict[str, dict[str, Any]] = {}
        params = {"personFields": PERSON_FIELDS, "pageSize": self.page_sizes["contacts"]}
        url = f"{self.endpoints.people}/people/me/connections"
        for page in self._pages(SCOPE_CONTACTS, user, url, params):
            for person in page.get("connections") or ():
                value = contact_marker(person)
                if value in wanted:
                    found.setdefault(value, person)
        return found

    def update_contact(
        self, user: str, resource_name: str, person: Mapping[str, Any], update_fields: Iterable[str]
    ) -> dict[str, Any]:
        fields = ",".join(update_fields)
        if not person.get("etag") or not fields:
            raise PermanentError("google", "updateContact needs the person's etag and at least one field")
        return self._json(
            SCOPE_CONTACTS,
            user,
            "PATCH",
            self._person_url(resource_name, ":updateContact"),
            params={"updatePersonFields": fields, "personFields": PERSON_FIELDS},
            json=dict(person),
        )

    def batch_get_contacts(self, user: str, resource_names: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        """People by resource name (``people:batchGet``, 200 a call): None for one that does not exist."""
        found: dict[str, dict[str, Any] | None] = {}
        for chunk in _chunks(list(resource_names), MAX_PEOPLE_BATCH):
            params = [("personFields", PERSON_FIELDS), *(("resourceNames", n) for n in chunk)]
            answer = self._json(SCOPE_CONTACTS, user, "GET", f"{self.endpoints.people}/people:batchGet", params=params)
            for response in answer.get("responses") or ():
                name = str(response.get("requestedResourceName"))
                found[name] = response.get("person") if response.get("httpStatusCode", 200) == 200 else None
        return found

    def batch_create_contacts(
        self, user: str, people: Sequence[Mapping[str, Any]], *, markers: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Create contacts (``people:batchCreateContacts``, 200 a call), each with its marker in ``clientData``
        (``markers[i]`` for ``people[i]``, random ones if not given); the created people, in order.

        As :meth:`create_contact`: after an ambiguous failure the markers of the call are looked up, the
        contacts found are kept, and only the ones not found are sent again.
        """
        if markers is not None and len(markers) != len(people):
            raise ValueError("one marker per person")
        chosen = list(markers) if markers is not None else [uuid4().hex for _ in people]
        created: list[dict[str, Any]] = []
        for chunk in _chunks(list(zip(chosen, people, strict=True)), MAX_PEOPLE_BATCH):
            created.extend(self._batch_create(user, dict(chunk)))
        return created

    def _batch_create(self, user: str, people: dict[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
        done: dict[str, dict[str, Any]] = {}
        url = f"{self.endpoints.people}/people:batchCreateContacts"

        def create() -> dict[str, dict[str, Any]]:
            pending = [m for m in people if m not in done]
            body = {
                "contacts": [{"contactPerson": with_marker(people[m], m)} for m in pending],
                "readMask": PERSON_FIELDS,
            }
            answer = self._json(SCOPE_CONTACTS, user, "POST", url, json=body, retry=False)
            made = [r.get("person") or {} for r in answer.get("createdPeople") or ()]
            done.update(zip(pending, made, strict=True))
            return done

        def find() -> dict[str, dict[str, Any]] | None:
            done.update(self.find_contacts_by_marker(user, [m for m in people if m not in done]))
            return done if len(done) == len(people) else None

        result = self._create_once(create, find)
        return [result[m] for m in people]

    def batch_update_contacts(
        self, user: str, people: Mapping[str, Mapping[str, Any]], update_fields: Iterable[str]
    ) -> dict[str, dict[str, Any]]:
        """Update contacts (``people:batchUpdateContacts``, 200 a call): resource name → person carrying its
        current ``etag``; the updated people by resource name. Not resent after a failure (a resend after a
        commit would meet stale etags): a stale etag in a call raises :class:`ConflictError` and Google applies
        none of that call, so re-read and plan again."""
        fields = ",".join(update_fields)
        if not fields or any(not p.get("etag") for p in people.values()):
            raise PermanentError("google", "batchUpdateContacts needs every person's etag and at least one field")
        updated: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(list(people.items()), MAX_PEOPLE_BATCH):
            body = {"contacts": {n: dict(p) for n, p in chunk}, "updateMask": fields, "readMask": PERSON_FIELDS}
            answer = self._json(
                SCOPE_CONTACTS, user, "POST", f"{self.endpoints.people}/people:batchUpdateContacts", json=body
            )
            for name, response in (answer.get("updateResult") or {}).items():
                updated[str(name)] = response.get("person") or {}
        return updated

    def batch_delete_contacts(self, user: str, resource_names: Sequence[str]) -> None:
        """Delete contacts (``people:batchDeleteContacts``, 500 a call). Google applies a call all or none; one
        that names a contact already gone raises :class:`NotFoundError` (delete the rest one by one)."""
        for chunk in _chunks(list(resource_names), MAX_PEOPLE_DELETE_BATCH):
            self._call(
                SCOPE_CONTACTS,
                user,
                "POST",
                f"{self.endpoints.people}/people:batchDeleteContacts",
                json={"resourceNames": chunk},
            )

    def delete_contact(self, user: str, resource_name: str) -> None:
        self._call(SCOPE_CONTACTS, user, "DELETE", self._person_url(resource_name, ":deleteContact"))

    def list_contact_groups(self, user: str) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = []
        url = f"{self.endpoints.people}/contactGroups"
        for page in self._pages(SCOPE_CONTACTS, user, url, {"pageSize": self.page_sizes["groups"]}):
            groups.extend(page.get("contactGroups") or [])
        return groups

    def ensure_contact_group(self, user: str, name: str) -> str:
        for group in self.list_contact_groups(user):
            if group.get("groupType") == "USER_CONTACT_GROUP" and group.get("name") == name:
                return str(group["resourceName"])
        try:
            created = self._json(
                SCOPE_CONTACTS,
                user,
                "POST",
                f"{self.endpoints.people}/contactGroups",
                json={"contactGroup": {"name": name}},
                retry=True,  # a repeat is refused with 409, handled below
            )
        except PermanentError as exc:
            if exc.status != 409:
                raise
            # Another worker created it between our list and create: find theirs.
            for group in self.list_contact_groups(user):
                if group.get("name") == name:
                    return str(group["resourceName"])
            raise
        return str(created["resourceName"])

    def modify_group_members(
        self, user: str, group: str, *, add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> list[str]:
        body = {"resourceNamesToAdd": list(add), "resourceNamesToRemove": list(remove)}
        group_id = group.removeprefix("contactGroups/")
        answer = self._json(
            SCOPE_CONTACTS,
            user,
            "POST",
            f"{self.endpoints.people}/contactGroups/{_quote(group_id)}/members:modify",
            json=body,
            retry=True,  # adding a member twice, or removing one twice, changes nothing
        )
        return [str(n) for n in answer.get("notFoundResourceNames") or []]

    # --- Gmail

    def _gmail_url(self, user: str, *rest: str) -> str:
        return "/".join([self.endpoints.gmail, "users", _quote(user), *rest])

    def watch_mailbox(self, user: str, topic: str, *, label_ids: Iterable[str] = ("INBOX",)) -> MailboxWatch:
        body = {"topicName": topic, "labelIds": list(label_ids), "labelFilterBehavior": "include"}
        # A repeated watch replaces the first: safe to retry.
        answer = self._json(SCOPE_GMAIL, user, "POST", self._gmail_url(user, "watch"), json=body, retry=True)
        return MailboxWatch(history_id=int(answer["historyId"]), expiration_ms=int(answer["expiration"]))

    def stop_mailbox_watch(self, user: str) -> None:
        self._call(SCOPE_GMAIL, user, "POST", self._gmail_url(user, "stop"), retry=True)

    def mailbox_history_id(self, user: str) -> int:
        return int(self._json(SCOPE_GMAIL, user, "GET", self._gmail_url(user, "profile"))["historyId"])

    def list_history(self, user: str, start_history_id: int) -> History:
        params = {
            "startHistoryId": str(start_history_id),
            "historyTypes": "messageAdded",
            "maxResults": self.page_sizes["history"],
        }
        seen: dict[str, None] = {}  # insertion-ordered set: a message can appear in several records
        history_id = start_history_id
        for page in self._pages(SCOPE_GMAIL, user, self._gmail_url(user, "history"), params):
            for record in page.get("history") or []:
                for added in record.get("messagesAdded") or []:
                    seen[str(added["message"]["id"])] = None
            history_id = max(history_id, int(page.get("historyId") or 0))
        return History(list(seen), history_id)

    def list_message_ids(self, user: str, *, query: str | None = None, limit: int = 500) -> list[str]:
        params: dict[str, Any] = {"maxResults": min(limit, self.page_sizes["messages"])}
        if query:
            params["q"] = query
        ids: list[str] = []
        for page in self._pages(SCOPE_GMAIL, user, self._gmail_url(user, "messages"), params):
            ids.extend(str(m["id"]) for m in page.get("messages") or [])
            if len(ids) >= limit:
                return ids[:limit]
        return ids

    def get_message(self, user: str, message_id: str) -> dict[str, Any]:
        params = [("format", "metadata"), *(("metadataHeaders", h) for h in MESSAGE_HEADERS)]
        return self._json(SCOPE_GMAIL, user, "GET", self._gmail_url(user, "messages", message_id), params=params)

    def get_messages(self, user: str, message_ids: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        """Many messages' metadata (as :meth:`get_message`), :data:`MAX_GMAIL_BATCH` per HTTP batch request
        (``POST /batch/gmail/v1``, multipart/mixed, Gmail's guide advises at most 50): message id → message,
        None for one that no longer exists. See :meth:`_batch_reads` for retries."""
        query = "&".join(["format=metadata", *(f"metadataHeaders={quote(h)}" for h in MESSAGE_HEADERS)])
        path = httpx.URL(self._gmail_url(user, "messages")).path
        targets = {m: f"{path}/{_quote(m)}?{query}" for m in dict.fromkeys(message_ids)}
        return self._batch_reads(SCOPE_GMAIL, user, self.endpoints.gmail, "/batch/gmail/v1", targets)

    def get_events(
        self, user: str, event_ids: Sequence[str], *, calendar_id: str = "primary"
    ) -> dict[str, dict[str, Any] | None]:
        """Many events (as :meth:`get_event`) in HTTP batches (``POST /batch/calendar/v3``), 50 a batch as
        for Gmail: event id → event, None for one that no longer exists (404, or 410 ``deleted``)."""
        path = httpx.URL(self._events_url(calendar_id)).path
        targets = {e: f"{path}/{_quote(e)}" for e in dict.fromkeys(event_ids)}
        return self._batch_reads(SCOPE_CALENDAR, user, self.endpoints.calendar, "/batch/calendar/v3", targets)

    def _batch_reads(
        self, scope: str, user: str, base: str, batch_path: str, targets: Mapping[str, str]
    ) -> dict[str, dict[str, Any] | None]:
        """GETs of ``targets`` (id → path and query) through Google's HTTP batch, :data:`MAX_GMAIL_BATCH` a
        request. Inner answers that ask for a retry (429, 403 rate limit, 5xx) are sent again in a later
        batch with the usual backoff; any other inner error raises as it would alone."""
        batch_url = str(httpx.URL(base).copy_with(path=batch_path, query=None))
        found: dict[str, dict[str, Any] | None] = {}
        for chunk in _chunks(list(targets), MAX_GMAIL_BATCH):
            pending, attempt = chunk, 0
            while pending:
                attempt += 1
                retry = self._batch_get(scope, user, base, batch_url, [(i, targets[i]) for i in pending], found)
                pending = [pending[i] for i in retry.indices]
                if pending:
                    wait = self.transport.policy.delay(attempt, retry.error.retry_after if retry.error else None)
                    if retry.error and (
                        attempt >= self.transport.policy.max_attempts or wait >= self.transport.time_left()
                    ):
                        raise retry.error
                    self.transport.sleep(wait)
        return found

    def _batch_get(
        self,
        scope: str,
        user: str,
        base: str,
        batch_url: str,
        items: list[tuple[str, str]],
        found: dict[str, dict[str, Any] | None],
    ) -> _BatchRetry:
        boundary = "concord_" + uuid4().hex
        part = (
            "--{boundary}\r\nContent-Type: application/http\r\nContent-ID: <{i}>\r\n\r\nGET {target} HTTP/1.1\r\n\r\n"
        )
        body = (
            "".join(part.format(boundary=boundary, i=i, target=target) for i, (_, target) in enumerate(items))
            + f"--{boundary}--\r\n"
        )
        response = self._call(
            scope,
            user,
            "POST",
            batch_url,
            content=body.encode(),
            headers={"Content-Type": f"multipart/mixed; boundary={boundary}"},
            retry=True,  # every inner request is a read
        )
        base_path = httpx.URL(base).path
        retry = _BatchRetry([], None)
        for index, status, payload in _batch_parts(response):
            item_id, target = items[index]
            request = httpx.Request("GET", base + target.removeprefix(base_path))
            inner = httpx.Response(
                status, content=payload, headers={"Content-Type": "application/json"}, request=request
            )
            error = classify(inner)
            if error is None:
                found[item_id] = inner.json()
            elif isinstance(error, NotFoundError):
                found[item_id] = None
            elif isinstance(error, TransientError):
                retry.indices.append(index)
                retry.error = error
            else:
                raise error
        return retry


if TYPE_CHECKING:

    def _conforms(client: GoogleClient) -> GoogleMailbox:
        return client  # mypy proves the client implements the interface the service layer uses


@dataclass
class _BatchRetry:
    indices: list[int]
    error: TransientError | None


def _batch_parts(response: httpx.Response) -> Iterator[tuple[int, int, bytes]]:
    """(Content-ID index, status, body) of each inner answer of a multipart/mixed batch answer."""
    content_type = response.headers.get("Content-Type", "")
    message = BytesParser().parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + response.content)
    parts = message.get_payload() if message.is_multipart() else None
    if not isinstance(parts, list):
        raise TransientError("google", "a batch answer that is not multipart/mixed")
    for part in parts:
        if not isinstance(part, Message):
            raise TransientError("google", "a batch answer with a malformed part")
        content_id = str(part.get("Content-ID") or "").strip("<>").removeprefix("response-")
        raw = part.get_payload(decode=False)
        raw_bytes = raw.encode() if isinstance(raw, str) else b""
        head, _, body = raw_bytes.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        yield int(content_id), status, body.strip()


def _chunks[T](items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def new_event_id() -> str:
    """A random Calendar event id (base32hex, 26 characters): fine for one call's retries."""
    return base64.b32hexencode(uuid4().bytes).decode().lower().rstrip("=")


def event_id_for(key: str) -> str:
    """A Calendar event id derived from ``key`` (say, a Salesforce Event id): the same key always gives the
    same id, so any retry of the create, in this invocation or a later one, is answered 409, not duplicated.
    Calendar ids are 5–1024 characters of ``a``–``v`` and ``0``–``9`` (base32hex)."""
    digest = hashlib.sha256(f"concord:{key}".encode()).digest()
    return base64.b32hexencode(digest).decode().lower().rstrip("=")


def with_marker(person: Mapping[str, Any], marker: str) -> dict[str, Any]:
    """``person`` with Concord's marker in ``clientData`` (replacing an older marker, keeping other data)."""
    others = [d for d in person.get("clientData") or () if d.get("key") != CLIENT_MARKER_KEY]
    return {**person, "clientData": [*others, {"key": CLIENT_MARKER_KEY, "value": marker}]}


def contact_marker(person: Mapping[str, Any]) -> str | None:
    """The marker Concord put on a contact it created, or None."""
    for item in person.get("clientData") or ():
        if item.get("key") == CLIENT_MARKER_KEY and item.get("value"):
            return str(item["value"])
    return None


def _quote(segment: str) -> str:
    """Percent-encode one path segment (emails, ids, ``primary``) so it cannot alter the path."""
    return quote(segment, safe="@:")


__all__ = [
    "CLIENT_MARKER_KEY",
    "MESSAGE_HEADERS",
    "PERSON_FIELDS",
    "Channel",
    "Delta",
    "GoogleClient",
    "GoogleEndpoints",
    "GoogleMailbox",
    "History",
    "MailboxWatch",
    "ServiceAccount",
    "classify",
    "classify_token",
    "contact_marker",
    "event_id_for",
    "new_event_id",
    "with_marker",
]
