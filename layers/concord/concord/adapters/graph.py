"""Microsoft Graph (v1.0) client: contacts, events, delta, JSON batching and subscriptions, app-only.

The service layer depends on :class:`GraphMailbox` only; :class:`GraphClient` is the httpx implementation
and the sandbox in ``local/sandboxes/graph.py`` is what the contract tests run it against.

Decisions:
- App-only tokens come from the client-credentials grant, one per tenant, cached until shortly before
  ``expires_in`` runs out; a 401 ``InvalidAuthenticationToken`` refreshes the token once and retries once.
- Times are always requested in UTC (``Prefer: outlook.timezone="UTC"``): the core converts, never Graph.
- Delta and paging links are followed only when they point at the configured Graph base URL, so a
  tampered link can never carry the bearer token to another host.
- Every error is classified once (:func:`classify`) and the same function classifies each ``$batch``
  item, so a 412 inside a batch is the same :class:`ConflictError` as a 412 on its own.
- No create is retried blind: a timeout, a 5xx or a dropped connection may come after Graph committed
  it. Every created contact and event carries Concord's marker, a single-value extended property
  (:data:`MARKER_PROPERTY`) holding a client-made key, and every event also carries that key as its
  ``transactionId`` (Graph answers a second POST with the same transactionId with the first event). After
  an ambiguous failure the client looks the record up by its marker, and posts again only if it is not
  there. A 429 is not ambiguous: Graph did not take the request.
- A ``$batch`` keeps every answer it got: a sub-request left unanswered, or a chunk whose call failed,
  comes back as a :class:`BatchResult` holding a :class:`TransientError`, never as an exception that
  would throw the other answers away.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import httpx

from concord.adapters.http import (
    IDEMPOTENT_METHODS,
    AuthError,
    ConflictError,
    ConnectorError,
    HttpTransport,
    NotFoundError,
    PermanentError,
    Redactor,
    ResyncRequired,
    RetryPolicy,
    TokenExpired,
    TransientError,
    parse_retry_after,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

SYSTEM = "graph"
GRAPH_URL = "https://graph.microsoft.com/v1.0"
LOGIN_URL = "https://login.microsoftonline.com"
SCOPE = "https://graph.microsoft.com/.default"
SYNC_FOLDER_NAME = "Salesforce Sync"
BATCH_LIMIT = 20  # https://learn.microsoft.com/en-us/graph/json-batching ("up to 20")
MAX_SUBSCRIPTION_MINUTES = 10080  # Outlook contacts/events/messages: 7 days
PREFER_UTC = 'outlook.timezone="UTC"'
_UTC = {"Prefer": PREFER_UTC}
#: What the worker reads of a message (times are UTC, as Graph always writes message times).
MESSAGE_FIELDS = (
    "id,internetMessageId,subject,from,toRecipients,ccRecipients,receivedDateTime,sentDateTime,bodyPreview,"
    "conversationId"
)
_MAX_PAGES = 1000  # a guard against a server that never ends a round
#: Concord's marker on the contacts and events it creates (a named string MAPI property in a property set
#: of Concord's own, as other sync tools do): https://learn.microsoft.com/en-us/graph/api/resources/extended-properties-overview
MARKER_PROPERTY = "String {0d4a5c1e-7b3f-4e62-9a1d-5c0b8e2f6a47} Name ConcordId"
NOT_ANSWERED = 0  # the status of a BatchResult Graph gave no answer for


# ------------------------------------------------------------------------------------------ the contract


@dataclass(frozen=True)
class DeltaResult:
    """One finished delta round: what changed, what went, and the cursor for the next round."""

    changed: list[dict[str, Any]]
    removed: list[str]
    delta_link: str


@dataclass(frozen=True)
class BatchRequest:
    """One ``$batch`` sub-request; ``url`` is relative to the version root (``/users/{id}/events``)."""

    id: str
    method: str
    url: str
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class BatchResult:
    """One ``$batch`` answer; ``error`` is what :func:`classify` made of a non-2xx status."""

    id: str
    status: int
    body: Any
    headers: Mapping[str, str]
    error: ConnectorError | None


class GraphMailbox(Protocol):
    """What the service layer uses of a Microsoft 365 mailbox. Ids are Graph ids; users are ids or UPNs.

    Errors: :class:`NotFoundError`, :class:`ConflictError` (stale etag), :class:`ResyncRequired` (stale
    delta link: do a full delta again), :class:`TransientError` (retry later), :class:`AuthError`,
    :class:`PermanentError`.
    """

    def ensure_contact_folder(self, user: str, name: str = SYNC_FOLDER_NAME) -> str: ...
    def get_contact(self, user: str, contact_id: str) -> dict[str, Any]: ...
    def list_contacts(self, user: str, folder_id: str) -> list[dict[str, Any]]: ...
    def create_contact(
        self, user: str, folder_id: str, contact: Mapping[str, Any], *, key: str | None = None
    ) -> dict[str, Any]: ...
    def find_contact_by_key(self, user: str, folder_id: str, key: str) -> dict[str, Any] | None: ...
    def create_contacts(
        self, user: str, folder_id: str, contacts: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, BatchResult]: ...
    def update_contact(
        self, user: str, contact_id: str, changes: Mapping[str, Any], *, etag: str | None = None
    ) -> dict[str, Any]: ...
    def delete_contact(self, user: str, contact_id: str) -> None: ...
    def contacts_delta(self, user: str, folder_id: str, delta_link: str | None = None) -> DeltaResult: ...
    def get_event(self, user: str, event_id: str) -> dict[str, Any]: ...
    def list_events(self, user: str, start: datetime, end: datetime) -> list[dict[str, Any]]: ...
    def create_event(self, user: str, event: Mapping[str, Any], *, key: str | None = None) -> dict[str, Any]: ...
    def find_event_by_key(self, user: str, key: str) -> dict[str, Any] | None: ...
    def create_events(self, user: str, events: Mapping[str, Mapping[str, Any]]) -> dict[str, BatchResult]: ...
    def update_event(
        self, user: str, event_id: str, changes: Mapping[str, Any], *, etag: str | None = None
    ) -> dict[str, Any]: ...
    def delete_event(self, user: str, event_id: str) -> None: ...
    def events_delta(self, user: str, start: datetime, end: datetime, delta_link: str | None = None) -> DeltaResult: ...
    def batch(self, requests: Sequence[BatchRequest]) -> dict[str, BatchResult]: ...
    def list_messages(self, user: str, folder: str = "inbox") -> list[dict[str, Any]]: ...
    def messages_delta(self, user: str, folder: str = "inbox", delta_link: str | None = None) -> DeltaResult: ...
    def create_subscription(
        self,
        resource: str,
        notification_url: str,
        client_state: str,
        *,
        lifecycle_url: str | None = None,
        expiration: datetime | None = None,
        change_type: str = "created,updated,deleted",
    ) -> dict[str, Any]: ...
    def renew_subscription(self, subscription_id: str, expiration: datetime | None = None) -> dict[str, Any]: ...
    def delete_subscription(self, subscription_id: str) -> None: ...
    def reauthorize_subscription(self, subscription_id: str) -> None: ...


# ------------------------------------------------------------------------------------------ configuration


@dataclass(frozen=True)
class GraphCredentials:
    """An app registration's client secret for one tenant. ``repr`` never shows the secret."""

    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)


@dataclass
class _Token:
    value: str
    expires_at: float


class TokenCache:
    """Access tokens per (login URL, tenant, client id); share one across clients in a Lambda container."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str, str], _Token] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str]) -> str | None:
        with self._lock:
            token = self._tokens.get(key)
        # Refresh a minute early: a token that expires in flight costs a 401 and a second call.
        if token is None or token.expires_at - 60 <= time.time():
            return None
        return token.value

    def put(self, key: tuple[str, str, str], value: str, expires_in: float) -> None:
        with self._lock:
            self._tokens[key] = _Token(value, time.time() + expires_in)

    def drop(self, key: tuple[str, str, str]) -> None:
        with self._lock:
            self._tokens.pop(key, None)


# ------------------------------------------------------------------------------------------ classify


def _error_fields(response: httpx.Response) -> tuple[str | None, str]:
    """``(code, message)`` from a Graph error (``{"error": {"code", "message"}}``) or an Entra token error
    (``{"error": "invalid_client", "error_description": "AADSTS7000215: ..."}``)."""
    try:
        body = response.json()
    except ValueError:
        return None, response.reason_phrase
    if not isinstance(body, dict):
        return None, response.reason_phrase
    error = body.get("error")
    if isinstance(error, dict):
        return error.get("code"), str(error.get("message") or response.reason_phrase)
    if isinstance(error, str):
        # The AADSTS description ends with trace/correlation ids and a timestamp: keep the first line.
        description = str(body.get("error_description") or "").splitlines()
        return error, description[0] if description else error
    return None, response.reason_phrase


_RESYNC_CODES = {"syncstatenotfound", "syncstateinvalid", "resyncrequired"}
_AUTH_CODES = {"invalid_client", "unauthorized_client", "invalid_grant", "invalid_request", "invalid_scope"}


def classify(response: httpx.Response) -> ConnectorError | None:
    """What a Graph or Entra token-endpoint response means (``None`` when it is usable).

    - 429, 503, 504 (and other 5xx): :class:`TransientError` with ``Retry-After`` (seconds), see
      https://learn.microsoft.com/en-us/graph/throttling
    - 401 ``InvalidAuthenticationToken``: :class:`TokenExpired` (refresh once); other 401/403: :class:`AuthError`
    - 404: :class:`NotFoundError`; 409 and 412: :class:`ConflictError`
    - 410, or a ``syncStateNotFound``-style code: :class:`ResyncRequired`
      (https://learn.microsoft.com/en-us/graph/delta-query-overview, "synchronization reset")
    - anything else 4xx: :class:`PermanentError`
    """
    status = response.status_code
    if status < 400:
        return None
    code, message = _error_fields(response)
    text = f"{code}: {message}" if code else message
    if status == 429 or status >= 500:
        return TransientError(
            SYSTEM, text, status=status, code=code, retry_after=parse_retry_after(response.headers.get("Retry-After"))
        )
    if status == 401 and code == "InvalidAuthenticationToken":
        return TokenExpired(SYSTEM, text, status=status, code=code)
    if status == 410 or (code or "").lower() in _RESYNC_CODES:
        return ResyncRequired(SYSTEM, text, status=status, code=code)
    if status in (401, 403) or code in _AUTH_CODES:
        return AuthError(SYSTEM, text, status=status, code=code)
    if status == 404:
        return NotFoundError(SYSTEM, text, status=status, code=code)
    if status in (409, 412):
        return ConflictError(SYSTEM, text, status=status, code=code)
    return PermanentError(SYSTEM, text, status=status, code=code)


# ------------------------------------------------------------------------------------------ creates


def new_key() -> str:
    """A fresh client-side key for a create (a UUID)."""
    return str(uuid.uuid4())


def with_marker(body: Mapping[str, Any], key: str) -> dict[str, Any]:
    """``body`` with Concord's marker (:data:`MARKER_PROPERTY` = ``key``) among its extended properties."""
    others = [p for p in body.get("singleValueExtendedProperties") or [] if p.get("id") != MARKER_PROPERTY]
    return {**body, "singleValueExtendedProperties": [*others, {"id": MARKER_PROPERTY, "value": key}]}


def marker_filter(key: str) -> str:
    """The ``$filter`` that finds the item carrying Concord's marker with ``key``
    (https://learn.microsoft.com/en-us/graph/api/singlevaluelegacyextendedproperty-get)."""
    literal = key.replace("'", "''")
    return f"singleValueExtendedProperties/Any(ep: ep/id eq '{MARKER_PROPERTY}' and ep/value eq '{literal}')"


def ambiguous(error: TransientError) -> bool:
    """Whether a failed write may have been committed: a timeout, a dropped connection, a 5xx or a missing
    answer may come after the service wrote; a 429 means it turned the request away."""
    return error.status != 429


# ------------------------------------------------------------------------------------------ the client


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("datetimes passed to Graph must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")  # 7 fractional digits, as Graph writes


def _seg(value: str) -> str:
    return quote(value, safe="@.")


class GraphClient:
    """The httpx implementation of :class:`GraphMailbox` for one tenant's app registration."""

    def __init__(
        self,
        credentials: GraphCredentials,
        *,
        graph_url: str = GRAPH_URL,
        login_url: str = LOGIN_URL,
        verify: str | bool = True,
        client: httpx.Client | None = None,
        time_left: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        policy: RetryPolicy | None = None,
        token_cache: TokenCache | None = None,
        page_size: int | None = None,
    ):
        self._credentials = credentials
        self.graph_url = graph_url.rstrip("/")
        self.login_url = login_url.rstrip("/")
        self.redact = Redactor()
        self.redact.add(credentials.client_secret)
        self.transport = HttpTransport(
            SYSTEM,
            classify,
            client=client,
            verify=verify,
            policy=policy,
            redactor=self.redact,
            time_left=time_left,
            sleep=sleep,
        )
        self._tokens = token_cache or TokenCache()
        self._token_key = (self.login_url, credentials.tenant_id, credentials.client_id)
        self.page_size = page_size

    def __repr__(self) -> str:
        return f"GraphClient(tenant={self._credentials.tenant_id!r}, graph_url={self.graph_url!r})"

    def close(self) -> None:
        self.transport.close()

    # --- auth

    def _token(self) -> str:
        cached = self._tokens.get(self._token_key)
        if cached:
            return cached
        creds = self._credentials
        response = self.transport.request(
            "POST",
            f"{self.login_url}/{_seg(creds.tenant_id)}/oauth2/v2.0/token",
            data={
                "client_id": creds.client_id,
                "client_secret": creds.client_secret,
                "scope": SCOPE,
                "grant_type": "client_credentials",
            },
            retry=True,  # asking for a token twice makes nothing
        )
        body = response.json()
        token = str(body["access_token"])
        self.redact.add_short_lived(token)
        self._tokens.put(self._token_key, token, float(body.get("expires_in", 3599)))
        return token

    def _call(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        retry: bool | None = None,
    ) -> httpx.Response:
        """One Graph call with the bearer token; on an expired token, refresh once and retry once. ``retry``
        as :meth:`HttpTransport.request` (by default only idempotent methods are retried)."""
        if not url.startswith(self.graph_url + "/"):
            raise PermanentError(SYSTEM, f"refusing to follow a link outside {self.graph_url}")
        for attempt in (1, 2):
            all_headers = {"Authorization": f"Bearer {self._token()}", **(headers or {})}
            try:
                return self.transport.request(method, url, params=params, json=json, headers=all_headers, retry=retry)
            except TokenExpired as exc:
                self._tokens.drop(self._token_key)
                if attempt == 2:
                    raise AuthError(SYSTEM, "access token refused again after a refresh", status=exc.status) from None
        raise AssertionError("unreachable")  # the loop returns or raises

    def _url(self, *segments: str) -> str:
        return self.graph_url + "/" + "/".join(_seg(s) for s in segments)

    def _prefer(self, *, utc: bool = False, paged: bool = False) -> dict[str, str]:
        values = []
        if utc:
            values.append(PREFER_UTC)
        if paged and self.page_size:
            values.append(f"odata.maxpagesize={self.page_size}")
        return {"Prefer": ", ".join(values)} if values else {}

    def _pages(
        self, url: str, params: Mapping[str, str] | None, headers: Mapping[str, str]
    ) -> Iterator[dict[str, Any]]:
        """Each page of a collection or delta round, following ``@odata.nextLink``."""
        next_url: str | None = url
        for _ in range(_MAX_PAGES):
            if next_url is None:
                return
            page = self._call("GET", next_url, params=params, headers=headers).json()
            params = None  # the links carry every parameter from here on
            yield page
            next_url = page.get("@odata.nextLink")
        raise PermanentError(SYSTEM, f"more than {_MAX_PAGES} pages; giving up")

    def _delta(self, url: str, params: Mapping[str, str] | None, utc: bool) -> DeltaResult:
        changed: dict[str, dict[str, Any]] = {}
        removed: dict[str, None] = {}
        delta_link = ""
        for page in self._pages(url, params, self._prefer(utc=utc, paged=True)):
            for item in page.get("value", []):
                # A later page can repeat an item; the last state seen wins.
                if "@removed" in item:
                    changed.pop(item["id"], None)
                    removed[item["id"]] = None
                else:
                    removed.pop(item["id"], None)
                    changed[item["id"]] = item
            delta_link = page.get("@odata.deltaLink", delta_link)
        if not delta_link:
            raise PermanentError(SYSTEM, "delta round ended without an @odata.deltaLink")
        return DeltaResult(list(changed.values()), list(removed), delta_link)

    @staticmethod
    def _if_match(etag: str | None) -> dict[str, str]:
        return {"If-Match": etag} if etag else {}

    # --- contacts

    def ensure_contact_folder(self, user: str, name: str = SYNC_FOLDER_NAME) -> str:
        """The id of the user's contact folder called ``name``, created when missing."""
        url = self._url("users", user, "contactFolders")
        found = self._find_folder(url, name)
        if found:
            return found
        try:
            return str(self._call("POST", url, json={"displayName": name}).json()["id"])
        except (TransientError, ConflictError):
            # Committed before the answer was lost, or made meanwhile by another run: Graph answers a second
            # POST with 409 ErrorFolderExists, so look again rather than post again.
            found = self._find_folder(url, name)
            if found:
                return found
            raise

    def _find_folder(self, url: str, name: str) -> str | None:
        literal = name.replace("'", "''")  # OData string literal escaping
        for page in self._pages(url, {"$filter": f"displayName eq '{literal}'"}, {}):
            for folder in page.get("value", []):
                if folder.get("displayName") == name:
                    return str(folder["id"])
        return None

    def get_contact(self, user: str, contact_id: str) -> dict[str, Any]:
        return dict(self._call("GET", self._url("users", user, "contacts", contact_id)).json())

    def list_contacts(self, user: str, folder_id: str) -> list[dict[str, Any]]:
        url = self._url("users", user, "contactFolders", folder_id, "contacts")
        return [c for page in self._pages(url, None, self._prefer(paged=True)) for c in page.get("value", [])]

    def create_contact(
        self, user: str, folder_id: str, contact: Mapping[str, Any], *, key: str | None = None
    ) -> dict[str, Any]:
        """Create a contact carrying Concord's marker with ``key`` (a new one when ``None``; pass a key derived
        from what is being synced and a re-run after a crash finds the first copy too). After an ambiguous
        failure the contact is looked up by its marker and posted again only if it is not there."""
        key = key or new_key()
        url = self._url("users", user, "contactFolders", folder_id, "contacts")
        body = with_marker(contact, key)
        return self._create_resolved(
            lambda: self._call("POST", url, json=body), lambda: self.find_contact_by_key(user, folder_id, key)
        )

    def find_contact_by_key(self, user: str, folder_id: str, key: str) -> dict[str, Any] | None:
        """The contact of the folder that carries Concord's marker with ``key``, if any."""
        url = self._url("users", user, "contactFolders", folder_id, "contacts")
        return self._find_marked(url, key, {})

    def _find_marked(self, url: str, key: str, headers: Mapping[str, str]) -> dict[str, Any] | None:
        params = {"$filter": marker_filter(key)}
        for page in self._pages(url, params, headers):
            for item in page.get("value", []):
                return dict(item)
        return None

    def _create_resolved(
        self, post: Callable[[], httpx.Response], find: Callable[[], dict[str, Any] | None]
    ) -> dict[str, Any]:
        """POST once; after an ambiguous failure, ``find`` first and post again only if nothing was made."""
        policy, attempt = self.transport.policy, 0
        while True:
            attempt += 1
            try:
                return dict(post().json())
            except TransientError as exc:
                if ambiguous(exc):
                    found = find()
                    if found is not None:
                        return found
                wait = policy.delay(attempt, exc.retry_after)
                if attempt >= policy.max_attempts or wait >= self.transport.time_left():
                    raise
                self.transport.sleep(wait)

    def update_contact(
        self, user: str, contact_id: str, changes: Mapping[str, Any], *, etag: str | None = None
    ) -> dict[str, Any]:
        """PATCH; with ``etag`` (the ``@odata.etag`` last read) a concurrent change raises :class:`ConflictError`."""
        url = self._url("users", user, "contacts", contact_id)
        # Setting the same values twice leaves the same contact (with If-Match, the second try is a 412).
        return dict(self._call("PATCH", url, json=dict(changes), headers=self._if_match(etag), retry=True).json())

    def delete_contact(self, user: str, contact_id: str) -> None:
        self._call("DELETE", self._url("users", user, "contacts", contact_id))

    def contacts_delta(self, user: str, folder_id: str, delta_link: str | None = None) -> DeltaResult:
        """A full round (no ``delta_link``) or the changes since ``delta_link``; keep the returned link."""
        url = delta_link or self._url("users", user, "contactFolders", folder_id, "contacts", "delta")
        return self._delta(url, None, utc=False)

    # --- events

    def get_event(self, user: str, event_id: str) -> dict[str, Any]:
        url = self._url("users", user, "events", event_id)
        return dict(self._call("GET", url, headers=self._prefer(utc=True)).json())

    def list_events(self, user: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        url = self._url("users", user, "calendarView")
        params = {"startDateTime": _iso(start), "endDateTime": _iso(end)}
        pages = self._pages(url, params, self._prefer(utc=True, paged=True))
        return [e for page in pages for e in page.get("value", [])]

    def create_event(self, user: str, event: Mapping[str, Any], *, key: str | None = None) -> dict[str, Any]:
        """Create an event with ``key`` as its ``transactionId`` and Concord's marker (see
        :meth:`create_contact` for ``key``). After an ambiguous failure it is looked up by its marker first."""
        key = key or new_key()
        url = self._url("users", user, "events")
        body = {**with_marker(event, key), "transactionId": key}
        headers = self._prefer(utc=True)
        return self._create_resolved(
            lambda: self._call("POST", url, json=body, headers=headers), lambda: self.find_event_by_key(user, key)
        )

    def find_event_by_key(self, user: str, key: str) -> dict[str, Any] | None:
        """The event (any calendar of the mailbox) that carries Concord's marker with ``key``, if any."""
        return self._find_marked(self._url("users", user, "events"), key, self._prefer(utc=True))

    def update_event(
        self, user: str, event_id: str, changes: Mapping[str, Any], *, etag: str | None = None
    ) -> dict[str, Any]:
        url = self._url("users", user, "events", event_id)
        headers = {**self._prefer(utc=True), **self._if_match(etag)}
        # An organiser's update mails every attendee: a blind second PATCH would mail them twice. With
        # If-Match a committed first try makes the second a 412 (nothing sent), so only then is it retried.
        return dict(self._call("PATCH", url, json=dict(changes), headers=headers, retry=etag is not None).json())

    def delete_event(self, user: str, event_id: str) -> None:
        self._call("DELETE", self._url("users", user, "events", event_id))

    def events_delta(self, user: str, start: datetime, end: datetime, delta_link: str | None = None) -> DeltaResult:
        """Changes to the default calendar's view ``[start, end)``; the window is fixed by the first round."""
        if delta_link:
            return self._delta(delta_link, None, utc=True)
        url = self._url("users", user, "calendarView", "delta")
        return self._delta(url, {"startDateTime": _iso(start), "endDateTime": _iso(end)}, utc=True)

    # --- mail

    def list_messages(self, user: str, folder: str = "inbox") -> list[dict[str, Any]]:
        """The messages of a mail folder (a well-known name: ``inbox``, ``sentitems``; or a folder id), with
        :data:`MESSAGE_FIELDS` only."""
        url = self._url("users", user, "mailFolders", folder, "messages")
        pages = self._pages(url, {"$select": MESSAGE_FIELDS}, self._prefer(paged=True))
        return [m for page in pages for m in page.get("value", [])]

    def messages_delta(self, user: str, folder: str = "inbox", delta_link: str | None = None) -> DeltaResult:
        """A full round (no ``delta_link``) or the messages added, changed or removed since; keep the link.
        https://learn.microsoft.com/en-us/graph/api/message-delta"""
        if delta_link:
            return self._delta(delta_link, None, utc=False)
        url = self._url("users", user, "mailFolders", folder, "messages", "delta")
        return self._delta(url, {"$select": MESSAGE_FIELDS}, utc=False)

    # --- batching

    def batch(self, requests: Sequence[BatchRequest]) -> dict[str, BatchResult]:
        """Run the requests through ``$batch``, 20 per call; results by request id (Graph answers in any
        order). Requests that depend on each other must sit in the same chunk of 20."""
        ids = [r.id for r in requests]
        if len(set(ids)) != len(ids):
            raise ValueError("batch request ids must be unique")
        results: dict[str, BatchResult] = {}
        for offset in range(0, len(requests), BATCH_LIMIT):
            chunk = requests[offset : offset + BATCH_LIMIT]
            payload = {"requests": [self._batch_item(r) for r in chunk]}
            # Resending a batch of reads and deletes is harmless; one holding a create is not.
            retry = all(r.method.upper() in IDEMPOTENT_METHODS for r in chunk)
            try:
                answer = self._call("POST", self.graph_url + "/$batch", json=payload, retry=retry).json()
            except ConnectorError as exc:
                # Earlier chunks' answers stay; this chunk's requests carry the failure (a 5xx or a dropped
                # connection may come after some of them ran).
                for request in chunk:
                    results[request.id] = BatchResult(request.id, NOT_ANSWERED, None, {}, exc)
                continue
            for item in answer.get("responses", []):
                result = self._batch_result(item)
                results[result.id] = result
            for request in chunk:
                if request.id not in results:
                    error = TransientError(SYSTEM, "$batch gave no answer for this request; it may have run")
                    results[request.id] = BatchResult(request.id, NOT_ANSWERED, None, {}, error)
        return results

    def create_contacts(
        self, user: str, folder_id: str, contacts: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, BatchResult]:
        """Create many contacts through ``$batch``, by key (see :meth:`create_contact`): ``{key: body}`` in,
        ``{key: BatchResult}`` out. A create whose answer was lost is looked up by its marker; only those not
        found are sent again; a result still holding an error after the retry budget is the caller's to report."""
        url = f"/users/{_seg(user)}/contactFolders/{_seg(folder_id)}/contacts"
        requests = {key: BatchRequest(key, "POST", url, body=with_marker(body, key)) for key, body in contacts.items()}
        return self._create_many(requests, lambda key: self.find_contact_by_key(user, folder_id, key))

    def create_events(self, user: str, events: Mapping[str, Mapping[str, Any]]) -> dict[str, BatchResult]:
        """Create many events through ``$batch``, by key, as :meth:`create_contacts` (each key is also the
        event's ``transactionId``)."""
        url = f"/users/{_seg(user)}/events"
        requests = {
            key: BatchRequest(key, "POST", url, body={**with_marker(body, key), "transactionId": key}, headers=_UTC)
            for key, body in events.items()
        }
        return self._create_many(requests, lambda key: self.find_event_by_key(user, key))

    def _create_many(
        self, requests: Mapping[str, BatchRequest], find: Callable[[str], dict[str, Any] | None]
    ) -> dict[str, BatchResult]:
        policy, attempt = self.transport.policy, 0
        results: dict[str, BatchResult] = {}
        pending = dict(requests)
        while pending:
            attempt += 1
            answers = self.batch(list(pending.values()))
            waits: list[float] = []
            for key in list(pending):
                result = answers[key]
                if isinstance(result.error, TransientError):
                    found = find(key) if ambiguous(result.error) else None
                    if found is None:
                        results[key] = result
                        waits.append(result.error.retry_after or 0.0)
                        continue
                    result = BatchResult(key, 201, found, {}, None)
                results[key] = result
                del pending[key]
            wait = policy.delay(attempt, max(waits, default=0.0))
            if not pending or attempt >= policy.max_attempts or wait >= self.transport.time_left():
                break
            self.transport.sleep(wait)
        return results

    @staticmethod
    def _batch_item(request: BatchRequest) -> dict[str, Any]:
        item: dict[str, Any] = {"id": request.id, "method": request.method.upper(), "url": request.url}
        headers = dict(request.headers)
        if request.body is not None:
            headers.setdefault("Content-Type", "application/json")  # required whenever a body is present
            item["body"] = request.body
        if headers:
            item["headers"] = headers
        if request.depends_on:
            item["dependsOn"] = list(request.depends_on)
        return item

    def _batch_result(self, item: Mapping[str, Any]) -> BatchResult:
        status = int(item.get("status", 0))
        headers = {str(k): str(v) for k, v in (item.get("headers") or {}).items()}
        body = item.get("body")
        # The same classify as a lone call: build the response it would have been.
        response = httpx.Response(status, headers=headers, json=body) if body is not None else httpx.Response(status)
        error = classify(response)
        if error is not None:
            error.args = (self.redact(str(error)),)
        return BatchResult(str(item.get("id")), status, body, headers, error)

    # --- subscriptions

    def create_subscription(
        self,
        resource: str,
        notification_url: str,
        client_state: str,
        *,
        lifecycle_url: str | None = None,
        expiration: datetime | None = None,
        change_type: str = "created,updated,deleted",
    ) -> dict[str, Any]:
        """Subscribe; Graph validates both URLs before answering. ``expiration`` defaults to the maximum
        (7 days) less a safety margin; ``client_state`` is a secret of at most 128 characters."""
        if len(client_state) > 128:
            raise ValueError("clientState is limited to 128 characters")
        self.redact.add_short_lived(client_state)
        body: dict[str, Any] = {
            "changeType": change_type,
            "notificationUrl": notification_url,
            "resource": resource,
            "expirationDateTime": _iso(expiration or self.max_expiration()),
            "clientState": client_state,
        }
        if lifecycle_url:
            body["lifecycleNotificationUrl"] = lifecycle_url
        return dict(self._call("POST", self.graph_url + "/subscriptions", json=body).json())

    def renew_subscription(self, subscription_id: str, expiration: datetime | None = None) -> dict[str, Any]:
        """Move the expiry; an expired or removed subscription raises :class:`NotFoundError` (create anew)."""
        body = {"expirationDateTime": _iso(expiration or self.max_expiration())}
        url = self._url("subscriptions", subscription_id)
        return dict(self._call("PATCH", url, json=body, retry=True).json())  # setting an expiry twice is harmless

    def delete_subscription(self, subscription_id: str) -> None:
        self._call("DELETE", self._url("subscriptions", subscription_id))

    def reauthorize_subscription(self, subscription_id: str) -> None:
        """Answer a ``reauthorizationRequired`` lifecycle notification."""
        self._call("POST", self._url("subscriptions", subscription_id, "reauthorize"), retry=True)  # idempotent

    @staticmethod
    def max_expiration(margin: timedelta = timedelta(minutes=10)) -> datetime:
        """The latest expiry Graph accepts for Outlook resources, less ``margin`` for clock skew."""
        return datetime.now(UTC) + timedelta(minutes=MAX_SUBSCRIPTION_MINUTES) - margin
