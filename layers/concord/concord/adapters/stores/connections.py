"""The connection store on the Connections table.

- ``pk = CONN#<connection_id>``, ``sk = META``: the connection. ``options`` is the JSON of
  :class:`ConnectionOptions` (rebuilt exactly, floats included); ``health`` a map, so that
  :meth:`update_health` merges keys with one UpdateItem. ``mailbox_user_key`` (``<provider>#<user>``,
  lower-cased) feeds ``by_mailbox_user``; ``salesforce_user_id`` feeds ``by_salesforce_user``;
  ``status`` feeds ``by_status``.
- ``sk = DELETES#<kind>``: the rolling window of planned deletes, one number attribute per minute
  (``m<epoch minute>``). :meth:`record_deletes` is one UpdateItem that ``ADD``s to the current minute
  and returns the whole item (``ALL_NEW``), summed over the window in the function; minutes older than
  the window are removed by a second UpdateItem only when there are any (once a minute at most while
  deletes go on). A per-minute item with a TTL would cost a write and a Query per call and leave
  expired items until DynamoDB's TTL sweep (up to days); a list of (time, count) pairs could not be
  pruned safely by two writers at once. The window is rounded outward to whole minutes; callers use
  one window per kind (a shorter window prunes what a longer one would have counted).
"""

# pynamodb leaves Index.__init_subclass__ and MapAttribute unannotated; the models below must use them.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, cast

from pynamodb.attributes import MapAttribute, UnicodeAttribute
from pynamodb.exceptions import UpdateError
from pynamodb.expressions.operand import Path, Value
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from concord.adapters.stores import codec
from concord.adapters.stores._base import DynamoDB, default_dynamodb
from concord.ports import Connection

if TYPE_CHECKING:
    import builtins
    from collections.abc import Iterable
    from datetime import datetime

    from concord.core import ObjectKind
    from concord.core.mapping import Provider
    from concord.ports import ConnectionStatus

__all__ = ["ConnectionItem", "DynamoConnectionStore"]

META = "META"


class BySalesforceUser(GlobalSecondaryIndex["ConnectionItem"]):
    class Meta:
        index_name = "by_salesforce_user"
        projection = AllProjection()

    salesforce_user_id = UnicodeAttribute(hash_key=True)
    pk = UnicodeAttribute(range_key=True)


class ByMailboxUser(GlobalSecondaryIndex["ConnectionItem"]):
    class Meta:
        index_name = "by_mailbox_user"
        projection = AllProjection()

    mailbox_user_key = UnicodeAttribute(hash_key=True)


class ByStatus(GlobalSecondaryIndex["ConnectionItem"]):
    class Meta:
        index_name = "by_status"
        projection = AllProjection()

    status = UnicodeAttribute(hash_key=True)
    pk = UnicodeAttribute(range_key=True)


class ConnectionItem(Model):
    class Meta:
        table_name = "unbound"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    connection_id = UnicodeAttribute(null=True)
    provider = UnicodeAttribute(null=True)
    mailbox_user = UnicodeAttribute(null=True)
    mailbox_user_key = UnicodeAttribute(null=True)
    salesforce_user_id = UnicodeAttribute(null=True)
    options = UnicodeAttribute(null=True)
    status = UnicodeAttribute(null=True)
    status_reason = UnicodeAttribute(null=True)
    health: MapAttribute[str, Any] = MapAttribute(null=True)

    by_salesforce_user = BySalesforceUser()
    by_mailbox_user = ByMailboxUser()
    by_status = ByStatus()


class DynamoConnectionStore:
    """:class:`concord.ports.ConnectionStore` on the Connections table (layout in the module docstring).

    ``set_status`` and ``update_health`` raise :class:`KeyError` for a connection that does not exist
    (they never create half a connection). ``requests`` counts the DynamoDB API calls this store sent."""

    def __init__(self, table_name: str, *, dynamodb: DynamoDB | None = None) -> None:
        self.table_name = table_name
        self.dynamodb = dynamodb or default_dynamodb()
        self.model = self.dynamodb.bind(ConnectionItem, table_name)

    @property
    def requests(self) -> int:
        return self.dynamodb.requests_to(self.table_name)

    # ------------------------------------------------------------------ reads

    def get(self, connection_id: str) -> Connection | None:
        try:
            return _connection(self.model.get(codec.connection_pk(connection_id), META, consistent_read=True))
        except self.model.DoesNotExist:
            return None

    def get_many(self, connection_ids: Iterable[str]) -> dict[str, Connection]:
        keys = {(codec.connection_pk(cid), META) for cid in connection_ids}
        if not keys:
            return {}
        found = (_connection(item) for item in self.model.batch_get(list(keys), consistent_read=True))
        return {c.connection_id: c for c in found}

    def by_salesforce_user(self, salesforce_user_ids: Iterable[str]) -> dict[str, builtins.list[Connection]]:
        """One Query on ``by_salesforce_user`` per distinct user (a batch's records have few owners)."""
        found: dict[str, builtins.list[Connection]] = {}
        for user in sorted(set(salesforce_user_ids)):
            connections = [_connection(item) for item in self.model.by_salesforce_user.query(user)]
            if connections:
                found[user] = connections
        return found

    def by_mailbox_user(self, provider: str, mailbox_user: str) -> Connection | None:
        key = codec.mailbox_user_key(provider, mailbox_user)
        for item in self.model.by_mailbox_user.query(key, limit=1):
            return _connection(item)
        return None

    def list(self, status: ConnectionStatus | None = None) -> builtins.list[Connection]:
        query = self.model.by_status.query
        items = query(status) if status is not None else self.model.scan(self.model.sk == META)
        return sorted((_connection(item) for item in items), key=lambda c: c.connection_id)

    # ------------------------------------------------------------------ writes

    def put(self, connection: Connection) -> None:
        self.model(
            codec.connection_pk(connection.connection_id),
            META,
            connection_id=connection.connection_id,
            provider=connection.provider,
            mailbox_user=connection.mailbox_user,
            mailbox_user_key=codec.mailbox_user_key(connection.provider, connection.mailbox_user),
            salesforce_user_id=connection.salesforce_user_id,
            options=json.dumps(codec.options_to_dict(connection.options), separators=(",", ":")),
            status=connection.status,
            health={str(k): codec.health_value(v) for k, v in connection.health.items()},
        ).save()

    def set_status(self, connection_id: str, status: ConnectionStatus, reason: str | None = None) -> None:
        model = self.model
        actions = [model.status.set(status)]
        actions.append(model.status_reason.set(reason) if reason is not None else model.status_reason.remove())
        self._update(connection_id, actions)

    def update_health(self, connection_id: str, **health: Any) -> None:
        if not health:
            return
        model = self.model
        # Each value serialised as a map attribute's member would be (None, numbers, lists, maps).
        serialised = MapAttribute[str, Any]().serialize({k: codec.health_value(v) for k, v in health.items()})
        self._update(connection_id, [model.health[k].set(Value(v)) for k, v in serialised.items()])

    def record_deletes(self, connection_id: str, kind: ObjectKind, count: int, now: datetime, window_s: int) -> int:
        table = self.model._get_connection()
        pk, sk = codec.connection_pk(connection_id), codec.deletes_sk(kind)
        if count:
            bucket = codec.delete_bucket(now)
            answer = table.update_item(
                pk, range_key=sk, actions=[Path(bucket).add(Value(count))], return_values="ALL_NEW"
            )
            item = answer.get("Attributes", {})
        else:
            item = table.get_item(pk, range_key=sk, consistent_read=True).get("Item", {})
        buckets = {name: int(value["N"]) for name, value in item.items() if codec.is_bucket(name)}
        total, stale = codec.window_split(buckets, now, window_s)
        if stale and count:
            table.update_item(pk, range_key=sk, actions=[Path(name).remove() for name in stale])
        return total

    def _update(self, connection_id: str, actions: builtins.list[Any]) -> None:
        model = self.model
        try:
            model(codec.connection_pk(connection_id), META).update(actions, condition=model.pk.exists())
        except UpdateError as error:
            if error.cause_response_code == "ConditionalCheckFailedException":
                raise KeyError(connection_id) from None
            raise


def _connection(item: ConnectionItem) -> Connection:
    health = item.health.as_dict() if item.health is not None else {}
    return Connection(
        connection_id=str(item.connection_id),
        provider=cast("Provider", item.provider),
        mailbox_user=str(item.mailbox_user),
        salesforce_user_id=str(item.salesforce_user_id),
        options=codec.options_from_dict(json.loads(item.options or "{}")),
        status=cast("ConnectionStatus", item.status),
        health=health,
    )
