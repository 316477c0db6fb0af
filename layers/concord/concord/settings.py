"""Settings, read once from the environment at cold start.

One model per function family:

* :class:`WebhookSettings` for the ingress functions (salesforce_webhook, salesforce_events,
  graph_webhook, google_webhook): they authenticate, parse and enqueue;
* :class:`WorkerSettings` for sync_worker;
* :class:`SchedulerSettings` for the scheduled functions (subscriptions, reconciler).

Each handler builds its model at module level (``settings = WorkerSettings.from_env()``), so a
missing or malformed variable fails the cold start, loudly, with the variable's name, instead of
failing the first request that happens to need it. ``template.yaml`` sets every variable; ``env.json``
sets them for the local stack.

The models are plain pydantic models built from ``os.environ`` (pydantic-settings is not shipped in
the layer). Each field's alias is its environment variable.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "SchedulerSettings",
    "SettingsError",
    "WebhookSettings",
    "WorkerSettings",
]

_URL = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
_SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:\S+$")
_TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ORG_ID = re.compile(r"^00D[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?$")


def _url(value: str) -> str:
    if not _URL.match(value):
        raise ValueError("expected an http(s) URL with a host, e.g. https://example.com/path")
    return value.rstrip("/")


def _secret_arn(value: str) -> str:
    if not _SECRET_ARN.match(value):
        raise ValueError("expected a Secrets Manager secret ARN (arn:aws:secretsmanager:…:secret:…)")
    return value


def _table_name(value: str) -> str:
    if not _TABLE_NAME.match(value):
        raise ValueError("expected a DynamoDB table name (3-255 of A-Z a-z 0-9 _ . -)")
    return value


def _org_id(value: str) -> str:
    if not _ORG_ID.match(value):
        raise ValueError("expected a Salesforce organization id (15 or 18 characters, starting 00D)")
    return value


def _sha256_digests(value: str) -> str:
    digests = [part.strip().lower() for part in value.split(",")]
    if not 1 <= len(digests) <= 2 or not all(_SHA256.match(digest) for digest in digests):
        raise ValueError("expected one or two hex SHA-256 digests (64 hex digits each), comma-separated")
    return ",".join(digests)


def _existing_file(value: str) -> str:
    if not os.path.isfile(value):
        raise ValueError("no such file")
    return value


Url = Annotated[str, AfterValidator(_url)]
SecretArn = Annotated[str, AfterValidator(_secret_arn)]
TableName = Annotated[str, AfterValidator(_table_name)]
OrgId = Annotated[str, AfterValidator(_org_id)]
FilePath = Annotated[str, AfterValidator(_existing_file)]
Sha256Digests = Annotated[str, AfterValidator(_sha256_digests)]


class SettingsError(RuntimeError):
    """The environment does not hold valid settings. The message names every bad variable."""

    def __init__(self, model: str, problems: Mapping[str, str]) -> None:
        self.problems = dict(problems)
        listed = "; ".join(f"{name}: {why}" for name, why in sorted(self.problems.items()))
        super().__init__(f"{model}: invalid environment: {listed}")


class _EnvSettings(BaseModel):
    """Base for the settings models: immutable, built from environment variables by alias."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, str_strip_whitespace=True)

    service_name: str = Field(alias="POWERTOOLS_SERVICE_NAME", min_length=1)
    ca_bundle: FilePath | None = Field(
        default=None,
        alias="CA_BUNDLE",
        description="Path to a CA bundle for outbound HTTPS (the local sandboxes' throwaway CA).",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Build the settings from ``environ`` (default ``os.environ``).

        Raises :class:`SettingsError` naming each missing or malformed variable. An empty
        variable counts as unset.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            var = field.alias or name
            raw = env.get(var)
            if raw is not None and raw.strip() != "":
                values[var] = raw
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise SettingsError(cls.__name__, _problems(cls, exc)) from None


def _problems(model: type[BaseModel], exc: ValidationError) -> dict[str, str]:
    by_name = {name: (field.alias or name) for name, field in model.model_fields.items()}
    problems: dict[str, str] = {}
    for error in exc.errors(include_url=False, include_input=False):
        loc = str(error["loc"][0]) if error["loc"] else "?"
        var = by_name.get(loc, loc)
        if error["type"] == "missing":
            problems[var] = "missing (required)"
        else:
            # Never echo the value: some variables may be sensitive.
            problems[var] = f"malformed ({error['msg'].removeprefix('Value error, ')})"
    return problems


class _ProviderEndpoints(_EnvSettings):
    """Where the three services live, and which secrets hold the credentials to reach them."""

    salesforce_login_url: Url = Field(alias="SALESFORCE_LOGIN_URL")
    salesforce_jwt_secret_arn: SecretArn = Field(alias="SALESFORCE_JWT_SECRET_ARN")
    graph_login_url: Url = Field(alias="GRAPH_LOGIN_URL")
    graph_base_url: Url = Field(alias="GRAPH_BASE_URL")
    graph_app_secret_arn: SecretArn = Field(alias="GRAPH_APP_SECRET_ARN")
    google_token_url: Url = Field(alias="GOOGLE_TOKEN_URL")
    google_api_base_url: Url = Field(alias="GOOGLE_API_BASE_URL")
    google_service_account_secret_arn: SecretArn = Field(alias="GOOGLE_SERVICE_ACCOUNT_SECRET_ARN")


class WebhookSettings(_EnvSettings):
    """Ingress functions: authenticate a request, parse it into change notices, enqueue them."""

    changes_queue_url: Url = Field(alias="CHANGES_QUEUE_URL")
    subscriptions_table: TableName = Field(alias="SUBSCRIPTIONS_TABLE")
    connections_table: TableName = Field(alias="CONNECTIONS_TABLE")
    idempotency_table: TableName = Field(alias="IDEMPOTENCY_TABLE")
    salesforce_org_id: OrgId = Field(alias="SALESFORCE_ORG_ID")
    google_push_audience: str = Field(alias="GOOGLE_PUSH_AUDIENCE", min_length=1)
    google_push_service_account: str = Field(alias="GOOGLE_PUSH_SERVICE_ACCOUNT", pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    google_jwks_url: Url = Field(default="https://www.googleapis.com/oauth2/v3/certs", alias="GOOGLE_JWKS_URL")
    webhook_max_body_bytes: int = Field(default=1024 * 1024, alias="WEBHOOK_MAX_BODY_BYTES", gt=0, le=10 * 1024 * 1024)
    salesforce_outbound_token_sha256: Sha256Digests | None = Field(
        default=None,
        alias="SALESFORCE_OUTBOUND_TOKEN_SHA256",
        description=(
            "Hex SHA-256 of the token in the Outbound Message endpoint URL (two, comma-separated, while "
            "rotating). Optional here because only salesforce_webhook needs it; that function refuses "
            "to start without it (concord.ingress.salesforce_outbound.OutboundToken)."
        ),
    )


class _CatchUpSettings(_EnvSettings):
    """How often every connection is caught up, and when catch-up work waits for the API budget."""

    catch_up_interval_minutes: int = Field(default=60, alias="CATCH_UP_INTERVAL_MINUTES", ge=1, le=1440)
    salesforce_budget_floor_percent: float = Field(
        default=20.0,
        alias="SALESFORCE_BUDGET_FLOOR_PERCENT",
        ge=0,
        le=100,
        description="Below this share of the daily Salesforce API limit, scheduled catch-ups wait.",
    )


class WorkerSettings(_ProviderEndpoints, _CatchUpSettings):
    """sync_worker: one SQS batch of change notices, end to end, and the catch-up and channel notices
    that come on the same queue."""

    changes_queue_url: Url = Field(alias="CHANGES_QUEUE_URL")
    changes_dlq_url: Url = Field(alias="CHANGES_DLQ_URL")
    links_table: TableName = Field(alias="LINKS_TABLE")
    connections_table: TableName = Field(alias="CONNECTIONS_TABLE")
    sync_log_table: TableName = Field(alias="SYNC_LOG_TABLE")
    idempotency_table: TableName = Field(alias="IDEMPOTENCY_TABLE")
    cursors_table: TableName = Field(alias="CURSORS_TABLE")
    subscriptions_table: TableName = Field(alias="SUBSCRIPTIONS_TABLE")
    salesforce_org_id: OrgId = Field(alias="SALESFORCE_ORG_ID")
    webhook_base_url: Url = Field(alias="WEBHOOK_BASE_URL", description="Where push channels point (see below).")
    google_push_topic: str | None = Field(
        default=None, alias="GOOGLE_PUSH_TOPIC", pattern=r"^projects/[^/\s]+/topics/[^/\s]+$"
    )


class SchedulerSettings(_ProviderEndpoints, _CatchUpSettings):
    """subscriptions and reconciler: keep push channels alive, catch up what notifications missed.

    They only enqueue change notices for what they find; the worker reads and writes the links.
    """

    changes_queue_url: Url = Field(alias="CHANGES_QUEUE_URL")
    cursors_table: TableName = Field(alias="CURSORS_TABLE")
    subscriptions_table: TableName = Field(alias="SUBSCRIPTIONS_TABLE")
    connections_table: TableName = Field(alias="CONNECTIONS_TABLE")
    sync_log_table: TableName = Field(alias="SYNC_LOG_TABLE")
    salesforce_org_id: OrgId = Field(alias="SALESFORCE_ORG_ID")
    webhook_base_url: Url = Field(
        alias="WEBHOOK_BASE_URL",
        description="Public base URL of the API (…/<stage>); push channels are pointed below it.",
    )
    google_push_topic: str | None = Field(
        default=None,
        alias="GOOGLE_PUSH_TOPIC",
        pattern=r"^projects/[^/\s]+/topics/[^/\s]+$",
        description="Pub/Sub topic for Gmail watch; unset means Gmail push is off (catch-up only).",
    )


class ReconcilerSettings(_CatchUpSettings):
    """reconciler: queues the catch-ups that are due; the workers run them, so it reaches no API."""

    changes_queue_url: Url = Field(alias="CHANGES_QUEUE_URL")
    connections_table: TableName = Field(alias="CONNECTIONS_TABLE")
