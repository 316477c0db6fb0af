"""Enqueue one delivery's notices at most once, with Powertools idempotency on DynamoDB.

The idempotency key is the sorted list of the delivery's provider event ids (hashed by Powertools),
under a per-sender prefix: a redelivered request (Salesforce retries for 24 hours, Graph for 4, Pub/Sub
and EventBridge until acknowledged) finds the record of the first one and enqueues nothing again.
Records live :data:`IDEMPOTENCY_EXPIRY_S` (48 hours: Salesforce's 24-hour retry window, with margin).

Why per delivery and not per notification: one conditional write per delivery keeps a 100-notification
request to two DynamoDB calls. A notification that comes back inside a *differently composed* batch
passes, and that is harmless: a notice is a hint, it carries ``provider_event_id``, and the worker
re-reads the record. Within one delivery duplicates are removed by the parsers.

A failure while enqueuing deletes the in-progress record (Powertools does), so the sender's retry
runs in full: nothing is lost. A concurrent duplicate gets 409 and retries later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
)
from botocore.exceptions import BotoCoreError, ClientError

from concord.adapters.queue import EnqueueError
from concord.ingress.errors import Rejected

if TYPE_CHECKING:
    from collections.abc import Sequence

    from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
    from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord

    from concord.notices import ChangeNotice

__all__ = ["IDEMPOTENCY_EXPIRY_S", "Delivery", "Enqueuer", "NoticeSink"]

IDEMPOTENCY_EXPIRY_S = 48 * 3600


class NoticeSink(Protocol):
    """Where notices go (:class:`concord.adapters.queue.ChangeQueue`, or a fake in tests)."""

    def send(self, notices: Sequence[ChangeNotice], /) -> None: ...


@dataclass(frozen=True, slots=True)
class Delivery:
    """How many notices this delivery put on the queue (0 for a replay), and whether it was a replay."""

    enqueued: int
    replayed: bool


def _mark_replay(response: Any, idempotent_data: DataRecord) -> Any:
    return {**response, "replayed": True} if isinstance(response, dict) else response


class Enqueuer:
    """Sends a delivery's notices to the sink once per set of provider event ids."""

    def __init__(
        self,
        sink: NoticeSink,
        persistence: BasePersistenceLayer,
        *,
        key_prefix: str,
        expires_after_s: int = IDEMPOTENCY_EXPIRY_S,
    ) -> None:
        self.sink = sink
        self._config = IdempotencyConfig(
            event_key_jmespath="event_ids",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=expires_after_s,
            response_hook=_mark_replay,
        )
        self._once = idempotent_function(
            self._send,
            data_keyword_argument="delivery",
            persistence_store=persistence,
            config=self._config,
            key_prefix=key_prefix,
        )

    def _send(self, *, delivery: dict[str, Any], notices: Sequence[ChangeNotice]) -> dict[str, Any]:
        self.sink.send(notices)
        return {"enqueued": len(notices), "replayed": False}

    def enqueue(self, notices: Sequence[ChangeNotice], *, event_ids: Sequence[str], context: Any = None) -> Delivery:
        """Enqueue ``notices`` unless a delivery with the same ``event_ids`` already did.

        Raises ``Rejected(409)`` while an identical delivery is in progress and ``Rejected(503)`` when
        the queue or the idempotency table fails (the sender retries; nothing is half-recorded).
        """
        if not notices:
            return Delivery(enqueued=0, replayed=False)
        if context is not None:
            # Lets Powertools expire an in-progress record when this invocation times out.
            self._config.register_lambda_context(context)
        try:
            result = self._once(delivery={"event_ids": sorted(set(event_ids))}, notices=notices)
        except IdempotencyAlreadyInProgressError:
            raise Rejected(409, "the same delivery is being processed; retry later") from None
        except EnqueueError:
            raise Rejected(503, "change notices could not be enqueued; retry later") from None
        except (IdempotencyPersistenceLayerError, BotoCoreError, ClientError):
            raise Rejected(503, "temporarily unable to record or enqueue the delivery; retry later") from None
        if result.get("replayed", False):
            # The stored response holds the first delivery's count; this one put nothing on the queue,
            # and the log, the NoticesEnqueued metric and the answer report what happened now.
            return Delivery(enqueued=0, replayed=True)
        return Delivery(enqueued=int(result["enqueued"]), replayed=False)
