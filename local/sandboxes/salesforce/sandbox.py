"""The Salesforce sandbox: an org in memory behind the REST API subset Concord uses.

Serves the OAuth 2.0 JWT bearer token endpoint, REST sObject CRUD, SOQL ``query``/``queryAll`` with
paging, sObject Collections, Composite, ``Sforce-Limit-Info`` on every answer and the daily API limit;
pushes Outbound Messages (SOAP) and change events shaped as Event Relay hands them to EventBridge.

Each API call is one transaction: its writes become visible, and its change events and Outbound
Messages go out, when the call ends; an ``allOrNone`` failure rolls all of it back.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import re
import secrets
import string
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import jwt

from local.sandboxes import seed as seed_data
from local.sandboxes.salesforce import notify
from local.sandboxes.salesforce.notify import Change, OutboundMessage
from local.sandboxes.salesforce.schema import (
    DEFAULTS,
    TYPES,
    SObjectType,
    lookup_type,
    make_id,
    parse_date,
    parse_datetime,
    sf_datetime,
    type_of_id,
)
from local.sandboxes.salesforce.schema import now as _now
from local.sandboxes.salesforce.soql import Query, SoqlError, compile_query, matches, sort_key
from local.sandboxes.server import Faults, HttpError, Pusher, Request, Response, Sandbox, route, verify_assertion

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

V = r"/services/data/v(?P<version>\d+\.\d)"
SUPPORTED_VERSIONS = tuple(f"{v}.0" for v in range(31, 67))
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MAX_COLLECTION_WRITE = 200
MAX_COLLECTION_READ = 2000
MAX_COMPOSITE = 25
MIN_BATCH_SIZE, MAX_BATCH_SIZE = 200, 2000  # Sforce-Query-Options batchSize bounds; 2,000 is the default
MAX_ASSERTION_LIFETIME_S = 180
CLOCK_SKEW_S = 5
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_REFERENCE = re.compile(r"@\{([^}]+)\}")
_NOT_FOUND_MESSAGE = "The requested resource does not exist"
_VIEW = "__view__"  # marks a row of a derived object (TaskWhoRelation) rendered from another's record


class RecordFailure(Exception):
    """Why one record could not be written, in Salesforce's terms."""

    def __init__(self, code: str, message: str, fields: list[str] | None = None, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.fields, self.status = code, message, fields or [], status

    def as_result_error(self) -> dict[str, Any]:
        return {"statusCode": self.code, "message": self.message, "fields": self.fields}

    def as_http(self) -> HttpError:
        return HttpError(self.status, self.code, self.message, fields=self.fields)


@dataclass(frozen=True)
class ValidationRule:
    """A validation rule that refuses some values of one field (``FIELD_CUSTOM_VALIDATION_EXCEPTION``)."""

    sobject: str
    field: str
    rejected: tuple[Any, ...]
    message: str = "This value is not allowed."


def now() -> datetime:
    """System timestamps (LastModifiedDate, SystemModstamp) hold whole seconds in Salesforce
    (``2026-11-23T12:15:16.000+0000``), so an ``If-Unmodified-Since`` HTTP date can name them exactly."""
    return _now().replace(microsecond=0)


def _season_label(version: str) -> str:
    number = int(float(version))
    season = ("Winter", "Spring", "Summer")[(number - 59) % 3]
    return f"{season} '{24 + (number - 59) // 3:02d}"


_ADMIN_ACTIONS = ("lock_rows", "validation_rules", "cdc/gap", "cdc/faults", "limits", "seed", "fail_after_commit")


class SalesforceSandbox(Sandbox):
    """An in-memory org. ``public_key_pem`` verifies the JWT assertions of ``consumer_key``/``username``."""

    name: ClassVar[str] = "salesforce"

    def __init__(
        self,
        *,
        consumer_key: str,
        username: str,
        public_key_pem: str | bytes,
        audience: str = "https://login.salesforce.com",
        org_id: str = seed_data.ORG_ID,
        daily_limit: int = 100_000,
        batch_size: int = 2000,
        cdc_sink: Callable[[dict[str, Any]], None] | None = None,
        channel_id: str = "0YL5g000000SEEDAAA",
        aws_account: str = "123456789012",
        aws_region: str = "us-east-1",
        cdc_entities: frozenset[str] = frozenset({"Account", "Contact", "Lead", "Event", "Task", "User"}),
        token_prefix: str | None = None,
        tls: bool = True,
        port: int = 0,
    ):
        super().__init__(tls=tls, port=port)
        self.consumer_key, self.username, self.public_key_pem = consumer_key, username, public_key_pem
        self.audience = audience
        self.org_id = org_id
        self.daily_limit = daily_limit
        self.batch_size = batch_size
        self.cdc_sink = cdc_sink
        self._held_events: list[dict[str, Any]] = []
        self.change_event_faults = Faults()  # POST /_sandbox/cdc/faults {"drop": N, "duplicate": N, "reorder": N}
        self.channel_id, self.aws_account, self.aws_region = channel_id, aws_account, aws_region
        self.cdc_entities = cdc_entities
        # Real access tokens start with the 15-character org id and "!"; tests may plant a canary here.
        self.token_prefix = token_prefix if token_prefix is not None else org_id[:15] + "!"
        self._initial = (daily_limit, batch_size, self.token_prefix)
        self.outbound: list[OutboundMessage] = []
        self.pusher = Pusher(self.faults, acknowledged=notify.acknowledged)
        self._lock = threading.RLock()
        self._signing_key = secrets.token_bytes(32)
        self._clear_state()

    # ------------------------------------------------------------------------------ state & config

    def _clear_state(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self._after_commit: list[int | None] = []  # one per pending fault: a 5xx status, or None (drop)
        self._counters: dict[str, int] = {}
        self._cursors: dict[str, list[dict[str, Any]]] = {}
        self._pending: list[Change] = []
        self._origin = ""
        self.api_usage = 0
        self.lock_failures = 0
        self.validation_rules: list[ValidationRule] = []
        self.commit_number = 1_000_000
        self.events_emitted = 0
        self.user_id = self._next_id("005")
        stamp = sf_datetime(now())
        self.records[self.user_id] = {
            "Id": self.user_id,
            "IsDeleted": False,
            "CreatedDate": stamp,
            "CreatedById": self.user_id,
            "LastModifiedDate": stamp,
            "LastModifiedById": self.user_id,
            "SystemModstamp": stamp,
            "Username": self.username,
            "FirstName": "Concord",
            "LastName": "Integration",
            "Name": "Concord Integration",
            "Email": self.username if "@" in self.username else "integration@concord.example",
            "Alias": "concord",
            "IsActive": True,
            "TimeZoneSidKey": "GMT",
        }

    def reset(self) -> None:
        """Forget every record, the usage count and the test switches (validation rules, lock failures,
        limits and batch size back to their start values, pending pushes dropped); keeps the wiring
        (change event sink, Outbound Message actions)."""
        super().reset()
        self.change_event_faults.clear()
        self._held_events.clear()
        with self._lock:
            self.daily_limit, self.batch_size, self.token_prefix = self._initial
            self.pusher.close()
            self.pusher = Pusher(self.faults, acknowledged=notify.acknowledged)
            self._clear_state()

    def stop(self) -> None:
        super().stop()
        self.pusher.close()

    def fail_next_writes_with_lock(self, writes: int) -> None:
        """The next ``writes`` record writes fail with ``UNABLE_TO_LOCK_ROW``, as under lock contention."""
        with self._lock:
            self.lock_failures = writes

    def add_validation_rule(self, rule: ValidationRule) -> None:
        with self._lock:
            self.validation_rules.append(rule)

    def add_outbound_message(self, message: OutboundMessage) -> None:
        with self._lock:
            self.outbound.append(message)

    def state(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for record_id, record in self.records.items():
            if not record.get("IsDeleted"):
                sobject = type_of_id(record_id)
                if sobject is not None:
                    counts[sobject.name] = counts.get(sobject.name, 0) + 1
        return {
            **super().state(),
            "records": counts,
            "api_usage": self.api_usage,
            "daily_limit": self.daily_limit,
            "lock_failures": self.lock_failures,
            "events_emitted": self.events_emitted,
            "outbound_delivered": len(self.pusher.delivered),
            "outbound_abandoned": len(self.pusher.abandoned),
        }

    # ------------------------------------------------------------------------------ error shapes

    def error(self, status: int, code: str, message: str, **extra: Any) -> Response:
        # The base class words its generic faults in its own terms; say them as Salesforce does.
        if code == "ServiceUnavailable":
            code, message = (
                ("SERVER_UNAVAILABLE", "Server is temporarily unavailable.")
                if status == 503
                else (
                    "UNKNOWN_EXCEPTION",
                    "An unexpected error occurred. Please include this ErrorId if you contact support: "
                    "1234567890-12345 (-1234567890)",
                )
            )
        elif code == "MethodNotAllowed":
            code, message = "METHOD_NOT_ALLOWED", message.replace(" is not allowed on ", " not allowed on ")
        elif code == "NotFound":
            code, message = "NOT_FOUND", _NOT_FOUND_MESSAGE
        body: dict[str, Any] = {"message": message, "errorCode": code}
        if "fields" in extra:
            body["fields"] = extra["fields"]
        return Response(status, [body])

    def throttled(self, retry_after: float) -> Response:
        # Salesforce's REST API says "slow down" as 403 REQUEST_LIMIT_EXCEEDED (concurrent long-running
        # requests here). It sends no Retry-After; the sandbox adds one so the shared switch means the same
        # thing on every sandbox.
        response = self.error(403, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded.")
        response.headers["Retry-After"] = str(int(retry_after) if retry_after == int(retry_after) else retry_after)
        return response

    def unauthorized(self) -> Response:
        response = self.error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        response.headers["WWW-Authenticate"] = 'Token realm="Salesforce"'
        return response

    def public_paths(self) -> tuple[str, ...]:
        return ("/_sandbox/", "/services/oauth2/", "/services/data")

    # ------------------------------------------------------------------------------ dispatch

    def _session(self, request: Request) -> dict[str, Any] | None:
        token = request.bearer() or ""
        if not token.startswith(self.token_prefix):
            return None
        return self.tokens.check(token[len(self.token_prefix) :])

    def dispatch(self, request: Request) -> Response:
        match = re.match(V + r"(?:/|\Z)", request.path)
        if match is None:
            return super().dispatch(request)  # token endpoint, versions list, admin
        if match.group("version") not in SUPPORTED_VERSIONS:
            self.requests_served += 1
            return self.error(404, "NOT_FOUND", _NOT_FOUND_MESSAGE)
        if self._session(request) is None:
            self.requests_served += 1
            return self.unauthorized()
        with self._lock:
            if self.api_usage >= self.daily_limit:
                self.requests_served += 1
                response = self.error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            else:
                self.api_usage += 1
                self._origin = self._change_origin(request, match.group("version"))
                self._pending = []
                try:
                    response = super().dispatch(request)
                    self._commit()
                finally:
                    self._pending = []
                if request.method != "GET" and response.status < 300 and self._after_commit:
                    status = self._after_commit.pop(0)
                    if status is None:
                        raise _DropConnection
                    response = self.error(status, "ServiceUnavailable", "")
            response.headers["Sforce-Limit-Info"] = f"api-usage={self.api_usage}/{self.daily_limit}"
        return response

    def fail_after_commit(self, calls: int = 1, *, status: int | None = 500) -> None:
        """The next ``calls`` successful writes are committed (records stored, change events out) and then
        answered with ``status`` (a 5xx), or, with ``status=None``, by closing the connection unanswered:
        what a client sees when Salesforce times out or fails after the record exists."""
        with self._lock:
            self._after_commit = [status] * calls

    @staticmethod
    def _change_origin(request: Request, version: str) -> str:
        origin = f"com/salesforce/api/rest/{version}"
        options = request.headers.get("sforce-call-options", "")
        client = next(
            (part.split("=", 1)[1].strip() for part in options.split(",") if part.strip().startswith("client=")),
            "",
        )
        return f"{origin};client={client}" if client else origin

    def _body(self, request: Request) -> Any:
        try:
            return request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise HttpError(400, "JSON_PARSER_ERROR", f"Unexpected character in the request body: {exc}") from exc

    # ------------------------------------------------------------------------------ token endpoint

    def _oauth_error(self, error: str, description: str, status: int = 400) -> Response:
        return Response(status, {"error": error, "error_description": description})

    @route("POST", r"/services/oauth2/token")
    def token(self, request: Request) -> Response:
        form = request.form()
        if form.get("grant_type") != JWT_GRANT:
            return self._oauth_error("unsupported_grant_type", "grant type not supported")
        assertion = form.get("assertion", "")
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            return self._oauth_error("invalid_grant", "invalid assertion")
        if unverified.get("iss") != self.consumer_key:
            return self._oauth_error("invalid_client_id", "client identifier invalid")
        try:
            claims = verify_assertion(assertion, self.public_key_pem, audience=self.audience)
        except jwt.InvalidAudienceError:
            return self._oauth_error("invalid_grant", "audience is invalid")
        except jwt.ExpiredSignatureError:
            return self._oauth_error("invalid_grant", "expired authorization code")
        except jwt.InvalidTokenError:
            return self._oauth_error("invalid_grant", "invalid assertion")
        if float(claims["exp"]) > time.time() + MAX_ASSERTION_LIFETIME_S + CLOCK_SKEW_S:
            return self._oauth_error("invalid_grant", "invalid assertion")
        if claims.get("sub") != self.username:
            return self._oauth_error("invalid_grant", "user hasn't approved this consumer")
        token, _ = self.tokens.issue(sub=self.username, user_id=self.user_id)
        access_token = self.token_prefix + token
        issued_at = str(int(time.time() * 1000))
        identity = f"{self.audience}/id/{self.org_id}/{self.user_id}"
        signature = hmac.new(self._signing_key, (identity + issued_at).encode(), hashlib.sha256).digest()
        return Response(
            200,
            {
                "access_token": access_token,
                "scope": "api",
                "instance_url": self.url,
                "id": identity,
                "token_type": "Bearer",
                "issued_at": issued_at,
                "signature": base64.b64encode(signature).decode(),
            },
        )

    # ------------------------------------------------------------------------------ discovery

    @route("GET", r"/services/data/?")
    def versions(self, request: Request) -> Response:
        return Response(
            200,
            [{"label": _season_label(v), "url": f"/services/data/v{v}", "version": v} for v in SUPPORTED_VERSIONS],
        )

    @route("GET", V + r"/?")
    def resources(self, request: Request) -> Response:
        base = f"/services/data/v{request.params['version']}"
        names = ("sobjects", "query", "queryAll", "composite", "limits")
        return Response(200, {name: f"{base}/{name}" for name in names})

    @route("GET", V + r"/limits/?")
    def limits(self, request: Request) -> Response:
        remaining = max(0, self.daily_limit - self.api_usage)
        return Response(200, {"DailyApiRequests": {"Max": self.daily_limit, "Remaining": remaining}})

    def _describe_basic(self, sobject: SObjectType, version: str) -> dict[str, Any]:
        base = f"/services/data/v{version}/sobjects/{sobject.name}"
        return {
            "name": sobject.name,
            "label": sobject.label,
            "keyPrefix": sobject.prefix,
            "createable": sobject.name != "User" and not sobject.view_of,
            "updateable": sobject.name != "TaskRelation" and not sobject.view_of,
            "deletable": sobject.name != "User" and not sobject.view_of,
            "queryable": True,
            "custom": False,
            "urls": {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"},
        }

    @route("GET", V + r"/sobjects/?")
    def global_describe(self, request: Request) -> Response:
        version = request.params["version"]
        return Response(
            200,
            {
                "encoding": "UTF-8",
                "maxBatchSize": MAX_COLLECTION_WRITE,
                "sobjects": [self._describe_basic(t, version) for t in TYPES.values()],
            },
        )

    @route("GET", V + r"/sobjects/(?P<type>\w+)/describe/?")
    def describe(self, request: Request) -> Response:
        sobject = self._type(request.params["type"])
        fields = [
            {
                "name": spec.name,
                "type": spec.type,
                "length": spec.length,
                "nillable": not spec.required and spec.type != "boolean",
                "createable": spec.createable,
                "updateable": spec.updateable,
                "referenceTo": list(spec.references),
                "relationshipName": spec.name[:-2] if spec.type == "reference" else None,
            }
            for spec in sobject.fields.values()
        ]
        return Response(200, {**self._describe_basic(sobject, request.params["version"]), "fields": fields})

    @route("GET", V + r"/sobjects/(?P<type>\w+)/?")
    def basic_info(self, request: Request) -> Response:
        sobject = self._type(request.params["type"])
        recent = [
            self._render_full(r, sobject, request.params["version"], ("Id", "Name"))
            for r in list(self._live(sobject))[-10:]
        ]
        return Response(
            200, {"objectDescribe": self._describe_basic(sobject, request.params["version"]), "recentItems": recent}
        )

    # ------------------------------------------------------------------------------ sObject rows

    def _type(self, name: str) -> SObjectType:
        sobject = lookup_type(name)
        if sobject is None:
            raise HttpError(404, "NOT_FOUND", _NOT_FOUND_MESSAGE)
        return sobject

    def _existing(self, sobject: SObjectType, record_id: str) -> dict[str, Any]:
        record = self._find(record_id)
        if record is None or type_of_id(record["Id"]) is not sobject:
            raise RecordFailure(
                "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {record_id}", status=404
            )
        if record["IsDeleted"]:
            raise RecordFailure("ENTITY_IS_DELETED", "entity is deleted", status=404)
        return record

    def _find(self, record_id: str) -> dict[str, Any] | None:
        if len(record_id) == 18:
            return self.records.get(record_id)
        if len(record_id) == 15:
            return next((r for i, r in self.records.items() if i[:15] == record_id), None)
        return None

    @route("POST", V + r"/sobjects/(?P<type>\w+)/?")
    def create_row(self, request: Request) -> Response:
        sobject = self._type(request.params["type"])
        body = self._body(request)
        if not isinstance(body, dict):
            raise HttpError(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of sObject from START_ARRAY")
        try:
            record_id = self.create(sobject, body)
        except RecordFailure as failure:
            raise failure.as_http() from failure
        location = f"/services/data/v{request.params['version']}/sobjects/{sobject.name}/{record_id}"
        return Response(201, {"id": record_id, "success": True, "errors": []}, headers={"Location": location})

    @route("GET", V + r"/sobjects/(?P<type>\w+)/(?P<id>\w+)/?")
    def get_row(self, request: Request) -> Response:
        sobject = self._type(request.params["type"])
        try:
            record = self._existing(sobject, request.params["id"])
        except RecordFailure as failure:
            raise failure.as_http() from failure
        wanted = request.arg("fields")
        names = tuple(self._field_names(sobject, wanted.split(","))) if wanted else None
        return Response(200, self._render_full(record, sobject, request.params["version"], names))

    @route("PATCH", V + r"/sobjects/(?P<type>\w+)/(?P<id>\w+)/?")
    def update_row(self, request: Request) -> Response:
        sobject = self._type(request.params["type"])
        body = self._body(request)
        if not isinstance(body, dict):
            raise HttpError(400, "JSON_PARSER_ERROR", "Cannot deserialize instance of sObject from START_ARRAY")
        try:
            record = self._existing(sobject, request.params["id"])
            since = request.headers.get("if-unmodified-since")
            if since and parse_datetime(record["LastModifiedDate"]) > parsedate_to_datetime(since):
                raise HttpError(412, "PRECONDITION_FAILED", "The requested resource has been modified.")
            self.update(sobject, record["Id"], body)
        except RecordFailure as failure:
            raise failure.as_http() from failure
        return Response(204, None)

    @route("DELETE", V + r"/sobjects/(?P<type>\w+)/(?P<id>\w+)/?")
    def delete_row(self, request: Request) -> Response:
        sobject = self._type(request.params["type"])
        try:
            record = self._existing(sobject, request.params["id"])
            self.delete(record["Id"])
        except RecordFailure as failure:
            raise failure.as_http() from failure
        return Response(204, None)

    # ------------------------------------------------------------------------------ writes

    def _next_id(self, prefix: str) -> str:
        self._counters[prefix] = self._counters.get(prefix, 0) + 1
        return make_id(prefix, self._counters[prefix])

    def _take_lock_failure(self, record_id: str | None) -> None:
        if self.lock_failures > 0:
            self.lock_failures -= 1
            raise RecordFailure(
                "UNABLE_TO_LOCK_ROW",
                f"unable to obtain exclusive access to this record or 1 records: {record_id or ''}".rstrip(": "),
            )

    def _coerce(self, sobject: SObjectType, name: str, value: Any, *, creating: bool) -> tuple[str, Any]:
        spec = sobject.field(name)
        if spec is None:
            raise RecordFailure("INVALID_FIELD", f"No such column '{name}' on sobject of type {sobject.name}")
        if not (spec.createable if creating else spec.updateable):
            raise RecordFailure(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {spec.name}. Please check the security settings of this field "
                "and verify that it is read/write for your profile or permission set.",
                [spec.name],
            )
        if value is None or value == "":
            return spec.name, None
        label = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", spec.name)
        try:
            value = self._typed(spec.type, value)
        except (TypeError, ValueError) as exc:
            raise RecordFailure(
                "JSON_PARSER_ERROR", f"Cannot deserialize instance of {spec.type} from value {value!r}", [spec.name]
            ) from exc
        if spec.type == "email" and not _EMAIL.match(value):
            raise RecordFailure("INVALID_EMAIL_ADDRESS", f"{label}: invalid email address: {value}", [spec.name])
        if spec.type == "reference":
            self._check_reference(spec.name, spec.references, value)
        if spec.length and isinstance(value, str) and len(value) > spec.length:
            raise RecordFailure(
                "STRING_TOO_LONG",
                f"{label}: data value too large: {value[:40]} (max length={spec.length})",
                [spec.name],
            )
        return spec.name, value

    @staticmethod
    def _typed(kind: str, value: Any) -> Any:
        if kind == "datetime":
            return sf_datetime(parse_datetime(str(value)))
        if kind == "date":
            return parse_date(str(value)).isoformat()
        if kind == "boolean":
            if not isinstance(value, bool):
                raise TypeError("boolean expected")
            return value
        if kind == "int":
            return int(value)
        if not isinstance(value, str):
            raise TypeError("text expected")
        return value

    def _check_reference(self, name: str, allowed: tuple[str, ...], value: str) -> None:
        target = self._find(value)
        sobject = type_of_id(value)
        if sobject is None or sobject.name not in allowed:
            raise RecordFailure(
                "FIELD_INTEGRITY_EXCEPTION",
                f"{name}: id value of incorrect type: {value}",
                [name],
            )
        if target is None or target["IsDeleted"]:
            raise RecordFailure("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [name])

    def _check_rules(self, sobject: SObjectType, record: dict[str, Any]) -> None:
        for rule in self.validation_rules:
            if rule.sobject.lower() == sobject.name.lower() and record.get(rule.field) in rule.rejected:
                raise RecordFailure("FIELD_CUSTOM_VALIDATION_EXCEPTION", rule.message, [rule.field])

    @staticmethod
    def _derive(sobject: SObjectType, record: dict[str, Any]) -> None:
        """Fields Salesforce computes from others."""
        if sobject.name in ("Contact", "Lead", "User"):
            record["Name"] = " ".join(p for p in (record.get("FirstName"), record.get("LastName")) if p)
        if sobject.name == "Event":
            start, end, minutes = (
                record.get("StartDateTime"),
                record.get("EndDateTime"),
                record.get("DurationInMinutes"),
            )
            if start and not end and minutes is not None:
                record["EndDateTime"] = sf_datetime(parse_datetime(start) + timedelta(minutes=int(minutes)))
            if start and record.get("EndDateTime"):
                delta = parse_datetime(record["EndDateTime"]) - parse_datetime(start)
                record["DurationInMinutes"] = int(delta.total_seconds() // 60)
            if start:
                record["ActivityDateTime"] = start
                record["ActivityDate"] = parse_datetime(start).date().isoformat()

    def _check_event(self, record: dict[str, Any]) -> None:
        if record.get("IsAllDayEvent"):
            if not record.get("ActivityDate"):
                raise RecordFailure(
                    "REQUIRED_FIELD_MISSING", "Required fields are missing: [ActivityDate]", ["ActivityDate"]
                )
            return
        missing = [f for f in ("StartDateTime", "EndDateTime") if not record.get(f)]
        if missing:
            raise RecordFailure(
                "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing
            )
        if parse_datetime(record["EndDateTime"]) < parse_datetime(record["StartDateTime"]):
            raise RecordFailure(
                "FIELD_INTEGRITY_EXCEPTION", "End Date Time: End time can't be before start time.", ["EndDateTime"]
            )

    def create(self, sobject: SObjectType, values: Mapping[str, Any]) -> str:
        """Insert one record as the API does (validation, defaults, stamps); returns its id."""
        if sobject.view_of:
            raise RecordFailure(
                "INVALID_TYPE_FOR_OPERATION", f"entity type {sobject.name} does not support insert", status=400
            )
        self._take_lock_failure(None)
        record: dict[str, Any] = dict(DEFAULTS.get(sobject.name, {}))
        for name, value in values.items():
            if name == "attributes":
                continue
            field_name, typed = self._coerce(sobject, name, value, creating=True)
            record[field_name] = typed
        if sobject.name == "TaskRelation" and record.get("RelationId"):
            # "Value is false if RelationId is a contact or lead and true otherwise" (Object Reference)
            relation = type_of_id(str(record["RelationId"]))
            record["IsWhat"] = relation is not None and relation.name not in ("Contact", "Lead")
        if "OwnerId" in sobject.fields and not record.get("OwnerId"):
            record["OwnerId"] = self.user_id
        self._derive(sobject, record)
        missing = [n for n, spec in sobject.fields.items() if spec.required and record.get(n) in (None, "")]
        if missing:
            raise RecordFailure(
                "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing
            )
        if sobject.name == "Event":
            self._check_event(record)
        self._check_rules(sobject, record)
        record_id = self._next_id(sobject.prefix)
        stamp = sf_datetime(now())
        record.update(
            Id=record_id,
            IsDeleted=False,
            CreatedDate=stamp,
            CreatedById=self.user_id,
            LastModifiedDate=stamp,
            LastModifiedById=self.user_id,
            SystemModstamp=stamp,
        )
        self.records[record_id] = record
        self._pending.append(Change(sobject, record_id, "CREATE", dict(record), origin=self._origin))
        return record_id

    def update(self, sobject: SObjectType, record_id: str, values: Mapping[str, Any]) -> None:
        """Update one live record; ``values`` may carry ``Id`` and ``attributes``, which are skipped."""
        record = self._existing(sobject, record_id)
        if record.get("IsConverted") and sobject.name == "Lead":
            raise RecordFailure("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", status=400)
        self._take_lock_failure(record["Id"])
        updated = dict(record)
        for name, value in values.items():
            if name == "attributes" or name.lower() == "id":  # field names are case-insensitive
                continue
            field_name, typed = self._coerce(sobject, name, value, creating=False)
            updated[field_name] = typed
        self._derive(sobject, updated)
        missing = [n for n, spec in sobject.fields.items() if spec.required and updated.get(n) in (None, "")]
        if missing:
            raise RecordFailure(
                "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing
            )
        if sobject.name == "Event":
            self._check_event(updated)
        self._check_rules(sobject, updated)
        changed = tuple(n for n in sobject.fields if updated.get(n) != record.get(n))
        stamp = sf_datetime(now())
        updated.update(LastModifiedDate=stamp, LastModifiedById=self.user_id, SystemModstamp=stamp)
        self.records[record["Id"]] = updated
        changed_all = (*changed, "LastModifiedDate") if "LastModifiedDate" not in changed else changed
        self._pending.append(Change(sobject, record["Id"], "UPDATE", dict(updated), changed_all, self._origin))

    def delete(self, record_id: str) -> None:
        """Move a record to the recycle bin (``IsDeleted``), with the event relations of a deleted event."""
        record = self._find(record_id)
        sobject = type_of_id(record_id)
        if record is None or sobject is None:
            raise RecordFailure("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", status=404)
        if record["IsDeleted"]:
            raise RecordFailure("ENTITY_IS_DELETED", "entity is deleted", status=404)
        self._take_lock_failure(record["Id"])
        stamp = sf_datetime(now())
        record.update(IsDeleted=True, LastModifiedDate=stamp, SystemModstamp=stamp)
        self._pending.append(Change(sobject, record["Id"], "DELETE", dict(record), origin=self._origin))
        if sobject.name == "TaskRelation":
            # "When a TaskRelation record is deleted, it isn't moved to the Recycle Bin" (Object Reference)
            del self.records[record["Id"]]
        parent_field = {"Event": "EventId", "Task": "TaskId"}.get(sobject.name)
        if parent_field is not None:  # a deleted activity takes its relations to the recycle bin with it
            for relation in self.records.values():
                if relation.get(parent_field) == record["Id"] and not relation["IsDeleted"]:
                    relation.update(IsDeleted=True, SystemModstamp=stamp)

    @contextlib.contextmanager
    def _transaction(self, all_or_none: bool) -> Iterator[Callable[[], None]]:
        """Yields ``rollback``: restores the records and drops the changes made since the start."""
        snapshot = {i: dict(r) for i, r in self.records.items()} if all_or_none else None
        pending = len(self._pending)

        def rollback() -> None:
            if snapshot is not None:
                self.records = snapshot
                del self._pending[pending:]

        yield rollback

    # ------------------------------------------------------------------------------ rendering

    def _url(self, record: dict[str, Any], sobject: SObjectType, version: str) -> str:
        return f"/services/data/v{version}/sobjects/{sobject.name}/{record['Id']}"

    def _render_full(
        self, record: dict[str, Any], sobject: SObjectType, version: str, names: tuple[str, ...] | None = None
    ) -> dict[str, Any]:
        rendered: dict[str, Any] = {"attributes": {"type": sobject.name, "url": self._url(record, sobject, version)}}
        for name in names or tuple(sobject.fields):
            rendered[name] = record.get(name, False if sobject.fields[name].type == "boolean" else None)
        return rendered

    def _field_names(self, sobject: SObjectType, names: list[str]) -> list[str]:
        canonical = []
        for name in (n.strip() for n in names if n.strip()):
            spec = sobject.field(name)
            if spec is None:
                raise HttpError(400, "INVALID_FIELD", f"No such column '{name}' on entity '{sobject.name}'.")
            canonical.append(spec.name)
        return canonical

    def _value(self, record: dict[str, Any], path: tuple[str, ...]) -> Any:
        if len(path) == 1:
            sobject = type_of_id(record["Id"])
            spec = sobject.fields.get(path[0]) if sobject else None
            return record.get(path[0], False if spec is not None and spec.type == "boolean" else None)
        parent_id = record.get(path[0] + "Id")
        parent = self._find(parent_id) if parent_id else None
        return None if parent is None else self._value(parent, path[1:])

    def _render_paths(self, record: dict[str, Any], paths: list[tuple[str, ...]], version: str) -> dict[str, Any]:
        sobject = TYPES[record[_VIEW]] if _VIEW in record else type_of_id(record["Id"])
        assert sobject is not None
        rendered: dict[str, Any] = {"attributes": {"type": sobject.name, "url": self._url(record, sobject, version)}}
        nested: dict[str, list[tuple[str, ...]]] = {}
        for path in paths:
            if len(path) == 1:
                rendered[path[0]] = self._value(record, path)
            else:
                if path[0] not in nested:
                    rendered[path[0]] = None  # keeps the SELECT order
                nested.setdefault(path[0], []).append(path[1:])
        for relationship, rest in nested.items():
            parent_id = record.get(relationship + "Id")
            parent = self._find(parent_id) if parent_id else None
            rendered[relationship] = None if parent is None else self._render_paths(parent, rest, version)
        return rendered

    # ------------------------------------------------------------------------------ queries

    def _live(self, sobject: SObjectType, include_deleted: bool = False) -> Iterator[dict[str, Any]]:
        if sobject.view_of:
            yield from self._view_rows(sobject, include_deleted)
            return
        for record_id, record in self.records.items():
            if record_id.startswith(sobject.prefix) and (include_deleted or not record["IsDeleted"]):
                yield record

    def _view_rows(self, view: SObjectType, include_deleted: bool) -> Iterator[dict[str, Any]]:
        """TaskWhoRelation: the TaskRelations to a Contact or Lead, with ``Type`` naming which."""
        base = TYPES[view.view_of]
        for record in self._live(base, include_deleted):
            if record.get("IsWhat"):
                continue
            relation = type_of_id(str(record.get("RelationId") or ""))
            yield {**record, "Type": relation.name if relation else None, _VIEW: view.name}

    def run_query(
        self, soql: str, *, include_deleted: bool, version: str, batch_size: int | None = None
    ) -> dict[str, Any]:
        try:
            query = compile_query(soql)
        except SoqlError as exc:
            raise HttpError(400, exc.code, exc.message) from exc
        rows = self._select(query, self._live(query.sobject, include_deleted))
        if query.count_only:
            return {"totalSize": len(rows), "done": True, "records": []}
        rendered = [self._render_row(r, query, version, include_deleted) for r in rows]
        return self._page(rendered, 0, version, batch_size)

    def _select(self, query: Query, candidates: Iterator[dict[str, Any]]) -> list[dict[str, Any]]:
        """WHERE, ORDER BY, OFFSET and LIMIT applied to ``candidates``."""
        rows = [r for r in candidates if query.where is None or matches(query.where, r, self._value)]
        for path, descending, nulls_last in reversed(query.order):
            keyed = [(sort_key(self._value(r, path)), r) for r in rows if self._value(r, path) is not None]
            keyed.sort(key=lambda pair: pair[0], reverse=descending)
            present = [r for _, r in keyed]
            absent = [r for r in rows if self._value(r, path) is None]
            rows = present + absent if nulls_last else absent + present
        rows = rows[query.offset :]
        return rows if query.limit is None else rows[: query.limit]

    def _render_row(self, record: dict[str, Any], query: Query, version: str, include_deleted: bool) -> dict[str, Any]:
        rendered = self._render_paths(record, query.fields, version)
        for child in query.children:
            # A child relationship answers as a query result of its own, or null when it holds no rows.
            siblings = (
                r for r in self._live(child.query.sobject, include_deleted) if r.get(child.parent_field) == record["Id"]
            )
            rows = [self._render_paths(r, child.query.fields, version) for r in self._select(child.query, siblings)]
            rendered[child.relationship] = {"totalSize": len(rows), "done": True, "records": rows} if rows else None
        return rendered

    def _page(self, rows: list[dict[str, Any]], offset: int, version: str, batch_size: int | None) -> dict[str, Any]:
        size = min(self.batch_size, batch_size or MAX_BATCH_SIZE)
        chunk = rows[offset : offset + size]
        end = offset + len(chunk)
        result: dict[str, Any] = {"totalSize": len(rows), "done": end >= len(rows)}
        if end < len(rows):
            locator = "01g" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(15))
            self._cursors[locator] = rows
            # queryAll's locator too is a /query/ URL ("QueryAll More Results", REST API Developer Guide);
            # either resource then serves it, deleted rows included.
            result["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}-{end}"
        result["records"] = chunk
        return result

    @staticmethod
    def _batch_size(request: Request) -> int | None:
        """``Sforce-Query-Options: batchSize=N``: 200 to 2,000, a wish the server may shrink (Query Options Header)."""
        options = request.headers.get("sforce-query-options", "")
        for part in options.split(","):
            name, _, value = part.partition("=")
            if name.strip().lower() == "batchsize":
                try:
                    wanted = int(value.strip())
                except ValueError:
                    raise HttpError(400, "INVALID_QUERY_OPTIONS", f"invalid batchSize: {value.strip()}") from None
                return max(MIN_BATCH_SIZE, min(MAX_BATCH_SIZE, wanted))
        return None

    def _query(self, request: Request, kind: str) -> Response:
        soql = request.arg("q")
        if not soql:
            raise HttpError(400, "MALFORMED_QUERY", "A query string has to be specified")
        result = self.run_query(
            soql,
            include_deleted=kind == "queryAll",
            version=request.params["version"],
            batch_size=self._batch_size(request),
        )
        return Response(200, result)

    def _more(self, request: Request) -> Response:
        rows = self._cursors.get(request.params["locator"])
        if rows is None:
            raise HttpError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        page = self._page(rows, int(request.params["offset"]), request.params["version"], self._batch_size(request))
        return Response(200, page)

    @route("GET", V + r"/query/?")
    def query(self, request: Request) -> Response:
        return self._query(request, "query")

    @route("GET", V + r"/queryAll/?")
    def query_all(self, request: Request) -> Response:
        return self._query(request, "queryAll")

    @route("GET", V + r"/query/(?P<locator>01g\w+)-(?P<offset>\d+)/?")
    def query_more(self, request: Request) -> Response:
        return self._more(request)

    @route("GET", V + r"/queryAll/(?P<locator>01g\w+)-(?P<offset>\d+)/?")
    def query_all_more(self, request: Request) -> Response:
        return self._more(request)

    # ------------------------------------------------------------------------------ collections

    def _retrieve(self, request: Request, ids: list[str], fields: list[str]) -> Response:
        sobject = self._type(request.params["type"])
        if not ids or not fields:
            raise HttpError(400, "MALFORMED_QUERY", "ids and fields are required")
        if len(ids) > MAX_COLLECTION_READ:
            raise HttpError(400, "EXCEEDED_ID_LIMIT", f"Cannot retrieve more than {MAX_COLLECTION_READ} records")
        names = tuple(self._field_names(sobject, fields))
        results: list[dict[str, Any] | None] = []
        for record_id in ids:
            record = self._find(record_id)
            live = record is not None and not record["IsDeleted"] and type_of_id(record["Id"]) is sobject
            results.append(
                self._render_full(record, sobject, request.params["version"], names) if live and record else None
            )
        return Response(200, results)

    @route("GET", V + r"/composite/sobjects/(?P<type>\w+)/?")
    def retrieve_get(self, request: Request) -> Response:
        ids = [i for i in (request.arg("ids") or "").split(",") if i]
        fields = [f for f in (request.arg("fields") or "").split(",") if f]
        return self._retrieve(request, ids, fields)

    @route("POST", V + r"/composite/sobjects/(?P<type>\w+)/?")
    def retrieve_post(self, request: Request) -> Response:
        body = self._body(request) or {}
        return self._retrieve(request, list(body.get("ids") or []), list(body.get("fields") or []))

    def _collection_write(self, items: list[Any], all_or_none: bool, write: Callable[[Any], str]) -> Response:
        if len(items) > MAX_COLLECTION_WRITE:
            raise HttpError(
                400,
                "EXCEEDED_ID_LIMIT",
                f"record limit reached. cannot submit more than {MAX_COLLECTION_WRITE} records into this call",
            )
        results: list[dict[str, Any]] = []
        with self._transaction(all_or_none) as rollback:
            for item in items:
                try:
                    results.append({"id": write(item), "success": True, "errors": []})
                except RecordFailure as failure:
                    # SaveResult: "If this field is empty, then the object wasn't updated": a failure has no id
                    results.append({"success": False, "errors": [failure.as_result_error()]})
            if all_or_none and not all(r["success"] for r in results):
                rollback()
                rolled_back = {
                    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                    "message": "Record rolled back because not all records were valid and the request was using "
                    "AllOrNone header",
                    "fields": [],
                }
                results = [r if not r["success"] else {"success": False, "errors": [rolled_back]} for r in results]
        return Response(200, results)

    def _record_type(self, record: Any) -> SObjectType:
        if not isinstance(record, dict):
            raise RecordFailure("JSON_PARSER_ERROR", "Each record must be a JSON object")
        type_name = (record.get("attributes") or {}).get("type")
        if not type_name and _record_id(record):
            found = type_of_id(_record_id(record))
            type_name = found.name if found else None
        sobject = lookup_type(type_name) if type_name else None
        if sobject is None:
            raise RecordFailure("INVALID_TYPE", "sObject type must be specified in attributes.type")
        return sobject

    @route("POST", V + r"/composite/sobjects/?")
    def collection_create(self, request: Request) -> Response:
        body = self._body(request) or {}

        def write(record: Any) -> str:
            sobject = self._record_type(record)
            if _record_id(record):
                raise RecordFailure("INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
            return self.create(sobject, record)

        return self._collection_write(list(body.get("records") or []), bool(body.get("allOrNone")), write)

    @route("PATCH", V + r"/composite/sobjects/?")
    def collection_update(self, request: Request) -> Response:
        body = self._body(request) or {}

        def write(record: Any) -> str:
            sobject = self._record_type(record)
            record_id = _record_id(record)
            if not record_id:
                raise RecordFailure("MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
            self.update(sobject, record_id, record)
            return str(self._existing(sobject, record_id)["Id"])

        return self._collection_write(list(body.get("records") or []), bool(body.get("allOrNone")), write)

    @route("DELETE", V + r"/composite/sobjects/?")
    def collection_delete(self, request: Request) -> Response:
        ids = [i for i in (request.arg("ids") or "").split(",") if i]
        all_or_none = (request.arg("allOrNone") or "false").lower() == "true"

        def write(record_id: str) -> str:
            if type_of_id(record_id) is None:
                raise RecordFailure("MALFORMED_ID", f"malformed id {record_id}")
            self.delete(record_id)
            return record_id

        return self._collection_write(ids, all_or_none, write)

    # ------------------------------------------------------------------------------ composite

    @route("POST", V + r"/composite/?")
    def composite(self, request: Request) -> Response:
        body = self._body(request) or {}
        subrequests = list(body.get("compositeRequest") or [])
        if not subrequests or len(subrequests) > MAX_COMPOSITE:
            raise HttpError(400, "INVALID_INPUT", f"compositeRequest must hold 1 to {MAX_COMPOSITE} subrequests")
        all_or_none = bool(body.get("allOrNone"))
        results: dict[str, Any] = {}
        answers: list[dict[str, Any]] = []
        with self._transaction(all_or_none) as rollback:
            failed = False
            for sub in subrequests:
                reference = str(sub.get("referenceId", ""))
                if failed and all_or_none:
                    answers.append(
                        self._halted(
                            reference,
                            "The transaction was rolled back since another operation in the same transaction failed.",
                        )
                    )
                    continue
                try:
                    url = self._substitute(sub.get("url", ""), results)
                    payload = self._substitute(sub.get("body"), results)
                except KeyError as missing:
                    answers.append(
                        self._halted(
                            reference,
                            f"Invalid reference specified. No value for {missing.args[0]} "
                            f"found in {reference.split('.')[0]}. Provided referenceId ('{reference}')",
                        )
                    )
                    failed = True
                    continue
                response = self._internal(str(sub.get("method", "GET")).upper(), url, payload, request)
                headers = {"Location": response.headers["Location"]} if "Location" in response.headers else {}
                answers.append(
                    {
                        "body": response.body,
                        "httpHeaders": headers,
                        "httpStatusCode": response.status,
                        "referenceId": reference,
                    }
                )
                if response.status < 300:
                    results[reference] = response.body
                else:
                    failed = True
            if failed and all_or_none:
                rollback()
                answers = [
                    a
                    if a["httpStatusCode"] >= 300
                    else self._halted(
                        a["referenceId"],
                        "The transaction was rolled back since another operation in the same transaction failed.",
                    )
                    for a in answers
                ]
        return Response(200, {"compositeResponse": answers})

    @staticmethod
    def _halted(reference: str, message: str) -> dict[str, Any]:
        return {
            "body": [{"errorCode": "PROCESSING_HALTED", "message": message}],
            "httpHeaders": {},
            "httpStatusCode": 400,
            "referenceId": reference,
        }

    def _substitute(self, value: Any, results: dict[str, Any]) -> Any:
        """Replace ``@{ref.path}`` with values from earlier answers (``@{ev.id}``, ``@{q.records[0].Id}``)."""
        if isinstance(value, str):
            return _REFERENCE.sub(lambda m: str(self._lookup(m.group(1), results)), value)
        if isinstance(value, list):
            return [self._substitute(v, results) for v in value]
        if isinstance(value, dict):
            return {k: self._substitute(v, results) for k, v in value.items()}
        return value

    @staticmethod
    def _lookup(expression: str, results: dict[str, Any]) -> Any:
        steps = re.findall(r"[^.\[\]]+|\[\d+\]", expression)
        if not steps or steps[0] not in results:
            raise KeyError(expression)
        current = results[steps[0]]
        for step in steps[1:]:
            try:
                current = current[int(step[1:-1])] if step.startswith("[") else current[step]
            except (KeyError, IndexError, TypeError) as exc:
                raise KeyError(expression) from exc
        return current

    def _internal(self, method: str, url: str, body: Any, outer: Request) -> Response:
        """Serve a composite subrequest through the same routes, inside the outer call's transaction."""
        parts = urlsplit(url)
        if not re.match(V + r"/", parts.path) or re.match(V + r"/composite/?\Z", parts.path):
            return self.error(400, "INVALID_INPUT", f"Unsupported subrequest URL: {parts.path}")
        request = Request(
            method=method,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers=outer.headers,
            body=json.dumps(body).encode() if body is not None else b"",
        )
        allowed = False
        for route_method, pattern, handler in self._routes:
            match = pattern.match(request.path)
            if match is None:
                continue
            allowed = True
            if route_method == method:
                request.params = match.groupdict()
                try:
                    return handler(self, request)
                except HttpError as exc:
                    return self.error(exc.status, exc.code, exc.message, **exc.extra)
        if allowed:
            return self.error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed")
        return self.error(404, "NOT_FOUND", _NOT_FOUND_MESSAGE)

    # ------------------------------------------------------------------------------ pushes

    def _commit(self) -> None:
        """Publish what the call committed: change events first, then Outbound Messages."""
        changes, self._pending = self._pending, []
        if not changes:
            return
        self.commit_number += 1
        self._emit_changes(changes)
        self._send_outbound(changes)

    def _emit_changes(self, changes: list[Change]) -> None:
        if self.cdc_sink is None:
            return
        transaction_key = uuid.uuid4().hex[:20]
        commit_ms = int(time.time() * 1000)
        for sequence, change in enumerate((c for c in changes if c.sobject.name in self.cdc_entities), start=1):
            changed = notify.changed_field_names(change) if change.change_type == "UPDATE" else []
            nulled = notify.nulled_field_names(change) if change.change_type == "UPDATE" else []
            header = notify.header(
                entity=change.sobject.name,
                record_ids=[change.record_id],
                change_type=change.change_type,
                origin=change.origin,
                transaction_key=transaction_key,
                sequence=sequence,
                commit_ms=commit_ms,
                commit_number=self.commit_number,
                commit_user=self.user_id,
                changed=changed,
                nulled=nulled,
            )
            self._publish(change.sobject.name, notify.change_payload(change, header))

    def _publish(self, entity: str, payload: dict[str, Any]) -> None:
        assert self.cdc_sink is not None
        event = notify.eventbridge_event(
            payload,
            entity=entity,
            org_id=self.org_id,
            channel_id=self.channel_id,
            account=self.aws_account,
            region=self.aws_region,
        )
        self.events_emitted += 1
        # Change events have their own drop/duplicate/reorder switches: Event Relay is a channel of its own
        # (it skips events after an outage with relayOption LATEST, and may deliver twice or out of order).
        faults = self.change_event_faults
        if faults.take("drop_notifications"):
            return
        if faults.take("reorder_notifications"):
            self._held_events.append(event)  # goes out after the next one
            return
        copies = 2 if faults.take("duplicate_notifications") else 1
        held, self._held_events = self._held_events, []
        for outgoing in [event] * copies + held:
            self.cdc_sink(outgoing)

    def emit_gap(self, entity: str, change_type: str, record_ids: list[str] | None = None) -> None:
        """Emit a gap event (``GAP_CREATE`` … ``GAP_OVERFLOW``): every field null and an empty origin.

        ``GAP_OVERFLOW`` carries the empty id ``000000000000000AAA`` unless ``record_ids`` says otherwise.
        """
        sobject = lookup_type(entity)
        if sobject is None or self.cdc_sink is None:
            raise ValueError(f"cannot emit a change event for {entity!r} (unknown entity or no sink)")
        if not change_type.startswith("GAP_"):
            raise ValueError(f"not a gap change type: {change_type!r}")
        ids = record_ids or ([notify.EMPTY_ID] if change_type == "GAP_OVERFLOW" else [])
        with self._lock:
            self.commit_number += 1
            header = notify.header(
                entity=sobject.name,
                record_ids=ids,
                change_type=change_type,
                origin="",
                transaction_key=uuid.uuid4().hex[:20],
                sequence=1,
                commit_ms=int(time.time() * 1000),
                commit_number=self.commit_number,
                commit_user=self.user_id,
                changed=[],
                nulled=[],
            )
            change = Change(sobject, ids[0] if ids else notify.EMPTY_ID, "DELETE", {})
            self._publish(sobject.name, notify.change_payload(change, header))

    def _send_outbound(self, changes: list[Change]) -> None:
        for message in self.outbound:
            batch = [
                c for c in changes if c.sobject.name.lower() == message.sobject.lower() and c.change_type in message.on
            ]
            for start in range(0, len(batch), notify.MAX_NOTIFICATIONS):
                self._send_message(message, batch[start : start + notify.MAX_NOTIFICATIONS])

    def _send_message(self, message: OutboundMessage, changes: list[Change]) -> None:
        session = None
        if message.include_session_id:
            token, _ = self.tokens.issue(sub=self.username, user_id=self.user_id)
            session = self.token_prefix + token
        notifications = []
        for change in changes:
            names = ("Id", *(f for f in message.fields if f != "Id"))
            values = {name: change.record.get(name) for name in names}
            notifications.append((self._next_id("04l"), change.sobject, values))
        org15 = self.org_id[:15]
        body = notify.outbound_envelope(
            org_id=self.org_id,
            action_id=message.action_id,
            session_id=session,
            enterprise_url=f"{self.url}/services/Soap/c/60.0/{org15}",
            partner_url=f"{self.url}/services/Soap/u/60.0/{org15}",
            notifications=notifications,
        )
        self.pusher.send(message.endpoint_url, body, {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'})

    # ------------------------------------------------------------------------------ Python helpers

    def insert(self, sobject: str, **fields: Any) -> str:
        """Create a record as a user in the UI would (no API origin); events and messages go out."""
        spec = lookup_type(sobject)
        if spec is None:
            raise ValueError(f"unknown sObject {sobject!r}")
        with self._lock:
            self._origin = ""
            record_id = self.create(spec, fields)
            self._commit()
            return record_id

    def change(self, record_id: str, **fields: Any) -> None:
        """Update a record as a user in the UI would."""
        spec = type_of_id(record_id)
        if spec is None:
            raise ValueError(f"unknown id {record_id!r}")
        with self._lock:
            self._origin = ""
            self.update(spec, record_id, fields)
            self._commit()

    def convert_lead(self, lead_id: str) -> str:
        """Convert a Lead as a user in the UI would: a Contact (and an Account of its Company) is made, and
        the Lead becomes read-only (``IsConverted``; updates fail ``CANNOT_UPDATE_CONVERTED_LEAD``)."""
        with self._lock:
            lead = self._existing(TYPES["Lead"], lead_id)
            self._origin = ""
            account_id = self.create(TYPES["Account"], {"Name": lead["Company"]})
            contact_id = self.create(
                TYPES["Contact"],
                {
                    name: lead.get(name)
                    for name in ("FirstName", "LastName", "Email", "Phone", "Title")
                    if lead.get(name) is not None
                }
                | {"AccountId": account_id},
            )
            self.update(TYPES["Lead"], lead["Id"], {})
            stamp = sf_datetime(now())
            self.records[lead["Id"]].update(
                IsConverted=True,
                ConvertedContactId=contact_id,
                ConvertedAccountId=account_id,
                ConvertedDate=stamp[:10],
                Status="Closed - Converted",
            )
            self._commit()
            return contact_id

    def record(self, record_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._find(record_id)
            return dict(found) if found else None

    def live_records(self, sobject: str) -> list[dict[str, Any]]:
        spec = lookup_type(sobject)
        if spec is None:
            raise ValueError(f"unknown sObject {sobject!r}")
        with self._lock:
            return [dict(r) for r in self._live(spec)]

    def seed(self) -> None:
        """Load the shared seed org: accounts, contacts, leads, events with relations (quietly: no pushes)."""
        sink, outbound = self.cdc_sink, self.outbound
        self.cdc_sink, self.outbound = None, []
        try:
            with self._lock:
                accounts: dict[str, str] = {}
                people: dict[str, str] = {}
                for person in seed_data.PEOPLE:
                    if not person.in_salesforce:
                        continue
                    if person.lead:
                        people[person.email] = self.insert(
                            "Lead",
                            FirstName=person.first,
                            LastName=person.last,
                            Email=person.email,
                            Company=person.company,
                            Title=person.title,
                            Phone=person.phone,
                        )
                        continue
                    if person.company not in accounts:
                        accounts[person.company] = self.insert("Account", Name=person.company)
                    people[person.email] = self.insert(
                        "Contact",
                        FirstName=person.first,
                        LastName=person.last,
                        Email=person.email,
                        Title=person.title,
                        Phone=person.phone,
                        AccountId=accounts[person.company],
                    )
                for meeting in seed_data.MEETINGS:
                    if not meeting.in_salesforce:
                        continue
                    attendees = [people[e] for e in meeting.attendees if e in people]
                    event_id = self.insert(
                        "Event",
                        Subject=meeting.subject,
                        StartDateTime=meeting.start,
                        EndDateTime=meeting.end,
                        Location=meeting.location,
                        Concord_ICalUID__c=meeting.ical_uid,
                        WhoId=attendees[0] if attendees else None,
                    )
                    for relation_id in attendees[1:]:
                        self.insert("EventRelation", EventId=event_id, RelationId=relation_id)
        finally:
            self.cdc_sink, self.outbound = sink, outbound

    # ------------------------------------------------------------------------------ admin

    def _admin(self, request: Request) -> Response:
        action = request.path.removeprefix("/_sandbox/")
        if request.method != "POST" or action not in _ADMIN_ACTIONS:
            return super()._admin(request)
        spec = request.json() or {}
        if action == "lock_rows":
            self.fail_next_writes_with_lock(int(spec.get("writes", 1)))
            return Response(200, {"lock_failures": self.lock_failures})
        if action == "validation_rules":
            self.add_validation_rule(
                ValidationRule(
                    spec["sobject"], spec["field"], tuple(spec["rejected"]), spec.get("message", "Not allowed.")
                )
            )
            return Response(200, {"validation_rules": len(self.validation_rules)})
        if action == "cdc/faults":
            self.change_event_faults.notifications(**{k: int(v) for k, v in spec.items()})
            return Response(200, self.change_event_faults.as_dict())
        if action == "cdc/gap":
            try:
                self.emit_gap(spec["entity"], spec.get("changeType", "GAP_OVERFLOW"), spec.get("recordIds"))
            except ValueError as exc:
                return Response(400, {"error": str(exc)})
            return Response(200, {"emitted": True})
        if action == "fail_after_commit":  # {"calls": N, "status": 500} or {"calls": N, "status": null}: dropped
            self.fail_after_commit(int(spec.get("calls", 1)), status=spec.get("status", 500))
            return Response(200, {"after_commit": len(self._after_commit)})
        if action == "limits":
            with self._lock:
                self.daily_limit = int(spec.get("daily_limit", self.daily_limit))
                self.api_usage = int(spec.get("used", self.api_usage))
            return Response(200, {"api_usage": self.api_usage, "daily_limit": self.daily_limit})
        self.seed()
        return Response(200, self.state())


def _record_id(record: Mapping[str, Any]) -> str:
    """A record's ``Id``, however it is cased: field names are case-insensitive, and the REST API guide's own
    sObject Collections update example sends ``"id"``."""
    return next((str(value) for name, value in record.items() if name.lower() == "id" and value), "")


class _DropConnection(Exception):
    """Raised out of the request handler so the server closes the connection with no answer (a fault after
    commit). The shared server has no switch for this; an unhandled error in the handler closes the socket."""
