"""The stores under contract: every test here runs once against the in-memory fakes and once against
the pynamodb stores on DynamoDB Local (the ``aws`` fixture: fresh tables from template.yaml per test).

A test receives a :class:`Stores`: the four stores, the link store's clock, and how to read a sync-log
entry's TTL (the one thing the protocols do not expose).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from concord.adapters.memory import MemoryConnectionStore, MemoryCursorStore, MemoryLinkStore, MemorySyncLog
from concord.adapters.stores import (
    DynamoConnectionStore,
    DynamoCursorStore,
    DynamoDB,
    DynamoLinkStore,
    DynamoSyncLog,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from local.aws.stack import LocalStack

NOW = 1_750_000_000.0


@dataclass
class Clock:
    now: float = NOW

    def __call__(self) -> float:
        return self.now


@dataclass
class Stores:
    kind: str
    links: Any
    connections: Any
    cursors: Any
    log: Any
    clock: Clock
    log_expiry: Callable[[str], int | None]
    extra: dict[str, Any] = field(default_factory=dict)

    def new_links(self) -> Any:
        """A second link store on the same state (another worker)."""
        return self.extra["new_links"]()


def _memory() -> Stores:
    clock = Clock()
    links = MemoryLinkStore(clock=clock)
    log = MemorySyncLog()
    return Stores(
        "memory",
        links,
        MemoryConnectionStore(),
        MemoryCursorStore(),
        log,
        clock,
        log.expires_at.get,
        {"new_links": lambda: links},
    )


def _dynamodb(aws: LocalStack) -> Stores:
    clock = Clock()
    env = aws.env
    db = DynamoDB(host=env["AWS_ENDPOINT_URL_DYNAMODB"], region="us-east-1")
    raw = aws.client("dynamodb")

    def log_expiry(entry_id: str) -> int | None:
        items = raw.scan(
            TableName=env["SYNC_LOG_TABLE"],
            FilterExpression="entry_id = :id",
            ExpressionAttributeValues={":id": {"S": entry_id}},
        )["Items"]
        return int(items[0]["expires_at"]["N"]) if items else None

    def new_links() -> DynamoLinkStore:
        other = DynamoDB(host=env["AWS_ENDPOINT_URL_DYNAMODB"], region="us-east-1")
        return DynamoLinkStore(env["LINKS_TABLE"], dynamodb=other, clock=clock)

    return Stores(
        "dynamodb",
        DynamoLinkStore(env["LINKS_TABLE"], dynamodb=db, clock=clock),
        DynamoConnectionStore(env["CONNECTIONS_TABLE"], dynamodb=db),
        DynamoCursorStore(env["CURSORS_TABLE"], dynamodb=db),
        DynamoSyncLog(env["SYNC_LOG_TABLE"], dynamodb=db),
        clock,
        log_expiry,
        {"new_links": new_links, "raw": raw, "env": env},
    )


@pytest.fixture(params=["memory", "dynamodb"])
def stores(request: pytest.FixtureRequest) -> Stores:
    if request.param == "memory":
        return _memory()
    return _dynamodb(request.getfixturevalue("aws"))
