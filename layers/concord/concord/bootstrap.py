"""The one composition root: real adapters built from settings, wired into the services.

Functions call these builders once per process (at cold start); tests build the same services with the
in-memory fakes instead (``concord.adapters.memory`` and the test fakes), so this module is the only
place that knows which implementation stands behind each port.

Secrets (the Salesforce JWT key, the Graph app secret, the Google service account) are read through
Powertools Parameters with a cache, so a warm function does not call Secrets Manager per invocation and
a rotated secret is picked up within :data:`SECRET_MAX_AGE_S`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from concord.adapters.dead_letters import SqsRetryDelays
    from concord.adapters.google import GoogleClient
    from concord.adapters.graph import GraphClient
    from concord.adapters.queue import ChangeQueue
    from concord.ports import ConnectionStore, Mailbox
    from concord.service.catchup import CatchUpPolicy, CatchUpSchedule
    from concord.service.channels import ChannelsService
    from concord.service.sync import SyncService
    from concord.settings import (
        ReconcilerSettings,
        SchedulerSettings,
        WorkerSettings,
        _CatchUpSettings,
        _ProviderEndpoints,
    )

__all__ = [
    "SECRET_MAX_AGE_S",
    "Deadline",
    "catch_up_policy",
    "catch_up_schedule",
    "channels_service",
    "retry_delays",
    "sync_service",
]

SECRET_MAX_AGE_S = 300
GRAPH_PAGE_SIZE = 200
#: Seconds kept back from the Lambda's remaining time: enough to log, report and return.
DEADLINE_MARGIN_S = 5.0


@dataclass
class Deadline:
    """The current invocation's end, shared by every client's retry policy (which must not sleep past it)."""

    ends_at: float = field(default_factory=lambda: time.monotonic() + 900.0)

    def reset(self, remaining_ms: int) -> None:
        self.ends_at = time.monotonic() + remaining_ms / 1000.0

    def left(self) -> float:
        return max(0.0, self.ends_at - time.monotonic() - DEADLINE_MARGIN_S)


class _Secrets:
    """Secrets Manager through Powertools Parameters (cached ``SECRET_MAX_AGE_S``), on a client made for
    this composition: Powertools' module-wide default provider keeps the first endpoint it ever saw."""

    def __init__(self) -> None:
        import boto3
        from aws_lambda_powertools.utilities.parameters import SecretsProvider

        self._provider = SecretsProvider(boto3_client=boto3.client("secretsmanager"))

    def json(self, arn: str) -> dict[str, Any]:
        value = self._provider.get(arn, transform="json", max_age=SECRET_MAX_AGE_S)
        if not isinstance(value, dict):
            raise ValueError(f"secret {arn.rsplit(':', 1)[-1]} does not hold a JSON object")
        return value


def _graph_client(
    settings: _ProviderEndpoints, secrets: _Secrets, verify: str | bool, deadline: Deadline
) -> GraphClient:
    from concord.adapters.graph import GraphClient, GraphCredentials

    secret = secrets.json(settings.graph_app_secret_arn)
    credentials = GraphCredentials(
        tenant_id=str(secret["tenant_id"]),
        client_id=str(secret["client_id"]),
        client_secret=str(secret["client_secret"]),
    )
    return GraphClient(
        credentials,
        graph_url=settings.graph_base_url,
        login_url=settings.graph_login_url,
        verify=verify,
        time_left=deadline.left,
        # Delta rounds page by 10 unless asked; 200 is what Graph grants contacts (and a catch-up's
        # full load of 1,000 contacts then costs 5 calls, not 100).
        page_size=GRAPH_PAGE_SIZE,
    )


def _google_client(
    settings: _ProviderEndpoints, secrets: _Secrets, verify: str | bool, deadline: Deadline
) -> GoogleClient:
    from concord.adapters.google import GoogleClient, GoogleEndpoints, ServiceAccount

    key = ServiceAccount.from_info(secrets.json(settings.google_service_account_secret_arn))
    account = ServiceAccount(key.client_email, key.private_key, key.private_key_id, settings.google_token_url)
    return GoogleClient(
        account,
        endpoints=GoogleEndpoints.for_base(settings.google_api_base_url),
        verify=verify,
        time_left=deadline.left,
    )


def catch_up_policy(settings: _CatchUpSettings) -> CatchUpPolicy:
    from concord.service.catchup import CatchUpPolicy

    return CatchUpPolicy(
        interval=timedelta(minutes=settings.catch_up_interval_minutes),
        budget_floor=settings.salesforce_budget_floor_percent / 100,
    )


def sync_service(settings: WorkerSettings, deadline: Deadline) -> SyncService:
    """The sync worker's service on DynamoDB, SQS and the three real APIs, with the catch-up and the
    channels for the ``catch_up``, ``reauthorize`` and ``recreate_subscription`` notices on its queue."""
    from concord.adapters.crm import SalesforceCrm
    from concord.adapters.dead_letters import SqsDeadLetters
    from concord.adapters.feeds import GoogleFeed, GraphFeed, SalesforceFeed
    from concord.adapters.google_mailbox import GoogleMailboxAdapter
    from concord.adapters.graph_mailbox import GraphMailboxAdapter
    from concord.adapters.queue import ChangeQueue
    from concord.adapters.salesforce import SalesforceClient, SalesforceCredentials
    from concord.adapters.stores import (
        DynamoConnectionStore,
        DynamoCursorStore,
        DynamoDB,
        DynamoLinkStore,
        DynamoSyncLog,
    )
    from concord.core import default_mapping
    from concord.service.catchup import CatchUpService
    from concord.service.sync import SyncService

    verify: str | bool = str(settings.ca_bundle) if settings.ca_bundle else True
    mapping = default_mapping()
    secrets = _Secrets()
    # One connection for the stores, made here rather than taken from a process-wide default, so a
    # composition always talks to the endpoint its environment names now.
    dynamodb = DynamoDB()

    sf = secrets.json(settings.salesforce_jwt_secret_arn)
    salesforce = SalesforceClient(
        SalesforceCredentials(
            consumer_key=str(sf["consumer_key"]),
            username=str(sf["username"]),
            private_key_pem=str(sf["private_key"]),
            login_url=str(sf.get("login_url") or settings.salesforce_login_url),
            audience=str(sf.get("audience") or ""),
        ),
        verify=verify,
        time_left=deadline.left,
    )
    graph = _graph_client(settings, secrets, verify, deadline)
    google = _google_client(settings, secrets, verify, deadline)
    crm = SalesforceCrm(salesforce, mapping)
    mailboxes: dict[str, Mailbox] = {"graph": GraphMailboxAdapter(graph), "google": GoogleMailboxAdapter(google)}
    links = DynamoLinkStore(settings.links_table, dynamodb=dynamodb)
    connections = DynamoConnectionStore(settings.connections_table, dynamodb=dynamodb)
    queue = ChangeQueue(settings.changes_queue_url)
    catch_up = CatchUpService(
        connections=connections,
        cursors=DynamoCursorStore(settings.cursors_table, dynamodb=dynamodb),
        links=links,
        queue=queue,
        crm=crm,
        crm_feed=SalesforceFeed(salesforce),
        mailboxes=mailboxes,
        feeds={"graph": GraphFeed(graph), "google": GoogleFeed(google)},
        policy=catch_up_policy(settings),
    )
    return SyncService(
        crm=crm,
        mailboxes=mailboxes,
        links=links,
        connections=connections,
        log=DynamoSyncLog(settings.sync_log_table, dynamodb=dynamodb),
        dead_letters=SqsDeadLetters(settings.changes_dlq_url),
        mapping=mapping,
        catch_up=catch_up,
        channels=_channels(settings, connections, graph, google, queue),
    )


def retry_delays(settings: WorkerSettings) -> SqsRetryDelays:
    """Backoff for the messages a batch hands back to the changes queue."""
    from concord.adapters.dead_letters import SqsRetryDelays

    return SqsRetryDelays(settings.changes_queue_url)


def channels_service(settings: SchedulerSettings, deadline: Deadline) -> ChannelsService:
    """The subscriptions function's service: channels on Graph and Google, kept in the Subscriptions table,
    catch-ups after a lapse on the changes queue."""
    from concord.adapters.queue import ChangeQueue
    from concord.adapters.stores import DynamoConnectionStore, DynamoDB

    verify: str | bool = str(settings.ca_bundle) if settings.ca_bundle else True
    secrets = _Secrets()
    graph = _graph_client(settings, secrets, verify, deadline)
    google = _google_client(settings, secrets, verify, deadline)
    connections = DynamoConnectionStore(settings.connections_table, dynamodb=DynamoDB())
    return _channels(settings, connections, graph, google, ChangeQueue(settings.changes_queue_url))


def _channels(
    settings: WorkerSettings | SchedulerSettings,
    connections: ConnectionStore,
    graph: GraphClient,
    google: GoogleClient,
    queue: ChangeQueue,
) -> ChannelsService:
    import boto3  # the store takes a plain client: it is the one ingress reads channels with

    from concord.adapters.subscriptions import SubscriptionStore
    from concord.service.channels import ChannelPolicy, ChannelsService

    return ChannelsService(
        connections=connections,
        store=SubscriptionStore(settings.subscriptions_table, boto3.client("dynamodb")),
        graph=graph,
        google=google,
        policy=ChannelPolicy(webhook_base_url=settings.webhook_base_url, google_push_topic=settings.google_push_topic),
        notices=queue,
    )


def catch_up_schedule(settings: ReconcilerSettings) -> CatchUpSchedule:
    """The reconciler's schedule: which catch-ups to queue (no API credentials needed)."""
    from concord.adapters.stores import DynamoConnectionStore, DynamoDB
    from concord.service.catchup import CatchUpSchedule

    connections = DynamoConnectionStore(settings.connections_table, dynamodb=DynamoDB())
    return CatchUpSchedule(connections, catch_up_policy(settings))
