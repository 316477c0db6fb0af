"""Settings fail at cold start, naming the variable, when the environment is missing or malformed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from concord.settings import SchedulerSettings, SettingsError, WebhookSettings, WorkerSettings

ROOT = Path(__file__).resolve().parents[2]

SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:concord/{}-AbCdEf"

PROVIDERS = {
    "SALESFORCE_LOGIN_URL": "https://login.salesforce.com",
    "SALESFORCE_JWT_SECRET_ARN": SECRET.format("salesforce"),
    "GRAPH_LOGIN_URL": "https://login.microsoftonline.com",
    "GRAPH_BASE_URL": "https://graph.microsoft.com/v1.0",
    "GRAPH_APP_SECRET_ARN": SECRET.format("graph"),
    "GOOGLE_TOKEN_URL": "https://oauth2.googleapis.com/token",
    "GOOGLE_API_BASE_URL": "https://www.googleapis.com",
    "GOOGLE_SERVICE_ACCOUNT_SECRET_ARN": SECRET.format("google"),
}
QUEUE = "http://127.0.0.1:4566/123456789012/ChangesQueue"

WEBHOOK_ENV = {
    "POWERTOOLS_SERVICE_NAME": "graph_webhook",
    "CHANGES_QUEUE_URL": QUEUE,
    "SUBSCRIPTIONS_TABLE": "SubscriptionsTable",
    "CONNECTIONS_TABLE": "ConnectionsTable",
    "IDEMPOTENCY_TABLE": "IdempotencyTable",
    "SALESFORCE_ORG_ID": "00D5g00000CNCRDEA0",
    "GOOGLE_PUSH_AUDIENCE": "concord-gmail-push",
    "GOOGLE_PUSH_SERVICE_ACCOUNT": "gmail-push@concord.iam.gserviceaccount.com",
}
WORKER_ENV = {
    **PROVIDERS,
    "POWERTOOLS_SERVICE_NAME": "sync_worker",
    "CHANGES_QUEUE_URL": QUEUE,
    "CHANGES_DLQ_URL": "http://127.0.0.1:4566/123456789012/ChangesDeadLetterQueue",
    "LINKS_TABLE": "LinksTable",
    "CONNECTIONS_TABLE": "ConnectionsTable",
    "SYNC_LOG_TABLE": "SyncLogTable",
    "IDEMPOTENCY_TABLE": "IdempotencyTable",
    "CURSORS_TABLE": "CursorsTable",
    "SUBSCRIPTIONS_TABLE": "SubscriptionsTable",
    "SALESFORCE_ORG_ID": "00D5g00000CNCRDEA0",
    "WEBHOOK_BASE_URL": "https://abc123.execute-api.eu-west-1.amazonaws.com/v1",
}
SCHEDULER_ENV = {
    **PROVIDERS,
    "POWERTOOLS_SERVICE_NAME": "reconciler",
    "CHANGES_QUEUE_URL": QUEUE,
    "CURSORS_TABLE": "CursorsTable",
    "SUBSCRIPTIONS_TABLE": "SubscriptionsTable",
    "CONNECTIONS_TABLE": "ConnectionsTable",
    "SYNC_LOG_TABLE": "SyncLogTable",
    "SALESFORCE_ORG_ID": "00D5g00000CNCRDEA0",
    "WEBHOOK_BASE_URL": "https://abc123.execute-api.eu-west-1.amazonaws.com/v1",
}

FAMILIES = [
    pytest.param(WebhookSettings, WEBHOOK_ENV, id="webhook"),
    pytest.param(WorkerSettings, WORKER_ENV, id="worker"),
    pytest.param(SchedulerSettings, SCHEDULER_ENV, id="scheduler"),
]


@pytest.mark.parametrize(("model", "env"), FAMILIES)
def test_a_complete_environment_builds_the_settings(model: type[WebhookSettings], env: dict[str, str]) -> None:
    # GIVEN every variable the family needs WHEN the settings are read THEN they hold the values
    settings = model.from_env(env)
    assert settings.service_name == env["POWERTOOLS_SERVICE_NAME"]
    assert settings.changes_queue_url == QUEUE
    assert settings.ca_bundle is None


@pytest.mark.parametrize(("model", "env"), FAMILIES)
def test_each_missing_variable_is_named(model: type[WebhookSettings], env: dict[str, str]) -> None:
    required = [name for name in env if name != "GOOGLE_PUSH_TOPIC"]
    for name in required:
        # GIVEN the environment without one required variable
        partial = {k: v for k, v in env.items() if k != name}
        # WHEN the settings are read THEN the error names that variable, and only it
        with pytest.raises(SettingsError) as caught:
            model.from_env(partial)
        assert f"{name}: missing" in str(caught.value)
        assert set(caught.value.problems) == {name}


@pytest.mark.parametrize(("model", "env"), FAMILIES)
def test_an_empty_variable_counts_as_missing(model: type[WebhookSettings], env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match=r"CHANGES_QUEUE_URL: missing"):
        model.from_env({**env, "CHANGES_QUEUE_URL": "  "})


@pytest.mark.parametrize(
    ("model", "env", "name", "bad"),
    [
        (WebhookSettings, WEBHOOK_ENV, "CHANGES_QUEUE_URL", "sqs/ChangesQueue"),
        (WebhookSettings, WEBHOOK_ENV, "SALESFORCE_ORG_ID", "005000000000000AAA"),
        (WebhookSettings, WEBHOOK_ENV, "WEBHOOK_MAX_BODY_BYTES", "1MiB"),
        (WebhookSettings, WEBHOOK_ENV, "WEBHOOK_MAX_BODY_BYTES", "-5"),
        (WebhookSettings, WEBHOOK_ENV, "GOOGLE_PUSH_SERVICE_ACCOUNT", "not-an-email"),
        (WebhookSettings, WEBHOOK_ENV, "GOOGLE_JWKS_URL", "www.googleapis.com/oauth2/v3/certs"),
        (WebhookSettings, WEBHOOK_ENV, "SUBSCRIPTIONS_TABLE", "no spaces allowed"),
        (WebhookSettings, WEBHOOK_ENV, "SALESFORCE_OUTBOUND_TOKEN_SHA256", "the-token-itself-not-its-digest"),
        (WebhookSettings, WEBHOOK_ENV, "SALESFORCE_OUTBOUND_TOKEN_SHA256", "ab" * 31),
        (WebhookSettings, WEBHOOK_ENV, "SALESFORCE_OUTBOUND_TOKEN_SHA256", ",".join(["ab" * 32] * 3)),
        (WorkerSettings, WORKER_ENV, "GRAPH_APP_SECRET_ARN", "arn:aws:ssm:us-east-1:123456789012:parameter/x"),
        (WorkerSettings, WORKER_ENV, "GRAPH_BASE_URL", "graph.microsoft.com"),
        (WorkerSettings, WORKER_ENV, "CA_BUNDLE", "/nonexistent/ca.pem"),
        (SchedulerSettings, SCHEDULER_ENV, "GOOGLE_PUSH_TOPIC", "gmail-push"),
        (SchedulerSettings, SCHEDULER_ENV, "WEBHOOK_BASE_URL", "ftp://example.com"),
    ],
)
def test_a_malformed_variable_is_named_without_its_value(
    model: type[WebhookSettings], env: dict[str, str], name: str, bad: str
) -> None:
    # GIVEN a malformed value WHEN the settings are read
    with pytest.raises(SettingsError) as caught:
        model.from_env({**env, name: bad})
    # THEN the error names the variable, calls it malformed, and does not echo the value
    assert set(caught.value.problems) == {name}
    assert f"{name}: malformed" in str(caught.value)
    assert bad not in str(caught.value)


def test_several_problems_are_reported_together() -> None:
    env = {k: v for k, v in WORKER_ENV.items() if k not in {"LINKS_TABLE", "SYNC_LOG_TABLE"}}
    with pytest.raises(SettingsError) as caught:
        WorkerSettings.from_env({**env, "CHANGES_DLQ_URL": "nope"})
    assert set(caught.value.problems) == {"LINKS_TABLE", "SYNC_LOG_TABLE", "CHANGES_DLQ_URL"}


def test_defaults_apply_when_optional_variables_are_unset() -> None:
    settings = WebhookSettings.from_env(WEBHOOK_ENV)
    assert settings.google_jwks_url == "https://www.googleapis.com/oauth2/v3/certs"
    assert settings.webhook_max_body_bytes == 1024 * 1024
    assert SchedulerSettings.from_env(SCHEDULER_ENV).google_push_topic is None


def test_values_are_typed_and_normalised(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = WorkerSettings.from_env(
        {**WORKER_ENV, "GRAPH_BASE_URL": "https://graph.microsoft.com/v1.0/", "CA_BUNDLE": str(bundle)}
    )
    assert settings.graph_base_url == "https://graph.microsoft.com/v1.0"
    assert settings.ca_bundle == str(bundle)
    webhook = WebhookSettings.from_env({**WEBHOOK_ENV, "WEBHOOK_MAX_BODY_BYTES": "2048"})
    assert webhook.webhook_max_body_bytes == 2048


def test_settings_are_immutable() -> None:
    settings = WebhookSettings.from_env(WEBHOOK_ENV)
    with pytest.raises(ValueError, match="frozen"):
        settings.changes_queue_url = "https://elsewhere.example.com"  # type: ignore[misc]


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in WEBHOOK_ENV.items():
        monkeypatch.setenv(name, value)
    assert WebhookSettings.from_env().salesforce_org_id == WEBHOOK_ENV["SALESFORCE_ORG_ID"]


@pytest.mark.parametrize(("model", "env"), FAMILIES)
def test_env_json_satisfies_every_family(model: type[WebhookSettings], env: dict[str, str]) -> None:
    # env.json is what `sam local invoke --env-vars` uses: it must pass the same validation.
    local = json.loads((ROOT / "env.json").read_text())["Parameters"]
    model.from_env({**local, "POWERTOOLS_SERVICE_NAME": env["POWERTOOLS_SERVICE_NAME"]})


def test_outbound_token_digests_are_optional_here_and_normalised() -> None:
    # Only salesforce_webhook needs them, and it refuses to start without them (its own test).
    assert WebhookSettings.from_env(WEBHOOK_ENV).salesforce_outbound_token_sha256 is None
    first, second = "AB" * 32, "cd" * 32
    settings = WebhookSettings.from_env({**WEBHOOK_ENV, "SALESFORCE_OUTBOUND_TOKEN_SHA256": f" {first} , {second} "})
    assert settings.salesforce_outbound_token_sha256 == f"{first.lower()},{second}"
