"""The whole system on one machine, composed in one place (``make run`` and the end-to-end tests).

- the AWS half: DynamoDB Local and the patched moto server, provisioned from ``template.yaml``;
- the outside world: the Salesforce, Microsoft Graph and Google sandboxes with their seed data,
  whose pushes go to the functions' real routes: Outbound Messages for Contact, Lead and Event to
  ``/salesforce/outbound``, change events through the EventBridge rule to ``salesforce_events``,
  Gmail Pub/Sub pushes to ``/google/gmail`` (Graph subscriptions and Calendar channels are made by
  the ``subscriptions`` function, as in AWS);
- the credentials the functions read from Secrets Manager, stored in moto under the ARNs the
  template's parameters name;
- the Lambda half: :class:`~local.runner.LocalRunner` with every function's settings pointed at
  the sandboxes;
- optionally, an env-vars file for ``sam local invoke --env-vars`` holding those same settings
  (:meth:`LocalSystem.env_vars`), removed again when the system stops.

A start that fails or is interrupted (``stop_requested``, set by ``make run``'s Ctrl-C handler and
checked between steps, never raised into the middle of one) stops everything it had started.
"""

from __future__ import annotations

import ipaddress
import json
import threading
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from concord.adapters.queue import ChangeQueue
from concord.adapters.stores import DynamoConnectionStore, DynamoDB, DynamoSyncLog
from concord.core import ConnectionOptions
from concord.notices import ChangeNotice
from concord.ports import Connection
from local.aws.provision import REGION
from local.aws.stack import LocalStack, StartInterrupted
from local.runner import LOCAL_OUTBOUND_TOKEN, LOCAL_PARAMETERS, LocalRunner
from local.sandboxes import seed
from local.sandboxes.google import DEFAULT_PUSH_ACCOUNT, GoogleSandbox
from local.sandboxes.graph import SEED_CLIENT_ID, SEED_CLIENT_SECRET, SEED_TENANT, GraphSandbox
from local.sandboxes.salesforce.notify import OutboundMessage
from local.sandboxes.salesforce.sandbox import SalesforceSandbox
from local.sandboxes.server import ca_bundle_path

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


__all__ = ["CONTAINER_HOST", "LocalSystem", "StartInterrupted"]

SALESFORCE_CONSUMER_KEY = "concord-local-consumer-key"
SALESFORCE_USERNAME = "integration@concord.example"
GMAIL_TOPIC = "projects/concord-local/topics/gmail"
GMAIL_AUDIENCE = "concord-gmail-push"
M365_CONNECTION = "conn-m365"
SYNC_FOLDER = "Salesforce Sync"
GOOGLE_CONNECTION = "conn-google"
#: How a function in a Docker container names this machine: Docker Desktop resolves it itself; on
#: Linux ``sam local invoke --add-host host.docker.internal:host-gateway`` maps it (Docker 20.10+).
CONTAINER_HOST = "host.docker.internal"


def _private_key() -> tuple[str, str]:
    """(private key PEM, public key PEM) of a throwaway RSA key for the connected app."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private.decode(), public.decode()


@dataclass
class LocalSystem:
    """Start with ``with LocalSystem() as system:``; everything stops when the block ends."""

    schedule_interval_s: float = 60.0
    poll_queues: bool = True
    #: Where the AWS half listens. Not loopback: a function in a container may reach it, and the
    #: env-vars file names this machine as ``CONTAINER_HOST``.
    bind: str = "127.0.0.1"
    env_vars_path: Path | None = None  # where to write the file for ``sam local invoke --env-vars``
    stop_requested: threading.Event = field(default_factory=threading.Event)
    on_step: Callable[[str], None] | None = None  # told each step of the start as it is reached
    ca_bundle: str | None = field(default=None, init=False)
    stack: LocalStack = field(init=False)
    salesforce: SalesforceSandbox = field(init=False)
    graph: GraphSandbox = field(init=False)
    google: GoogleSandbox = field(init=False)
    runner: LocalRunner = field(init=False)
    _running: ExitStack = field(default_factory=ExitStack)

    def __enter__(self) -> LocalSystem:
        try:
            self._start()
        except BaseException:
            self._running.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._running.close()

    def _reached(self, step: str) -> None:
        if self.on_step is not None:
            self.on_step(step)
        if self.stop_requested.is_set():
            raise StartInterrupted(step)

    def _start(self) -> None:
        self.stack = LocalStack(bind=self.bind, stop_requested=self.stop_requested, on_step=self.on_step)
        self._running.enter_context(self.stack)
        private_key, public_key = _private_key()
        self.salesforce = SalesforceSandbox(
            consumer_key=SALESFORCE_CONSUMER_KEY, username=SALESFORCE_USERNAME, public_key_pem=public_key
        )
        self.graph = GraphSandbox()
        self.google = GoogleSandbox()
        for sandbox in (self.salesforce, self.graph, self.google):
            sandbox.start()
            self._running.callback(sandbox.stop)
            self.ca_bundle = ca_bundle_path()
            self._reached(f"{sandbox.name} sandbox started")
            sandbox.seed()
            self._reached(f"{sandbox.name} sandbox seeded")
        self._store_secrets(private_key)
        self._reached("secrets stored")
        self._seed_connections()
        self._reached("connections seeded")

        self.runner = LocalRunner(
            self.stack,
            overrides=self.function_settings(),
            schedule_interval_s=self.schedule_interval_s,
            poll_queues=self.poll_queues,
        )
        self._running.enter_context(self.runner)
        self._reached("functions started")
        for sobject in ("Contact", "Lead", "Event"):
            self.salesforce.add_outbound_message(
                OutboundMessage(
                    sobject,
                    f"{self.runner.url}/salesforce/outbound?token={LOCAL_OUTBOUND_TOKEN}",
                    ("Id", "LastModifiedDate"),
                )
            )
        # EventBridge delivers asynchronously: the sandbox's API call must not wait for the function.
        self.salesforce.cdc_sink = lambda event: threading.Thread(
            target=self.runner.put_event, args=(event,), daemon=True
        ).start()
        self.google.add_push_subscription(GMAIL_TOPIC, f"{self.runner.url}/google/gmail", audience=GMAIL_AUDIENCE)
        self._reached("pushes wired")
        if self.env_vars_path is not None:
            self._write_env_vars(self.env_vars_path)
            self._reached("env-vars file written")

    def function_settings(self) -> dict[str, str]:
        """Every setting the functions need to reach the sandboxes instead of the real services."""
        return {
            "SALESFORCE_ORG_ID": self.salesforce.org_id,
            "SALESFORCE_LOGIN_URL": self.salesforce.url,
            "GRAPH_LOGIN_URL": self.graph.url,
            "GRAPH_BASE_URL": self.graph.graph_url,
            "GOOGLE_TOKEN_URL": f"{self.google.url}/token",
            "GOOGLE_API_BASE_URL": self.google.url,
            "GOOGLE_JWKS_URL": f"{self.google.url}/oauth2/v3/certs",
            "GOOGLE_PUSH_AUDIENCE": GMAIL_AUDIENCE,
            "GOOGLE_PUSH_SERVICE_ACCOUNT": DEFAULT_PUSH_ACCOUNT,
            "GOOGLE_PUSH_TOPIC": GMAIL_TOPIC,
            "CA_BUNDLE": ca_bundle_path(),
        }

    @property
    def env_host(self) -> str:
        """How a function run by ``sam local`` names this machine."""
        return "127.0.0.1" if ipaddress.ip_address(self.bind).is_loopback else CONTAINER_HOST

    def env_vars(self) -> dict[str, dict[str, str]]:
        """SAM's env-vars format, one section per function: the variables the template declares for
        it (SAM passes no others) with the values this system gives it; endpoints name ``env_host``.

        Off loopback, ``CA_BUNDLE`` is left empty: the bundle's path on this machine means nothing
        inside a container, and ``sam local`` mounts only the function's code and layers.
        """
        template = self.runner.template
        declared_globally = set(
            template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
        )
        host = self.env_host
        sections: dict[str, dict[str, str]] = {}
        for logical_id, function in self.runner.functions.items():
            props = template["Resources"][logical_id]["Properties"]
            declared = declared_globally | set(props.get("Environment", {}).get("Variables", {}))
            values = {key: function.env[key] for key in sorted(declared) if key in function.env}
            if host != "127.0.0.1":
                values = {key: value.replace("://127.0.0.1:", f"://{host}:") for key, value in values.items()}
                values["CA_BUNDLE"] = ""
            sections[logical_id] = values
        return sections

    def _write_env_vars(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.env_vars(), indent=2) + "\n")
        # The file describes this run's ports: once it stops, a stale copy would only mislead.
        self._running.callback(lambda: path.unlink(missing_ok=True))

    def _store_secrets(self, salesforce_private_key: str) -> None:
        secrets: dict[str, dict[str, Any]] = {
            LOCAL_PARAMETERS["SalesforceJwtSecretArn"]: {
                "consumer_key": SALESFORCE_CONSUMER_KEY,
                "username": SALESFORCE_USERNAME,
                "private_key": salesforce_private_key,
                "login_url": self.salesforce.url,
                "audience": self.salesforce.audience,
            },
            LOCAL_PARAMETERS["GraphAppSecretArn"]: {
                "tenant_id": SEED_TENANT,
                "client_id": SEED_CLIENT_ID,
                "client_secret": SEED_CLIENT_SECRET,
            },
            LOCAL_PARAMETERS["GoogleServiceAccountSecretArn"]: self.google.service_account_info(),
        }
        client = self.stack.client("secretsmanager")
        for arn, value in secrets.items():
            client.create_secret(Name=arn.rsplit(":secret:", 1)[1], SecretString=json.dumps(value))

    def connections(self) -> list[Connection]:
        """One connection per seeded mailbox, both for the sandbox's one Salesforce user (it owns every
        seeded record, so each mailbox syncs the whole seeded org). Outlook contacts sync from the seeded
        "Salesforce Sync" folder only, Lightning Sync's default."""
        owner = self.salesforce.user_id
        mailbox = self.graph.mailbox(seed.M365_USER)
        sync_folder = next(f.id for f in mailbox.folders.values() if f.display_name == SYNC_FOLDER)
        return [
            Connection(
                connection_id=M365_CONNECTION,
                provider="graph",
                mailbox_user=seed.M365_USER,
                salesforce_user_id=owner,
                options=ConnectionOptions(provider="graph", user_email=seed.M365_USER, contact_folder_id=sync_folder),
            ),
            Connection(
                connection_id=GOOGLE_CONNECTION,
                provider="google",
                mailbox_user=seed.GOOGLE_USER,
                salesforce_user_id=owner,
                options=ConnectionOptions(provider="google", user_email=seed.GOOGLE_USER),
            ),
        ]

    def _seed_connections(self) -> None:
        dynamodb = DynamoDB(self.stack.dynamodb.url, region=REGION)
        store = DynamoConnectionStore(self.stack.env["CONNECTIONS_TABLE"], dynamodb=dynamodb)
        for connection in self.connections():
            store.put(connection)

    def sync_log(self) -> DynamoSyncLog:
        """The worker's sync log (one entry per decision), read from this machine's DynamoDB Local."""
        dynamodb = DynamoDB(self.stack.dynamodb.url, region=REGION)
        return DynamoSyncLog(self.stack.env["SYNC_LOG_TABLE"], dynamodb=dynamodb)

    def first_sync(self) -> list[ChangeNotice]:
        """Ask the workers for the first sync of every seeded connection now; the notices sent.

        In AWS the reconciler queues a new connection's first sync at its next run (every 15 minutes);
        ``make run`` wants the seeded records linked at once, so it queues the same ``catch_up`` notices
        (``resync: first_sync``, one per object) itself: a worker then loads both sides and queues a
        ``change`` for every record, matching before it creates anything.
        """
        notices = [
            ChangeNotice(
                source=connection.provider,
                connection_id=connection.connection_id,
                object_type=object_type,
                kind="catch_up",
                resync="first_sync",
                provider_event_id=f"first-sync:{connection.connection_id}:{object_type}",
            )
            for connection in self.connections()
            for object_type in ("contact", "event", "email")
        ]
        ChangeQueue(self.stack.env["CHANGES_QUEUE_URL"], self.stack.client("sqs")).send(notices)
        return notices

    def endpoints(self) -> dict[str, str]:
        return {
            "webhooks (API Gateway)": self.runner.url,
            "Salesforce sandbox": self.salesforce.url,
            "Microsoft Graph sandbox": self.graph.graph_url,
            "Google sandbox": self.google.url,
            "DynamoDB Local": self.stack.dynamodb.url,
            "moto (SQS, Secrets Manager, SSM, EventBridge)": self.stack.moto.url,
            "sandbox CA bundle": ca_bundle_path(),
            "seed mailboxes": f"{seed.M365_USER} (Graph), {seed.GOOGLE_USER} (Google)",
        }
