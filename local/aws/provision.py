"""Create the template's tables and queues on the local stack, from ``template.yaml`` itself.

The template is the one source of truth: this module reads its ``AWS::DynamoDB::Table`` and
``AWS::SQS::Queue`` resources (keys, GSIs, LSIs, TTL, redrive policies) and creates them under
their logical ids. It also reads which environment variable each function gets for each table or
queue (``LINKS_TABLE: !Ref LinksTable``), so the local environment is derived, never restated.

Only the intrinsic functions such resources use are resolved: ``!Ref`` (parameters by their
default, resources by their local name or URL), ``!GetAtt X.Arn`` / ``X.QueueUrl`` / ``X.QueueName``,
``!Sub`` and ``!Join``. Anything else is an error naming the resource, not a silent guess.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from pathlib import Path

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account


class TemplateError(ValueError):
    """The template uses something the local provisioner cannot reproduce faithfully."""


# ----------------------------------------------------------------------------- reading the template


class _CfnLoader(yaml.SafeLoader):
    """A YAML loader that keeps CloudFormation short-form tags as ``{"Fn::X": value}``."""


def _tag(tag: str) -> None:
    name = "Ref" if tag == "Ref" else f"Fn::{tag}"

    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if tag == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {name: value}

    _CfnLoader.add_constructor(f"!{tag}", construct)


for _name in (
    "Ref",
    "GetAtt",
    "Sub",
    "Join",
    "If",
    "Equals",
    "Not",
    "And",
    "Or",
    "Select",
    "Split",
    "FindInMap",
    "ImportValue",
    "Base64",
    "GetAZs",
    "Condition",
    "Cidr",
    "Transform",
):
    _tag(_name)


def load_template(path: str | Path) -> dict[str, Any]:
    """Parse a SAM/CloudFormation template, short-form tags included."""
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_CfnLoader)  # a SafeLoader subclass


# -------------------------------------------------------------------------------------- resolving


@dataclass
class Resolver:
    template: dict[str, Any]
    queue_urls: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)  # local values that win over defaults

    def parameter(self, name: str) -> Any:
        params = self.template.get("Parameters", {})
        if name in self.parameters:
            return self.parameters[name]
        if name in params:
            if "Default" not in params[name]:
                raise TemplateError(f"parameter {name} has no Default; the local stack cannot choose one")
            return params[name]["Default"]
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::StackName": "concord-local",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": None,
        }
        if name in pseudo:
            return pseudo[name]
        raise KeyError(name)

    def ref(self, name: str) -> Any:
        resources = self.template.get("Resources", {})
        if name in resources:
            kind = resources[name]["Type"]
            if kind == "AWS::SQS::Queue":
                return self.queue_urls.get(name, name)
            return name  # tables (and other resources) are named after their logical id locally
        return self.parameter(name)

    def get_att(self, name: str, attribute: str) -> str:
        kind = self.template.get("Resources", {}).get(name, {}).get("Type")
        if kind == "AWS::SQS::Queue":
            return {
                "Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}",
                "QueueUrl": self.queue_urls.get(name, name),
                "QueueName": name,
            }[attribute]
        if kind == "AWS::DynamoDB::Table" and attribute == "Arn":
            return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
        raise TemplateError(f"!GetAtt {name}.{attribute} cannot be resolved locally")

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                name, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(name, attribute)
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::Join":
                return str(arg[0]).join(str(self(v)) for v in arg[1])
            if key.startswith("Fn::"):
                raise TemplateError(f"{key} is not supported by the local provisioner")
        return {k: self(v) for k, v in value.items()}

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self(arg[1]))

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name:
                return str(self.get_att(*name.split(".", 1)))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}!]+)\}", substitute, text)


# ------------------------------------------------------------------------------------- provisioning


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r.get("Properties", {}) for name, r in template.get("Resources", {}).items() if r["Type"] == kind}


def table_request(name: str, props: dict[str, Any], resolve: Resolver) -> dict[str, Any]:
    """The CreateTable request for one ``AWS::DynamoDB::Table`` resource."""
    props = resolve(props)
    request: dict[str, Any] = {
        "TableName": name,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": props.get("BillingMode", "PROVISIONED"),
    }
    if request["BillingMode"] == "PROVISIONED":
        request["ProvisionedThroughput"] = props.get(
            "ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
        )
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if props.get(key):
            request[key] = props[key]
    if props.get("StreamSpecification"):
        request["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    return request


def queue_attributes(props: dict[str, Any], resolve: Resolver) -> dict[str, str]:
    """SQS attributes of one ``AWS::SQS::Queue`` resource (strings, as the API wants them)."""
    props = resolve(props)
    attributes: dict[str, str] = {}
    for key in (
        "VisibilityTimeout",
        "MessageRetentionPeriod",
        "DelaySeconds",
        "MaximumMessageSize",
        "ReceiveMessageWaitTimeSeconds",
        "FifoQueue",
        "ContentBasedDeduplication",
    ):
        if key in props:
            value = props[key]
            attributes[key] = str(value).lower() if isinstance(value, bool) else str(value)
    if "RedrivePolicy" in props:
        policy = props["RedrivePolicy"]
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": policy["deadLetterTargetArn"], "maxReceiveCount": str(policy["maxReceiveCount"])}
        )
    return attributes


@dataclass
class Provisioned:
    tables: list[str]
    queue_urls: dict[str, str]
    env: dict[str, str]  # environment variable → local table name or queue URL


def provision(template_path: str | Path, dynamodb: Any, sqs: Any) -> Provisioned:
    """Create every table and queue of the template on the given boto3 clients."""
    template = load_template(template_path)
    resolve = Resolver(template)

    existing = set(dynamodb.list_tables().get("TableNames", []))
    tables = resources_of(template, "AWS::DynamoDB::Table")
    for name, props in tables.items():
        if name in existing:
            dynamodb.delete_table(TableName=name)
        dynamodb.create_table(**table_request(name, props, resolve))
        ttl = resolve(props.get("TimeToLiveSpecification"))
        if ttl and ttl.get("Enabled"):
            dynamodb.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
            )

    queues = resources_of(template, "AWS::SQS::Queue")
    # Dead-letter queues first: a redrive policy must name a queue that exists.
    ordered = sorted(queues, key=lambda n: "RedrivePolicy" in queues[n])
    for name in ordered:
        resolve.queue_urls[name] = sqs.create_queue(QueueName=name)["QueueUrl"]
        sqs.set_queue_attributes(QueueUrl=resolve.queue_urls[name], Attributes=queue_attributes(queues[name], resolve))

    return Provisioned(sorted(tables), dict(resolve.queue_urls), function_environment(template, resolve))


def function_environment(template: dict[str, Any], resolve: Resolver) -> dict[str, str]:
    """Every environment variable the template binds to one of its tables or queues."""
    local = set(resources_of(template, "AWS::DynamoDB::Table")) | set(resources_of(template, "AWS::SQS::Queue"))
    blocks = [template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})]
    blocks += [
        r.get("Properties", {}).get("Environment", {}).get("Variables", {})
        for r in template.get("Resources", {}).values()
        if r["Type"] in ("AWS::Serverless::Function", "AWS::Lambda::Function")
    ]
    env: dict[str, str] = {}
    for variables in blocks:
        for key, value in variables.items():
            target = _referenced_resource(value)
            if target in local:
                env[key] = str(resolve(value))
    return env


def _referenced_resource(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref" and isinstance(arg, str):
            return arg
        if key == "Fn::GetAtt":
            return (arg if isinstance(arg, list) else arg.split("."))[0]
    return None
