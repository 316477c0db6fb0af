"""template.yaml keeps the promises other parts rely on (DESIGN.md, the local provisioner, the settings).

The template is parsed here with a CloudFormation-tag-aware YAML loader, independent of the local
provisioner, so a mistake in one is not hidden by the same mistake in the other.
"""

from __future__ import annotations

import ast
import json
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from concord.settings import ReconcilerSettings, SchedulerSettings, WebhookSettings, WorkerSettings
from local.aws.provision import load_template
from tests.support.events import EVENTS_DIR, event_names, load_event

if TYPE_CHECKING:
    from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[2]

FUNCTIONS: dict[str, tuple[str, type[BaseModel]]] = {
    "SalesforceWebhookFunction": ("salesforce_webhook", WebhookSettings),
    "SalesforceEventsFunction": ("salesforce_events", WebhookSettings),
    "GraphWebhookFunction": ("graph_webhook", WebhookSettings),
    "GoogleWebhookFunction": ("google_webhook", WebhookSettings),
    "SyncWorkerFunction": ("sync_worker", WorkerSettings),
    "SubscriptionsFunction": ("subscriptions", SchedulerSettings),
    "ReconcilerFunction": ("reconciler", ReconcilerSettings),
}
TABLES = {
    "LinksTable": "LINKS_TABLE",
    "CursorsTable": "CURSORS_TABLE",
    "SubscriptionsTable": "SUBSCRIPTIONS_TABLE",
    "ConnectionsTable": "CONNECTIONS_TABLE",
    "SyncLogTable": "SYNC_LOG_TABLE",
    "IdempotencyTable": "IDEMPOTENCY_TABLE",
}
QUEUES = {"ChangesQueue": "CHANGES_QUEUE_URL", "ChangesDeadLetterQueue": "CHANGES_DLQ_URL"}
FAILURE_QUEUES = {"ChangeEventsDeadLetterQueue"}  # written to by Lambda and EventBridge, not by a function
TTL = {"LinksTable": "expires_at", "SyncLogTable": "expires_at", "IdempotencyTable": "expiration"}
GSIS = {
    "LinksTable": {"by_mailbox_id", "by_salesforce_id"},
    "SyncLogTable": {"by_status", "by_record"},
}
SAM_POLICY_TEMPLATES = {
    "DynamoDBCrudPolicy",
    "DynamoDBReadPolicy",
    "SQSSendMessagePolicy",
    "SQSPollerPolicy",
    "AWSSecretsManagerGetSecretValuePolicy",
}


@cache
def _template() -> dict[str, Any]:
    return load_template(ROOT / "template.yaml")


@pytest.fixture
def template() -> dict[str, Any]:
    return _template()


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def function_env(template: dict[str, Any], name: str) -> dict[str, Any]:
    env = dict(template["Globals"]["Function"]["Environment"]["Variables"])
    env.update(template["Resources"][name]["Properties"].get("Environment", {}).get("Variables", {}))
    return env


def function_timeout(template: dict[str, Any], name: str) -> int:
    props = template["Resources"][name]["Properties"]
    return int(props.get("Timeout", template["Globals"]["Function"]["Timeout"]))


# ------------------------------------------------------------------------------------- queues


def test_changes_queue_redrives_to_its_dlq_after_five_receives(template: dict[str, Any]) -> None:
    props = template["Resources"]["ChangesQueue"]["Properties"]
    assert props["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["ChangesDeadLetterQueue", "Arn"]},
        "maxReceiveCount": 5,
    }


def test_visibility_timeout_covers_six_worker_timeouts_and_the_batching_window(template: dict[str, Any]) -> None:
    visibility = int(template["Resources"]["ChangesQueue"]["Properties"]["VisibilityTimeout"])
    worker = function_timeout(template, "SyncWorkerFunction")
    window = template["Resources"]["SyncWorkerFunction"]["Properties"]["Events"]["Changes"]["Properties"][
        "MaximumBatchingWindowInSeconds"
    ]
    max_window = int(template["Parameters"][window["Ref"]]["MaxValue"])
    assert visibility >= 6 * worker
    assert visibility >= 6 * worker + max_window  # AWS's rule for SQS event sources
    assert visibility <= 43200  # the SQS maximum


@pytest.mark.parametrize("name", ["ChangesDeadLetterQueue", "ChangeEventsDeadLetterQueue"])
def test_dead_letter_queues_keep_messages_fourteen_days(template: dict[str, Any], name: str) -> None:
    assert template["Resources"][name]["Properties"]["MessageRetentionPeriod"] == 1209600


def test_change_events_that_fail_end_in_their_dead_letter_queue_not_nowhere(template: dict[str, Any]) -> None:
    # EventBridge invokes asynchronously: Lambda's retries and OnFailure cover a failing function,
    # the rule's own dead-letter config covers an event EventBridge cannot deliver.
    function = template["Resources"]["SalesforceEventsFunction"]["Properties"]
    failure_queue = {"Fn::GetAtt": ["ChangeEventsDeadLetterQueue", "Arn"]}
    on_failure = function["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]
    assert on_failure == {"Type": "SQS", "Destination": failure_queue}
    (rule,) = [e["Properties"] for e in function["Events"].values() if e["Type"] == "EventBridgeRule"]
    assert rule["DeadLetterConfig"] == {"Arn": failure_queue}
    (policy,) = resources(template, "AWS::SQS::QueuePolicy").values()
    assert policy["Properties"]["Queues"] == [{"Ref": "ChangeEventsDeadLetterQueue"}]
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert "aws:SourceArn" in statement["Condition"]["ArnLike"]


def test_queues_are_unnamed_plain_queues(template: dict[str, Any]) -> None:
    queues = resources(template, "AWS::SQS::Queue")
    assert set(queues) == set(QUEUES) | FAILURE_QUEUES
    for queue in queues.values():
        assert "QueueName" not in queue.get("Properties", {})


def test_worker_reports_batch_item_failures_with_parameterised_batching(template: dict[str, Any]) -> None:
    events = template["Resources"]["SyncWorkerFunction"]["Properties"]["Events"]
    sqs = [e["Properties"] for e in events.values() if e["Type"] == "SQS"]
    assert len(sqs) == 1
    assert sqs[0]["Queue"] == {"Fn::GetAtt": ["ChangesQueue", "Arn"]}
    assert sqs[0]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert set(sqs[0]["BatchSize"]) == {"Ref"}
    assert sqs[0]["BatchSize"]["Ref"] in template["Parameters"]
    assert sqs[0]["MaximumBatchingWindowInSeconds"]["Ref"] in template["Parameters"]
    # SQS requires a batching window of at least 1 s for batches above 10.
    params = template["Parameters"]
    if int(params[sqs[0]["BatchSize"]["Ref"]]["Default"]) > 10:
        assert int(params[sqs[0]["MaximumBatchingWindowInSeconds"]["Ref"]]["Default"]) >= 1


# ------------------------------------------------------------------------------------- tables


def test_tables_are_the_contracted_set_of_plain_tables(template: dict[str, Any]) -> None:
    assert set(resources(template, "AWS::DynamoDB::Table")) == set(TABLES)
    assert not resources(template, "AWS::Serverless::SimpleTable")


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_table_is_on_demand_with_pitr_and_no_name(template: dict[str, Any], name: str) -> None:
    props = template["Resources"][name]["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert "TableName" not in props
    for gsi in props.get("GlobalSecondaryIndexes", []):
        assert "ProvisionedThroughput" not in gsi


@pytest.mark.parametrize("name", sorted(TABLES))
def test_table_keys_and_ttl(template: dict[str, Any], name: str) -> None:
    props = template["Resources"][name]["Properties"]
    keys = [(k["AttributeName"], k["KeyType"]) for k in props["KeySchema"]]
    if name == "IdempotencyTable":  # Powertools DynamoDBPersistenceLayer defaults
        assert keys == [("id", "HASH")]
    else:
        assert keys == [("pk", "HASH"), ("sk", "RANGE")]
    ttl = props.get("TimeToLiveSpecification")
    if name in TTL:
        assert ttl == {"AttributeName": TTL[name], "Enabled": True}
    # Every key attribute (table and indexes) is defined as a string, and nothing else is defined.
    key_attrs = {k["AttributeName"] for k in props["KeySchema"]}
    for index in props.get("GlobalSecondaryIndexes", []):
        key_attrs |= {k["AttributeName"] for k in index["KeySchema"]}
    definitions = {d["AttributeName"]: d["AttributeType"] for d in props["AttributeDefinitions"]}
    assert definitions == dict.fromkeys(key_attrs, "S")


@pytest.mark.parametrize(("name", "indexes"), sorted(GSIS.items()))
def test_lookup_indexes_exist(template: dict[str, Any], name: str, indexes: set[str]) -> None:
    found = {i["IndexName"] for i in template["Resources"][name]["Properties"]["GlobalSecondaryIndexes"]}
    assert indexes <= found


# ---------------------------------------------------------------------------------- functions


def test_all_functions_are_declared(template: dict[str, Any]) -> None:
    assert set(resources(template, "AWS::Serverless::Function")) == set(FUNCTIONS)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_function_code_handler_and_event_files_exist(template: dict[str, Any], name: str) -> None:
    folder, _ = FUNCTIONS[name]
    props = template["Resources"][name]["Properties"]
    assert props["CodeUri"] == f"functions/{folder}/"
    assert props["Handler"] == "app.lambda_handler"
    module, _, attribute = props["Handler"].rpartition(".")
    source = ROOT / props["CodeUri"] / f"{module}.py"
    assert source.is_file(), f"{name}: handler file {source} is missing"
    tree = ast.parse(source.read_text())
    assert any(isinstance(n, ast.FunctionDef) and n.name == attribute for n in tree.body), (
        f"{name}: {source} defines no top-level {attribute}()"
    )
    assert (ROOT / props["CodeUri"] / "requirements.txt").is_file()
    assert event_names(folder), f"{name}: no sample event under {EVENTS_DIR / folder}"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_function_reads_its_family_settings_and_gets_every_variable_they_need(
    template: dict[str, Any], name: str
) -> None:
    folder, family = FUNCTIONS[name]
    assert f"{family.__name__}.from_env()" in (ROOT / "functions" / folder / "app.py").read_text()
    declared = set(function_env(template, name))
    needed = {f.alias or n for n, f in family.model_fields.items() if f.is_required()}
    assert needed <= declared, f"{name} lacks {sorted(needed - declared)}"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_tables_and_queues_reach_functions_by_ref(template: dict[str, Any], name: str) -> None:
    env = function_env(template, name)
    for resource, variable in {**TABLES, **QUEUES}.items():
        if variable in env:
            assert env[variable] == {"Ref": resource}, f"{name}: {variable} must be !Ref {resource}"
    assert isinstance(env["POWERTOOLS_SERVICE_NAME"], str)
    assert env["POWERTOOLS_SERVICE_NAME"] == FUNCTIONS[name][0]
    assert "POWERTOOLS_IDEMPOTENCY_DISABLED" not in env


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_policies_are_sam_templates_scoped_to_the_functions_own_resources(template: dict[str, Any], name: str) -> None:
    env = function_env(template, name)
    allowed_tables = {resource for resource, variable in TABLES.items() if variable in env}
    allowed_queues = {resource for resource, variable in QUEUES.items() if variable in env}
    granted_tables: set[str] = set()
    for policy in template["Resources"][name]["Properties"].get("Policies", []):
        assert isinstance(policy, dict) and len(policy) == 1, f"{name}: not a SAM policy template: {policy}"
        ((kind, args),) = policy.items()
        assert kind in SAM_POLICY_TEMPLATES, f"{name}: unexpected policy {kind}"
        if kind.startswith("DynamoDB"):
            table = args["TableName"]["Ref"]
            assert table in allowed_tables, f"{name}: policy on {table} it has no variable for"
            granted_tables.add(table)
        elif kind.startswith("SQS"):
            assert args["QueueName"]["Fn::GetAtt"][0] in allowed_queues
        else:
            assert args["SecretArn"]["Ref"] in template["Parameters"]
    assert granted_tables == allowed_tables, f"{name}: variables without access: {allowed_tables - granted_tables}"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_logs_to_its_own_group_with_a_retention(template: dict[str, Any], name: str) -> None:
    group = template["Resources"][name]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    log_group = template["Resources"][group]
    assert log_group["Type"] == "AWS::Logs::LogGroup"
    assert log_group["Properties"] == {"RetentionInDays": {"Ref": "LogRetentionDays"}}


def test_globals(template: dict[str, Any]) -> None:
    function = template["Globals"]["Function"]
    assert function["Runtime"] == "python3.12"
    assert function["Tracing"] == "Active"
    assert int(function["Timeout"]) <= 29  # API Gateway's integration limit, for the webhooks
    assert int(function["MemorySize"]) >= 128
    assert function["Layers"] == [{"Ref": "ConcordLayer"}]
    env = function["Environment"]["Variables"]
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "Concord"
    assert "POWERTOOLS_LOG_LEVEL" in env


def test_layer_is_built_by_sam_for_python312(template: dict[str, Any]) -> None:
    layer = template["Resources"]["ConcordLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"] == "layers/concord/"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    assert layer["Metadata"]["BuildMethod"] == "python3.12"
    assert (ROOT / "layers/concord/requirements.txt").is_file()


def test_salesforce_events_rule_takes_bus_and_source_from_parameters(template: dict[str, Any]) -> None:
    events = template["Resources"]["SalesforceEventsFunction"]["Properties"]["Events"]
    (rule,) = [e["Properties"] for e in events.values() if e["Type"] == "EventBridgeRule"]
    assert rule["EventBusName"]["Ref"] in template["Parameters"]
    assert rule["Pattern"]["source"][0]["prefix"]["Ref"] in template["Parameters"]


@pytest.mark.parametrize("name", ["SubscriptionsFunction", "ReconcilerFunction"])
def test_scheduled_functions_run_on_parameterised_schedules(template: dict[str, Any], name: str) -> None:
    events = template["Resources"][name]["Properties"]["Events"]
    (schedule,) = [e["Properties"] for e in events.values() if e["Type"] == "Schedule"]
    assert schedule["Schedule"]["Ref"] in template["Parameters"]


# ------------------------------------------------------------------------ alarms and outputs


def test_alarms_watch_dead_letter_queues_worker_errors_and_sync_lag(template: dict[str, Any]) -> None:
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    by_metric = {
        (a["Properties"]["Namespace"], a["Properties"]["MetricName"]): a["Properties"] for a in alarms.values()
    }
    watched = {
        a["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]: a["Properties"]
        for a in alarms.values()
        if a["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    }
    assert set(watched) == {"ChangesDeadLetterQueue", "ChangeEventsDeadLetterQueue"}
    for dlq in watched.values():
        assert (dlq["Threshold"], dlq["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    errors = by_metric[("AWS/Lambda", "Errors")]
    assert errors["Dimensions"][0]["Value"] == {"Ref": "SyncWorkerFunction"}
    lag = by_metric[("AWS/SQS", "ApproximateAgeOfOldestMessage")]
    assert lag["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["ChangesQueue", "QueueName"]}
    assert resources(template, "AWS::CloudWatch::Dashboard")


def test_outputs_name_every_endpoint_queue_and_table(template: dict[str, Any]) -> None:
    rendered = json.dumps(template["Outputs"])
    for resource in [*TABLES, *QUEUES, *FAILURE_QUEUES]:
        assert f'"Ref": "{resource}"' in rendered, f"no output for {resource}"
    for name in FUNCTIONS:
        for event in template["Resources"][name]["Properties"].get("Events", {}).values():
            if event["Type"] == "Api":
                assert re.search(rf"/\$\{{StageName\}}{re.escape(event['Properties']['Path'])}\"", rendered), (
                    f"no output for {event['Properties']['Path']}"
                )


# ------------------------------------------------------------------------- events and env.json


def test_every_api_route_has_a_sample_event(template: dict[str, Any]) -> None:
    for name, (folder, _) in FUNCTIONS.items():
        routes = {
            (e["Properties"]["Method"].upper(), e["Properties"]["Path"])
            for e in template["Resources"][name]["Properties"].get("Events", {}).values()
            if e["Type"] == "Api"
        }
        sampled = {
            (event["httpMethod"], event["resource"])
            for event in map(load_event, event_names(folder))
            if "httpMethod" in event
        }
        assert routes <= sampled, f"{name}: routes without a sample event: {routes - sampled}"


@pytest.mark.parametrize("event_name", event_names())
def test_sample_events_have_real_shapes(event_name: str) -> None:
    event = load_event(event_name)
    if "httpMethod" in event:  # API Gateway REST proxy (payload 1.0)
        assert {"resource", "path", "headers", "multiValueHeaders", "requestContext", "isBase64Encoded"} <= set(event)
        assert event["requestContext"]["requestId"]
    elif "Records" in event:
        assert all(r["eventSource"] == "aws:sqs" and isinstance(r["body"], str) for r in event["Records"])
    else:  # EventBridge
        assert {"version", "id", "detail-type", "source", "time", "detail"} <= set(event)


def test_env_json_sets_only_declared_variables(template: dict[str, Any]) -> None:
    # `sam local invoke --env-vars` silently drops variables the template does not declare.
    env_json = json.loads((ROOT / "env.json").read_text())
    declared = set().union(*(function_env(template, name) for name in FUNCTIONS))
    assert set(env_json["Parameters"]) <= declared
    for key, value in env_json.items():
        assert isinstance(value, dict), f"env.json: {key} must be an object (SAM rejects anything else)"
        if key in FUNCTIONS:
            assert set(value) <= set(function_env(template, key))


@pytest.mark.parametrize(
    ("metric", "service"),
    [
        ("CursorExpiredAgain", "sync_worker"),
        ("DriftFound", "sync_worker"),
        ("ChannelFailures", "subscriptions"),
        ("SalesforceApiBudgetLeft", "sync_worker"),
    ],
)
def test_the_catch_up_and_channel_metrics_are_alarmed_where_they_are_emitted(
    template: dict[str, Any], metric: str, service: str
) -> None:
    """Each metric is emitted by the named function (Powertools adds its service as the one dimension);
    an alarm on another dimension set would watch a metric that never exists."""
    alarms = [a["Properties"] for a in resources(template, "AWS::CloudWatch::Alarm").values()]
    (alarm,) = [a for a in alarms if a["MetricName"] == metric]
    assert alarm["Namespace"] == "Concord"
    assert alarm["Dimensions"] == [{"Name": "service", "Value": service}]
    source = (ROOT / "functions" / service / "app.py").read_text()
    assert f'name="{metric}"' in source
