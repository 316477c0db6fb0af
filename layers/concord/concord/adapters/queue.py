"""ChangeQueue: puts change notices on the changes queue with SendMessageBatch.

A notice is never dropped silently: entries SQS reports as failed are retried (with a short backoff)
and, if they still fail, :class:`EnqueueError` is raised naming them. The ingress functions turn that
into a 503, so the sender delivers again; notices of the same delivery that did go through are sent
again then, which is harmless: notices are hints and the worker is idempotent.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from concord.notices import ChangeNotice

__all__ = ["BATCH_SIZE", "ChangeQueue", "EnqueueError"]

BATCH_SIZE = 10  # SendMessageBatch's limit on entries
_MAX_WORKERS = 10  # botocore's default connection pool holds 10 connections


class EnqueueError(RuntimeError):
    """Some notices could not be enqueued. ``failures`` maps each one's notice id to SQS's error code."""

    def __init__(self, failures: dict[str, str]) -> None:
        self.failures = dict(failures)
        codes = ", ".join(sorted(set(self.failures.values())))
        super().__init__(f"{len(self.failures)} change notice(s) not enqueued ({codes})")


class ChangeQueue:
    """SendMessageBatch in chunks of 10, chunks sent concurrently, failed entries retried.

    ``client`` is a boto3 SQS client (made on first use if not given). ``attempts`` counts the sends of
    one entry, the first included; only entries SQS does not blame on the sender are retried.
    """

    def __init__(
        self,
        queue_url: str,
        client: Any | None = None,
        *,
        attempts: int = 3,
        backoff_s: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.queue_url = queue_url
        self._client = client
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._pool: ThreadPoolExecutor | None = None

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("sqs")
        return self._client

    def send(self, notices: Sequence[ChangeNotice]) -> None:
        """Enqueue every notice, or raise :class:`EnqueueError` naming those that could not be."""
        chunks = [notices[i : i + BATCH_SIZE] for i in range(0, len(notices), BATCH_SIZE)]
        if not chunks:
            return
        if len(chunks) == 1:
            results = [self._send_chunk(chunks[0])]
        else:
            # Ten sequential round trips would dominate the webhook's answer time; chunks are independent.
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=_MAX_WORKERS, thread_name_prefix="enqueue")
            results = list(self._pool.map(self._send_chunk, chunks))
        failures: dict[str, str] = {}
        for result in results:
            failures.update(result)
        if failures:
            raise EnqueueError(failures)

    def _send_chunk(self, chunk: Sequence[ChangeNotice]) -> dict[str, str]:
        pending = {str(index): notice for index, notice in enumerate(chunk)}
        errors: dict[str, str] = {}
        for attempt in range(self._attempts):
            if attempt:
                self._sleep(self._backoff_s * 2 ** (attempt - 1))
            answer = self.client.send_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": key, "MessageBody": notice.to_message()} for key, notice in pending.items()],
            )
            retry: dict[str, ChangeNotice] = {}
            for failed in answer.get("Failed", []):
                notice = pending[failed["Id"]]
                errors[notice.id] = str(failed.get("Code", "unknown"))
                if not failed.get("SenderFault", False):
                    retry[failed["Id"]] = notice
            for done in answer.get("Successful", []):
                errors.pop(pending[done["Id"]].id, None)
            pending = retry
            if not pending:
                break
        return errors
