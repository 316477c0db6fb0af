"""The DynamoDB stores (pynamodb), one per table the worker keeps state in.

Build them from the table names the settings hold; they share one connection per process
(:func:`default_dynamodb`) unless given one::

    db = DynamoDB(host=endpoint)          # None: botocore's endpoint (honours AWS_ENDPOINT_URL_DYNAMODB)
    links = DynamoLinkStore(settings.links_table, dynamodb=db)
    db.requests                            # every DynamoDB API call sent; links.requests: those to its table

Their in-memory fakes are in :mod:`concord.adapters.memory`; ``tests/contract`` runs one suite against both.
"""

from concord.adapters.stores._base import DynamoDB, default_dynamodb
from concord.adapters.stores.codec import CursorConflict
from concord.adapters.stores.connections import DynamoConnectionStore
from concord.adapters.stores.cursors import DynamoCursorStore
from concord.adapters.stores.links import DynamoLinkStore
from concord.adapters.stores.synclog import DynamoSyncLog

__all__ = [
    "CursorConflict",
    "DynamoConnectionStore",
    "DynamoCursorStore",
    "DynamoDB",
    "DynamoLinkStore",
    "DynamoSyncLog",
    "default_dynamodb",
]
