"""Shared by the ingress tests (unit and integration): settings, fakes, signed tokens, canaries."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import jwt
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyItemAlreadyExistsError,
    IdempotencyItemNotFoundError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
from cryptography.hazmat.primitives.asymmetric import rsa

from concord.adapters.subscriptions import Channel, channel_key, gmail_key, secret_digest
from concord.ingress.apps.common import Deps
from concord.settings import WebhookSettings

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord

    from concord.notices import ChangeNotice

ORG_ID = "00D5g00000CNCRDEA0"
AUDIENCE = "concord-gmail-push"
PUSH_ACCOUNT = "gmail-push@concord-example.iam.gserviceaccount.com"
NOW = datetime(2026, 11, 20, 9, 15, 2, tzinfo=UTC)

# Secrets as the fixtures in events/ carry them. Every one starts with CANARY: none may ever show up
# in a log line, an error body or a queue message.
CANARY = "CANARY"
CONTACTS_SUB = "7f105c7d-2dc5-4530-97cd-4e7ae6534c07"
EVENTS_SUB = "2e8a4f1c-6b3d-4c9e-a7f5-1d0b9c8e7a6f"
CONTACTS_STATE = "CANARY-clientstate-contacts-3b9d1f7e5a"
EVENTS_STATE = "CANARY-clientstate-events-8e2c4a6b0d"
CALENDAR_CHANNEL = "0c3f7a2e-91d4-4b6c-8e5a-2f1d0c9b8a7e"
CALENDAR_TOKEN = "CANARY-channel-token-5f4e3d2c1b"
CALENDAR_RESOURCE = "ret08u3rv24htgh289g"  # the X-Goog-Resource-ID of events/google_webhook/calendar_notification.json
GMAIL_ADDRESS = "ada.lovelace@example.com"
# The token in the endpoint URL of the Outbound Message (events/salesforce_webhook/outbound_message.json).
OUTBOUND_TOKEN = "CANARY-outbound-token-Qm7xR2vT9kLw4Zp8"
OUTBOUND_TOKEN_SHA256 = hashlib.sha256(OUTBOUND_TOKEN.encode()).hexdigest()


class LambdaContextStub:
    """The part of a LambdaContext the handlers use (Powertools idempotency asks for the time left)."""

    function_name = "ingress-tests"
    aws_request_id = "00000000-0000-4000-8000-000000000000"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ingress-tests"
    memory_limit_in_mb = 512

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


CONTEXT = LambdaContextStub()


def settings(**overrides: str) -> WebhookSettings:
    env = {
        "POWERTOOLS_SERVICE_NAME": "ingress-tests",
        "CHANGES_QUEUE_URL": "http://127.0.0.1:1/123456789012/ChangesQueue",
        "SUBSCRIPTIONS_TABLE": "SubscriptionsTable",
        "CONNECTIONS_TABLE": "ConnectionsTable",
        "IDEMPOTENCY_TABLE": "IdempotencyTable",
        "SALESFORCE_ORG_ID": ORG_ID,
        "GOOGLE_PUSH_AUDIENCE": AUDIENCE,
        "GOOGLE_PUSH_SERVICE_ACCOUNT": PUSH_ACCOUNT,
        "GOOGLE_JWKS_URL": "http://127.0.0.1:1/oauth2/v3/certs",
        "WEBHOOK_MAX_BODY_BYTES": "262144",
        "SALESFORCE_OUTBOUND_TOKEN_SHA256": OUTBOUND_TOKEN_SHA256,
        **overrides,
    }
    return WebhookSettings.from_env(env)


def channel_item(
    pk: str, connection: str, provider: str, object_type: str, secret: str | None, *, resource_id: str | None = None
) -> dict[str, Any]:
    """A Subscriptions-table item as the subscriptions function writes it: the secret only as its digest,
    and for a Calendar channel the ``resourceId`` its watch answered."""
    raw = {
        "pk": {"S": pk},
        "sk": {"S": "META"},
        "connection_id": {"S": connection},
        "provider": {"S": provider},
        "object_type": {"S": object_type},
    }
    if secret is not None:
        raw["secret_sha256"] = {"S": secret_digest(secret)}
    if resource_id is not None:
        raw["resource_id"] = {"S": resource_id}
    return raw


def channel_items() -> list[dict[str, Any]]:
    """Subscriptions-table items for the channels the fixtures name (secrets stored as digests)."""
    return [
        channel_item(channel_key(CONTACTS_SUB), "conn_ada_graph", "graph", "contact", CONTACTS_STATE),
        channel_item(channel_key(EVENTS_SUB), "conn_ada_graph", "graph", "event", EVENTS_STATE),
        channel_item(
            channel_key(CALENDAR_CHANNEL),
            "conn_ada_google",
            "google_calendar",
            "event",
            CALENDAR_TOKEN,
            resource_id=CALENDAR_RESOURCE,
        ),
        channel_item(gmail_key(GMAIL_ADDRESS), "conn_ada_google", "gmail", "email", None),
    ]


class FakeChannels:
    """In-memory stand-in for SubscriptionStore."""

    def __init__(self, items: Iterable[dict[str, Any]] | None = None) -> None:
        channels = (Channel.from_item(item) for item in (channel_items() if items is None else items))
        self.by_pk = {c.pk: c for c in channels if c is not None}
        self.lookups = 0

    def get(self, pk: str, /) -> Channel | None:
        self.lookups += 1
        return self.by_pk.get(pk)

    def get_many(self, pks: Iterable[str], /) -> dict[str, Channel]:
        self.lookups += 1
        return {pk: self.by_pk[pk] for pk in pks if pk in self.by_pk}


class FakeQueue:
    """In-memory stand-in for ChangeQueue; keeps the message bodies it would have sent."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        self.fail_with: Exception | None = None

    def send(self, notices: Sequence[ChangeNotice], /) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.bodies.extend(n.to_message() for n in notices)

    @property
    def notices(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body in self.bodies]


class MemoryPersistence(BasePersistenceLayer):
    """Powertools idempotency records in a dict: the same contract as the DynamoDB layer, no I/O."""

    def __init__(self) -> None:
        # Powertools' __init__ is unannotated; calling it through getattr keeps mypy's untyped-call check quiet.
        getattr(super(), "__init__")()  # noqa: B009 - see above

    # State is made on first use (no attributes beside the base's).
    @property
    def records(self) -> dict[str, DataRecord]:
        records: dict[str, DataRecord] = self.__dict__.setdefault("_records", {})
        return records

    @property
    def _lock(self) -> threading.Lock:
        lock: threading.Lock = self.__dict__.setdefault("_records_lock", threading.Lock())
        return lock

    def _get_record(self, idempotency_key: str) -> DataRecord:
        try:
            return self.records[idempotency_key]
        except KeyError:
            raise IdempotencyItemNotFoundError from None

    def _put_record(self, data_record: DataRecord) -> None:
        with self._lock:
            old = self.records.get(data_record.idempotency_key)
            if old is not None and not old.is_expired:
                raise IdempotencyItemAlreadyExistsError(old_data_record=old)
            self.records[data_record.idempotency_key] = data_record

    def _update_record(self, data_record: DataRecord) -> None:
        self.records[data_record.idempotency_key] = data_record

    def _delete_record(self, data_record: DataRecord) -> None:
        self.records.pop(data_record.idempotency_key, None)


def fake_deps() -> Deps:
    return Deps(queue=FakeQueue(), persistence=MemoryPersistence(), channels=FakeChannels(), clock=lambda: NOW)


class SigningKey:
    """An RSA key standing in for Google's: signs push tokens and resolves them (as JwksKeys would)."""

    def __init__(self, kid: str = "test-kid-1") -> None:
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def __call__(self, token: str, /) -> Any:
        header = jwt.get_unverified_header(token)
        if header.get("kid") != self.kid:
            from concord.ingress.errors import Rejected

            raise Rejected(401, "token is not signed by a known Google key")
        return self.private.public_key()

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        return {"keys": [{**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}]}

    def token(self, **overrides: Any) -> str:
        now = int(time.time())
        claims = {
            "aud": AUDIENCE,
            "azp": "104857600000000000001",
            "email": PUSH_ACCOUNT,
            "email_verified": True,
            "exp": now + 3600,
            "iat": now,
            "iss": "https://accounts.google.com",
            "sub": "104857600000000000001",
            **overrides,
        }
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, self.private, algorithm="RS256", headers={"kid": self.kid})


def gmail_body(email: str = GMAIL_ADDRESS, history_id: Any = 9876543210, message_id: str = "2070443601311540") -> str:
    data = base64.b64encode(json.dumps({"emailAddress": email, "historyId": history_id}).encode()).decode()
    return json.dumps(
        {
            "message": {"data": data, "messageId": message_id, "message_id": message_id, "attributes": {}},
            "subscription": "projects/concord-example/subscriptions/gmail-push",
        }
    )


def outbound_message(notifications: int = 2, *, org_id: str = ORG_ID, start: int = 1, sobject: str = "Contact") -> str:
    """An Outbound Message with ``notifications`` notifications (ids and record ids numbered from ``start``)."""
    items = "".join(
        f"<Notification><Id>04l5g00000N{n:06d}A</Id>"
        f'<sObject xsi:type="sf:{sobject}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        f"<sf:Id>0035g00000R{n:06d}A</sf:Id><sf:SystemModstamp>2026-11-20T09:15:01.000Z</sf:SystemModstamp>"
        "</sObject></Notification>"
        for n in range(start, start + notifications)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{org_id}</OrganizationId><ActionId>04k5g000000CNCRDAA</ActionId>"
        "<SessionId>CANARY-session-generated!AQ0AQ</SessionId>"
        "<EnterpriseUrl>https://concord-example.my.salesforce.com/services/Soap/c/60.0</EnterpriseUrl>"
        "<PartnerUrl>https://concord-example.my.salesforce.com/services/Soap/u/60.0</PartnerUrl>"
        f"{items}</notifications></soapenv:Body></soapenv:Envelope>"
    )


def outbound_event(body: str | None = None) -> dict[str, Any]:
    """The API Gateway event of an Outbound Message (the fixture's, or with ``body``)."""
    from tests.support.events import load_event

    event = load_event("salesforce_webhook/outbound_message")
    if body is not None:
        event["body"] = body
    return event


def graph_batch(count: int, *, client_state: str = CONTACTS_STATE, subscription: str = CONTACTS_SUB) -> str:
    """A Graph notification POST body with ``count`` contact updates."""
    values = [
        {
            "subscriptionId": subscription,
            "subscriptionExpirationDateTime": "2026-11-27T09:00:00.2257768+05:30",
            "changeType": "updated",
            "resource": f"Users/8c4b2a10/Contacts/AAMkContact{n:04d}=",
            "resourceData": {
                "@odata.type": "#Microsoft.Graph.Contact",
                "@odata.id": f"Users/8c4b2a10/Contacts/AAMkContact{n:04d}=",
                "@odata.etag": f'W/"EQAAABYAAA{n:04d}"',
                "id": f"AAMkContact{n:04d}=",
            },
            "clientState": client_state,
            "tenantId": "5d2c1b0a-9e8f-4d7c-8b6a-0123456789ab",
        }
        for n in range(count)
    ]
    return json.dumps({"value": values})


def assert_no_canary(*texts: str | None) -> None:
    for text in texts:
        if text:
            assert CANARY not in text, f"a secret leaked: {text[:300]!r}"
