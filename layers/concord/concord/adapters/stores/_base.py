"""One DynamoDB connection per process, shared by the stores, counting the requests it sends.

pynamodb binds a model class to a table through ``Meta.table_name`` and opens one botocore client per
model class. The stores build their model classes per table name (so one process can use any table
names), and :class:`DynamoDB` points all of them at one connection: one client to create at cold start
instead of four, and one place that counts requests (the worker reports DynamoDB requests per change).
"""

from __future__ import annotations

import threading
from collections import Counter
from functools import cache
from typing import TYPE_CHECKING, Any, cast

from pynamodb.connection import Connection

if TYPE_CHECKING:
    from pynamodb.models import Model

__all__ = ["DynamoDB", "default_dynamodb"]


class _CountingConnection(Connection):
    """pynamodb's connection, counting every API call (a paginated query or a batch's retry of
    unprocessed keys counts once per call) per table it touches."""

    def __init__(self, counts: Counter[str], lock: threading.Lock, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._counts = counts
        self._count_lock = lock

    def dispatch(self, operation_name: str, operation_kwargs: dict[str, Any]) -> dict[str, Any]:
        tables: set[str] = set()
        if "TableName" in operation_kwargs:
            tables.add(operation_kwargs["TableName"])
        tables.update(operation_kwargs.get("RequestItems", {}))
        for item in operation_kwargs.get("TransactItems", []):
            tables.update(action["TableName"] for action in item.values())
        with self._count_lock:
            self._counts["*"] += 1
            for table in tables:
                self._counts[table] += 1
        result: dict[str, Any] = super().dispatch(operation_name, operation_kwargs)
        return result


class DynamoDB:
    """A DynamoDB endpoint (``host``: ``None`` lets botocore choose, which honours
    ``AWS_ENDPOINT_URL_DYNAMODB``) and the requests sent to it.

    ``requests`` is the number of API calls sent so far; :meth:`requests_to` counts those touching one
    table (what each store's ``requests`` reports)."""

    def __init__(self, host: str | None = None, region: str | None = None) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.connection = _CountingConnection(self._counts, self._lock, host=host, region=region)

    @property
    def requests(self) -> int:
        return self._counts["*"]

    def requests_to(self, table_name: str) -> int:
        return self._counts[table_name]

    def bind[M: Model](self, base: type[M], table_name: str) -> type[M]:
        """A subclass of ``base`` on ``table_name``, sending its requests through this connection."""
        meta = {"table_name": table_name, "host": self.connection.host, "region": self.connection.region}
        namespace = {"Meta": type("Meta", (), meta), "__module__": base.__module__}
        model = cast("type[M]", type(f"{base.__name__}_{table_name}", (base,), namespace))
        table = model._get_connection()
        # The table connection pynamodb made holds the table's key schema; hand it to the shared
        # connection and route the model through that one.
        # Two stores on one table (two services in one process) share the schema already added.
        if table_name not in self.connection._tables:
            self.connection.add_meta_table(table.get_meta_table())
        table.connection = self.connection
        return model


@cache
def default_dynamodb() -> DynamoDB:
    """The process's shared connection (botocore resolves the endpoint, region and credentials)."""
    return DynamoDB()
