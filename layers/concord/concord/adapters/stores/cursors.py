"""The cursor store on the Cursors table: ``pk = CONN#<connection_id>`` (``ORG`` for the org scope),
``sk = CURSOR#<name>`` (e.g. ``graph#contacts_delta#<folder>``), ``value``. Cursors never expire."""

from __future__ import annotations

from pynamodb.attributes import UnicodeAttribute
from pynamodb.exceptions import PutError
from pynamodb.models import Model

from concord.adapters.stores import codec
from concord.adapters.stores._base import DynamoDB, default_dynamodb
from concord.adapters.stores.codec import CursorConflict

__all__ = ["CursorItem", "DynamoCursorStore"]


class CursorItem(Model):
    class Meta:
        table_name = "unbound"

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    value = UnicodeAttribute()


class DynamoCursorStore:
    """:class:`concord.ports.CursorStore`; ``requests`` counts the DynamoDB API calls this store sent."""

    def __init__(self, table_name: str, *, dynamodb: DynamoDB | None = None) -> None:
        self.table_name = table_name
        self.dynamodb = dynamodb or default_dynamodb()
        self.model = self.dynamodb.bind(CursorItem, table_name)

    @property
    def requests(self) -> int:
        return self.dynamodb.requests_to(self.table_name)

    def get(self, scope: str, name: str) -> str | None:
        try:
            return self.model.get(codec.cursor_pk(scope), codec.cursor_sk(name), consistent_read=True).value
        except self.model.DoesNotExist:
            return None

    def put(self, scope: str, name: str, value: str, *, expected: str | None = None) -> None:
        item = self.model(codec.cursor_pk(scope), codec.cursor_sk(name), value=value)
        try:
            item.save(condition=self.model.value == expected if expected is not None else None)
        except PutError as error:
            if error.cause_response_code == "ConditionalCheckFailedException":
                raise CursorConflict(scope, name) from None
            raise

    def delete(self, scope: str, name: str) -> None:
        self.model(codec.cursor_pk(scope), codec.cursor_sk(name)).delete()
