"""Salesforce REST client: the JWT bearer login, SOQL, sObject Collections and Composite.

The service layer sees :class:`SalesforceApi`; :class:`SalesforceClient` implements it over httpx with
the shared :class:`~concord.adapters.http.HttpTransport` policy (timeouts, retries, backoff,
redaction). What the client adds is Salesforce's own vocabulary:

- **Auth.** OAuth 2.0 JWT bearer: an RS256 assertion (``iss`` consumer key, ``sub`` username, ``aud``
  login URL, ``exp`` under 3 minutes ahead) is traded for an access token and the org's
  ``instance_url``. There is no refresh token: on ``401 INVALID_SESSION_ID`` the client signs a new
  assertion and retries the call once.
- **Errors.** Whole-call failures raise typed errors (transient: ``REQUEST_LIMIT_EXCEEDED``,
  ``UNABLE_TO_LOCK_ROW``, 5xx, timeouts; permanent: validation, ``INVALID_FIELD``, ``NOT_FOUND``, ...).
  Per-record failures in collection answers come back as :class:`RecordResult` values, each error
  classified, so the caller decides per record.
- **Duplicates.** A create is retried within the call only when the answer proves nothing was written
  (throttled, lock contention, server unavailable); after a timeout or a 500 the record may exist, so
  the error goes back to the caller, whose match-before-create finds it on the next attempt.
- **Echoes.** Every write sends ``Sforce-Call-Options: client=concord`` so change events of our own
  writes name us in ``changeOrigin``.
"""

from __future__ import annotations

import logging
import re
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

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
    HttpTransport,
    NotFoundError,
    PermanentError,
    Redactor,
    RetryPolicy,
    TokenExpired,
    TransientError,
    error_text,
    parse_retry_after,
)
from concord.adapters.soql import in_list

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence


SYSTEM = "salesforce"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MAX_WRITE_BATCH = 200  # sObject Collections create/update/delete
MAX_GET_IDS = 200  # ids per GET retrieve, well under the ~800 that overflow the URL
MAX_POST_IDS = 2000  # ids per POST retrieve
MAX_SUBREQUESTS = 25  # Composite
_MARKER_CHUNK = 300  # values per IN list when looking creates up by their marker: keeps the URL short
ASSERTION_LIFETIME_S = 170  # Salesforce refuses assertions that expire more than 3 minutes ahead
# A daily-limit refusal without Retry-After: waiting within one invocation cannot help, so the
# transport hands it back at once (the wait exceeds any Lambda's time left) and SQS retries later.
DAILY_LIMIT_BACKOFF_S = 3600.0

# Per-record and whole-call error codes worth retrying unchanged.
TRANSIENT_CODES = frozenset(
    {
        "UNABLE_TO_LOCK_ROW",
        "REQUEST_LIMIT_EXCEEDED",
        "SERVER_UNAVAILABLE",
        "UNKNOWN_EXCEPTION",
        # the record was fine; another one in the same all-or-none call (or composite) failed
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "PROCESSING_HALTED",
        # a create whose outcome is unknown (see SalesforceClient.create): the next attempt looks it up first
        "UNKNOWN_OUTCOME",
    }
)
# A create refused with one of these wrote nothing, so retrying it cannot make a duplicate.
_NOTHING_WRITTEN = frozenset({"REQUEST_LIMIT_EXCEEDED", "UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE"})

RelationType = Literal["EventRelation", "TaskRelation"]

_LIMIT_INFO = re.compile(r"api-usage=(?P<used>\d+)/(?P<limit>\d+)")

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------- contract


class SalesforceApi(Protocol):
    """What the service layer uses of Salesforce. Raises :class:`ConnectorError` subclasses only."""

    @property
    def api_usage(self) -> ApiUsage | None:
        """The usage reported by the latest answer, or None before the first call."""
        ...

    def query(self, soql: str, *, batch_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Records of a SOQL query, following ``nextRecordsUrl`` lazily page after page. Every value in
        ``soql`` must come from :mod:`concord.adapters.soql`. ``batch_size``: 200 to 2,000 a page."""
        ...

    def query_all(self, soql: str, *, batch_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Like :meth:`query` through ``queryAll``: deleted and archived rows too (``IsDeleted``)."""
        ...

    def get(self, sobject: str, record_id: str, fields: Sequence[str] | None = None) -> dict[str, Any]:
        """One record; :class:`NotFoundError` when it does not exist or is deleted."""
        ...

    def retrieve(self, sobject: str, ids: Sequence[str], fields: Sequence[str]) -> list[dict[str, Any] | None]:
        """Records by id, in the order of ``ids``; None where a record is missing or deleted."""
        ...

    def create(
        self, sobject: str, records: Sequence[Mapping[str, Any]], *, marker: str | None = None
    ) -> list[RecordResult]:
        """Insert records (any number, 200 per call), ``allOrNone`` false; one result per record. Never
        resent blind: an unknown outcome is looked up by ``marker`` (see :meth:`SalesforceClient.create`)."""
        ...

    def update(self, sobject: str, records: Sequence[Mapping[str, Any]]) -> list[RecordResult]:
        """Update records, each carrying its ``Id``; one result per record."""
        ...

    def update_one(
        self, sobject: str, record_id: str, fields: Mapping[str, Any], *, if_unmodified_since: datetime | None = None
    ) -> None:
        """Update one record; :class:`ConflictError` if it changed after ``if_unmodified_since``."""
        ...

    def delete(self, ids: Sequence[str]) -> list[RecordResult]:
        """Delete records by id; one result per id (``ENTITY_IS_DELETED``: it was gone already)."""
        ...

    def relate(self, relation: RelationType, pairs: Sequence[tuple[str, str]]) -> list[RecordResult]:
        """EventRelation / TaskRelation rows for (activity id, Contact/Lead/User/Account id) pairs."""
        ...

    def create_event(self, event: Mapping[str, Any], relation_ids: Sequence[str]) -> EventWriteResult:
        """Create an Event and an EventRelation per id in ``relation_ids``, in one Composite call."""
        ...


@dataclass(frozen=True)
class RecordError:
    """One error of one record, as Salesforce words it (``statusCode``/``errorCode``, message, fields)."""

    code: str
    message: str
    fields: tuple[str, ...] = ()

    @property
    def transient(self) -> bool:
        """Retrying the same write later may succeed (lock contention, limits, a sibling's failure)."""
        return self.code in TRANSIENT_CODES


@dataclass(frozen=True)
class RecordResult:
    """The outcome of writing one record; results come in the order of the records sent."""

    id: str | None
    success: bool
    errors: tuple[RecordError, ...] = ()

    @property
    def transient(self) -> bool:
        """A failure every error of which is transient: retry this record, unchanged, later."""
        return not self.success and bool(self.errors) and all(e.transient for e in self.errors)


@dataclass(frozen=True)
class EventWriteResult:
    """Creating an Event with its EventRelations in one Composite call."""

    event: RecordResult
    relations: tuple[RecordResult, ...]


@dataclass(frozen=True)
class ApiUsage:
    """From ``Sforce-Limit-Info: api-usage=N/M``: calls used in the last 24 hours, and the daily limit."""

    used: int
    limit: int


@dataclass(frozen=True)
class SalesforceCredentials:
    """What the connected app's JWT bearer flow needs. Loaded from Secrets Manager elsewhere.

    ``login_url`` is where the token request goes (``https://login.salesforce.com``,
    ``https://test.salesforce.com`` or the My Domain); ``audience`` is the ``aud`` claim, the login
    URL unless set.
    """

    consumer_key: str = field(repr=False)
    username: str
    private_key_pem: str = field(repr=False)
    login_url: str = "https://login.salesforce.com"
    audience: str = ""


# --------------------------------------------------------------------------------- classification


def _first_error(response: httpx.Response) -> tuple[str | None, str]:
    """(code, message) from Salesforce's ``[{"errorCode", "message"}]`` or OAuth's ``{"error", ...}``."""
    try:
        body = response.json()
    except ValueError:
        return None, error_text(response) or response.reason_phrase
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return body[0].get("errorCode"), str(body[0].get("message", ""))
    if isinstance(body, dict) and "error" in body:
        return str(body["error"]), str(body.get("error_description", ""))
    return None, error_text(response)


def classify(response: httpx.Response) -> ConnectorError | None:
    """The typed error a REST answer means, or None when it is usable."""
    status = response.status_code
    if status < 300:
        return None
    code, message = _first_error(response)
    text = f"{response.request.method} {response.request.url.path}: {message}"
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status == 401:
        return TokenExpired(SYSTEM, text, status=status, code=code or "INVALID_SESSION_ID")
    if code == "REQUEST_LIMIT_EXCEEDED" or status == 429:
        if retry_after is None and "TotalRequests" in message:
            retry_after = DAILY_LIMIT_BACKOFF_S
        return TransientError(
            SYSTEM, text, status=status, code=code or "REQUEST_LIMIT_EXCEEDED", retry_after=retry_after
        )
    if status >= 500 or code in TRANSIENT_CODES:
        return TransientError(SYSTEM, text, status=status, code=code or f"HTTP_{status}", retry_after=retry_after)
    if status == 404 or code in ("NOT_FOUND", "ENTITY_IS_DELETED"):
        return NotFoundError(SYSTEM, text, status=status, code=code or "NOT_FOUND")
    if status in (409, 412):
        return ConflictError(SYSTEM, text, status=status, code=code or "PRECONDITION_FAILED")
    return PermanentError(SYSTEM, text, status=status, code=code or f"HTTP_{status}")


def classify_token(response: httpx.Response) -> ConnectorError | None:
    """The token endpoint answers ``{"error", "error_description"}``; a refusal is final (AuthError),
    but throttling is not: 429, 5xx, ``REQUEST_LIMIT_EXCEEDED`` or any answer that says when to come back
    (``Retry-After``) is transient."""
    status = response.status_code
    if status < 300:
        return None
    code, message = _first_error(response)
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status == 429 or status >= 500 or code == "REQUEST_LIMIT_EXCEEDED" or retry_after is not None:
        return TransientError(
            SYSTEM, f"token request failed: {message}", status=status, code=code, retry_after=retry_after
        )
    return AuthError(SYSTEM, f"token request refused: {message}", status=status, code=code or f"HTTP_{status}")


def parse_limit_info(value: str | None) -> ApiUsage | None:
    match = _LIMIT_INFO.search(value or "")
    return ApiUsage(int(match["used"]), int(match["limit"])) if match else None


def _record_errors(errors: Any) -> tuple[RecordError, ...]:
    """Collection results say ``statusCode``; whole-call error bodies say ``errorCode``."""
    return tuple(
        RecordError(
            str(e.get("statusCode") or e.get("errorCode") or "UNKNOWN"),
            str(e.get("message", "")),
            tuple(e.get("fields") or ()),
        )
        for e in errors or ()
        if isinstance(e, dict)
    )


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ---------------------------------------------------------------------------------------- client


@dataclass
class _Session:
    access_token: str
    instance_url: str


class SalesforceClient:
    """:class:`SalesforceApi` over httpx. One per org; safe to keep across warm Lambda invocations.

    ``verify`` is the CA bundle (the sandbox's, locally); ``client`` an optional ``httpx.Client`` (its
    timeouts are then the caller's); ``time_left`` the seconds the invocation may still spend.
    """

    def __init__(
        self,
        credentials: SalesforceCredentials,
        *,
        api_version: str = "60.0",
        verify: str | bool = True,
        client: httpx.Client | None = None,
        time_left: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        policy: RetryPolicy | None = None,
        client_name: str = "concord",
    ):
        self._credentials = credentials
        self._version = api_version
        self._call_options = f"client={client_name}"
        self._redactor = Redactor()
        self._redactor.add(credentials.private_key_pem, credentials.consumer_key)
        if isinstance(verify, str):  # a CA bundle path; httpx wants it as an SSL context
            verify_context: ssl.SSLContext | bool = ssl.create_default_context(cafile=verify)
        else:
            verify_context = verify
        http_client = client or httpx.Client(timeout=DEFAULT_TIMEOUT, verify=verify_context)
        self._http = HttpTransport(
            SYSTEM,
            classify,
            client=http_client,
            policy=policy,
            redactor=self._redactor,
            time_left=time_left,
            sleep=sleep,
            on_response=self._track_usage,
        )
        # The token endpoint words its errors differently; same connection pool, policy and redactor.
        self._auth = HttpTransport(
            SYSTEM,
            classify_token,
            client=http_client,
            policy=policy,
            redactor=self._redactor,
            time_left=time_left,
            sleep=sleep,
        )
        self._session: _Session | None = None
        self._signing_key: rsa.RSAPrivateKey | None = None
        self._usage: ApiUsage | None = None

    # --- bookkeeping

    @property
    def api_usage(self) -> ApiUsage | None:
        return self._usage

    @property
    def calls(self) -> int:
        """HTTP requests sent, token requests included (each retry counts)."""
        return self._http.calls + self._auth.calls

    def _track_usage(self, response: httpx.Response) -> None:
        usage = parse_limit_info(response.headers.get("Sforce-Limit-Info"))
        if usage is not None:
            self._usage = usage

    def close(self) -> None:
        self._http.close()

    # --- auth

    def _assertion(self) -> str:
        creds = self._credentials
        claims = {
            "iss": creds.consumer_key,
            "sub": creds.username,
            "aud": creds.audience or creds.login_url,
            "exp": int(time.time()) + ASSERTION_LIFETIME_S,
        }
        try:
            if self._signing_key is None:  # parsing the PEM costs ~50 ms: once per warm container
                key = serialization.load_pem_private_key(creds.private_key_pem.encode(), password=None)
                if not isinstance(key, rsa.RSAPrivateKey):
                    raise TypeError("RS256 needs an RSA key")
                self._signing_key = key
            assertion = jwt.encode(claims, self._signing_key, algorithm="RS256")
        except (ValueError, TypeError, UnsupportedAlgorithm, jwt.PyJWTError):
            # The library's message could quote the key material: say only what failed.
            raise AuthError(SYSTEM, "the private key could not sign the JWT assertion") from None
        self._redactor.add_short_lived(assertion)
        return assertion

    def _login(self) -> _Session:
        response = self._auth.request(
            "POST",
            self._credentials.login_url.rstrip("/") + "/services/oauth2/token",
            data={"grant_type": JWT_GRANT, "assertion": self._assertion()},
            headers={"Accept": "application/json"},
            retry=True,  # a token request creates nothing: safe to send again
        )
        try:
            body = response.json()
            session = _Session(str(body["access_token"]), str(body["instance_url"]).rstrip("/"))
        except (ValueError, KeyError, TypeError):
            raise AuthError(SYSTEM, "the token endpoint answered without access_token/instance_url") from None
        self._redactor.add_short_lived(session.access_token)
        return session

    def _current_session(self) -> _Session:
        if self._session is None:
            self._session = self._login()
        return self._session

    # --- calls

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        create: bool = False,
        headers: Mapping[str, str] | None = None,
        retry: bool | None = None,
    ) -> httpx.Response:
        """One REST call with the session; a refused session is renewed once and the call repeated."""
        for attempt in (1, 2):
            session = self._current_session()
            sent = {"Authorization": f"Bearer {session.access_token}", "Accept": "application/json", **(headers or {})}
            if method != "GET":
                sent["Sforce-Call-Options"] = self._call_options
            url = path if path.startswith("https://") else session.instance_url + path
            try:
                return self._send(method, url, headers=sent, params=params, json=json, create=create, retry=retry)
            except TokenExpired:
                self._session = None
                if attempt == 2:
                    raise AuthError(
                        SYSTEM,
                        "the session was refused again right after a new token",
                        status=401,
                        code="INVALID_SESSION_ID",
                    ) from None
                log.info("salesforce session refused (INVALID_SESSION_ID); signing a new assertion")
        raise AssertionError("unreachable")

    def _send(self, method: str, url: str, *, create: bool, retry: bool | None, **kwargs: Any) -> httpx.Response:
        """Creates are retried here, and only while the answer proves nothing was written."""
        if not create:
            return self._http.request(method, url, retry=retry, **kwargs)
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._http.request(method, url, retry=False, **kwargs)
            except TransientError as exc:
                if exc.code not in _NOTHING_WRITTEN or attempt >= self._http.policy.max_attempts:
                    raise
                wait = self._http.policy.delay(attempt, exc.retry_after)
                if wait >= self._http.time_left():
                    raise
                self._http.sleep(wait)

    def _data(self, resource: str) -> str:
        return f"/services/data/v{self._version}/{resource}"

    # --- reads

    def _paged(self, resource: str, soql: str, batch_size: int | None) -> Iterator[dict[str, Any]]:
        # Sforce-Query-Options batchSize: 200 to 2,000, a wish the server may shrink (Query Options Header)
        headers = {"Sforce-Query-Options": f"batchSize={batch_size}"} if batch_size else None
        body = self._call("GET", self._data(resource), params={"q": soql}, headers=headers).json()
        while True:
            yield from body.get("records", [])
            next_url = body.get("nextRecordsUrl")
            if body.get("done", True) or not next_url:
                return
            # a queryAll's nextRecordsUrl names /query/; its locator still includes the deleted rows
            body = self._call("GET", next_url, headers=headers).json()

    def query(self, soql: str, *, batch_size: int | None = None) -> Iterator[dict[str, Any]]:
        return self._paged("query", soql, batch_size)

    def query_all(self, soql: str, *, batch_size: int | None = None) -> Iterator[dict[str, Any]]:
        return self._paged("queryAll", soql, batch_size)

    def get(self, sobject: str, record_id: str, fields: Sequence[str] | None = None) -> dict[str, Any]:
        params = {"fields": ",".join(fields)} if fields else None
        body: dict[str, Any] = self._call("GET", self._data(f"sobjects/{sobject}/{record_id}"), params=params).json()
        return body

    def retrieve(self, sobject: str, ids: Sequence[str], fields: Sequence[str]) -> list[dict[str, Any] | None]:
        wanted = list(fields) if any(f.lower() == "id" for f in fields) else ["Id", *fields]
        path = self._data(f"composite/sobjects/{sobject}")
        results: list[dict[str, Any] | None] = []
        if len(ids) <= MAX_GET_IDS:
            if ids:
                params = {"ids": ",".join(ids), "fields": ",".join(wanted)}
                results.extend(self._call("GET", path, params=params).json())
            return results
        for chunk in _chunks(ids, MAX_POST_IDS):
            # POST here reads (so it is retried like a GET): the body carries ids that would overflow a URL
            answer = self._call("POST", path, json={"ids": list(chunk), "fields": wanted}, retry=True)
            results.extend(answer.json())
        return results

    # --- writes

    @staticmethod
    def _results(answer: Any, count: int, ids: Sequence[str | None] | None = None) -> list[RecordResult]:
        """One result per record sent. A failed SaveResult carries no id ("if this field is empty, the object
        wasn't updated"), so for updates and deletes the id sent stands in: every result names its record."""
        if not isinstance(answer, list) or len(answer) != count:
            raise PermanentError(SYSTEM, f"sObject Collections answered {type(answer).__name__}, not {count} results")
        sent = list(ids) if ids is not None else [None] * count
        return [
            RecordResult(r.get("id") or known, bool(r.get("success")), _record_errors(r.get("errors")))
            for r, known in zip(answer, sent, strict=True)
            if isinstance(r, dict)
        ]

    def _write(self, method: str, sobject: str, records: Sequence[Mapping[str, Any]]) -> list[RecordResult]:
        results: list[RecordResult] = []
        for chunk in _chunks(records, MAX_WRITE_BATCH):
            payload = {
                "allOrNone": False,
                "records": [{"attributes": {"type": sobject}, **dict(r)} for r in chunk],
            }
            answer = self._call(method, self._data("composite/sobjects"), json=payload, create=method == "POST")
            ids = None if method == "POST" else [str(r.get("Id")) for r in chunk]
            results.extend(self._results(answer.json(), len(chunk), ids))
        return results

    def create(
        self, sobject: str, records: Sequence[Mapping[str, Any]], *, marker: str | None = None
    ) -> list[RecordResult]:
        """Insert records, 200 a call. A create is never sent twice: when an answer leaves it unknown whether
        a call's records were written (a 5xx, a timeout, a dropped connection), then

        - with ``marker``, the name of a field whose value is unique per record (``Concord_ICalUID__c``,
          ``Concord_Message_ID__c``), the records are looked up by it: those found are reported created,
          with their ids; the rest come back failed ``UNKNOWN_OUTCOME`` (transient: a later attempt must
          look them up by the marker before it creates, as the worker's match-before-create does; the
          write may still be in flight, so "not found" is no proof it never happened);
        - without ``marker``, the :class:`TransientError` is raised.
        """
        if marker is None:
            return self._write("POST", sobject, records)
        missing = [i for i, r in enumerate(records) if not r.get(marker)]
        if missing:
            raise ValueError(f"records at positions {missing} carry no {marker}")
        results: list[RecordResult] = []
        for chunk in _chunks(records, MAX_WRITE_BATCH):
            try:
                results.extend(self._write("POST", sobject, chunk))
            except TransientError as exc:
                if exc.code in _NOTHING_WRITTEN:
                    raise  # the answer proves nothing was written: the caller may simply try again
                results.extend(self._resolve_unknown(sobject, chunk, marker, exc))
        return results

    def _resolve_unknown(
        self, sobject: str, records: Sequence[Mapping[str, Any]], marker: str, cause: TransientError
    ) -> list[RecordResult]:
        log.warning("salesforce: %d %s creates had an unknown outcome; looking them up", len(records), sobject)
        values = [str(r[marker]) for r in records]
        found: dict[str, str] = {}
        for chunk in _chunks(values, _MARKER_CHUNK):
            for row in self.query(f"SELECT Id, {marker} FROM {sobject} WHERE {marker} IN {in_list(chunk)}"):
                found.setdefault(str(row.get(marker)), str(row["Id"]))
        unknown = RecordError("UNKNOWN_OUTCOME", f"the create may or may not have been written ({cause})")
        return [
            RecordResult(found[value], True) if value in found else RecordResult(None, False, (unknown,))
            for value in values
        ]

    def update(self, sobject: str, records: Sequence[Mapping[str, Any]]) -> list[RecordResult]:
        missing = [i for i, r in enumerate(records) if not r.get("Id")]
        if missing:
            raise ValueError(f"records at positions {missing} carry no Id")
        return self._write("PATCH", sobject, records)

    def update_one(
        self, sobject: str, record_id: str, fields: Mapping[str, Any], *, if_unmodified_since: datetime | None = None
    ) -> None:
        """Update one record through sObject Rows. With ``if_unmodified_since`` (the ``LastModifiedDate``
        read; whole seconds, as Salesforce keeps it), a record changed since is refused with 412:
        :class:`ConflictError`, re-read and plan again."""
        headers = None
        if if_unmodified_since is not None:
            headers = {"If-Unmodified-Since": format_datetime(if_unmodified_since.astimezone(UTC), usegmt=True)}
        self._call("PATCH", self._data(f"sobjects/{sobject}/{record_id}"), json=dict(fields), headers=headers)

    def delete(self, ids: Sequence[str]) -> list[RecordResult]:
        results: list[RecordResult] = []
        for chunk in _chunks(ids, MAX_WRITE_BATCH):
            params = {"ids": ",".join(chunk), "allOrNone": "false"}
            answer = self._call("DELETE", self._data("composite/sobjects"), params=params)
            results.extend(self._results(answer.json(), len(chunk), chunk))
        return results

    def relate(self, relation: RelationType, pairs: Sequence[tuple[str, str]]) -> list[RecordResult]:
        """Create ``EventRelation`` / ``TaskRelation`` rows for (activity id, relation id) pairs, 200 a call.

        A Task relates to one Lead or up to 50 Contacts, and to one Account (``IsWhat``, which Salesforce
        sets from the id). Remove relations with :meth:`delete`: a TaskRelation cannot be updated, and a
        deleted one skips the recycle bin.
        """
        parent = "EventId" if relation == "EventRelation" else "TaskId"
        return self.create(relation, [{parent: activity, "RelationId": who} for activity, who in pairs])

    def create_event(self, event: Mapping[str, Any], relation_ids: Sequence[str]) -> EventWriteResult:
        """One Composite call: the Event, then sObject Collections creates of its relations.

        The relations refer to the new event as ``@{event.id}``; if the event fails they come back
        ``PROCESSING_HALTED``. Up to 24 × 200 relations fit in the one call.
        """
        chunks = list(_chunks(relation_ids, MAX_WRITE_BATCH))
        if len(chunks) + 1 > MAX_SUBREQUESTS:
            raise ValueError(f"{len(relation_ids)} relations do not fit in one Composite call")
        subrequests: list[dict[str, Any]] = [
            {"method": "POST", "url": self._data("sobjects/Event"), "referenceId": "event", "body": dict(event)}
        ]
        for index, chunk in enumerate(chunks):
            records = [
                {"attributes": {"type": "EventRelation"}, "EventId": "@{event.id}", "RelationId": relation_id}
                for relation_id in chunk
            ]
            subrequests.append(
                {
                    "method": "POST",
                    "url": self._data("composite/sobjects"),
                    "referenceId": f"relations{index}",
                    "body": {"allOrNone": False, "records": records},
                }
            )
        payload = {"allOrNone": False, "compositeRequest": subrequests}
        answers = self._call("POST", self._data("composite"), json=payload, create=True).json()["compositeResponse"]
        by_reference = {a.get("referenceId"): a for a in answers if isinstance(a, dict)}
        event_result = self._subresult(by_reference.get("event"))
        relations: list[RecordResult] = []
        for index, chunk in enumerate(chunks):
            answer = by_reference.get(f"relations{index}") or {}
            if answer.get("httpStatusCode", 500) < 300:
                relations.extend(self._results(answer.get("body"), len(chunk)))
            else:
                failure = self._subresult(answer)
                relations.extend(RecordResult(None, False, failure.errors) for _ in chunk)
        return EventWriteResult(event_result, tuple(relations))

    @staticmethod
    def _subresult(answer: Mapping[str, Any] | None) -> RecordResult:
        """A Composite subrequest's answer as a record result."""
        if not answer:
            return RecordResult(None, False, (RecordError("PROCESSING_HALTED", "no answer for the subrequest"),))
        body = answer.get("body")
        if answer.get("httpStatusCode", 500) < 300 and isinstance(body, dict):
            return RecordResult(body.get("id"), bool(body.get("success", True)), _record_errors(body.get("errors")))
        return RecordResult(None, False, _record_errors(body if isinstance(body, list) else []))
