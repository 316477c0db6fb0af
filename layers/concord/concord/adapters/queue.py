"""ChangeQueue: puts change notices on the changes queue with SendMessageBatch.

Notices travel :data:`~concord.notices.NOTICES_PER_MESSAGE` to a message and up to 10 messages to a
SendMessageBatch call (within SQS's 256 KiB per call), so a 100-notice delivery is one call.

A notice is never dropped silently: entries SQS reports as failed are retried (with a short backoff)
and, if they still fail, :class:`EnqueueError` is raised naming them. The ingress functions turn that
into a 503, so the sender delivers again; notices of the same delivery that did go through are sent
again then, which is harmless: notices are hints and the worker is idempotent.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from concord.notices import NOTICES_PER_MESSAGE, encode_message

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from concord.notices import ChangeNotice

__all__ = ["BATCH_BYTES", "BATCH_SIZE", "ChangeQueue", "EnqueueError", "pack"]

BATCH_SIZE = 10  # SendMessageBatch's limit on entries
BATCH_BYTES = 256 * 1024  # SendMessageBatch's limit on the sum of the bodies (the classic one, to be safe)
_MAX_WORKERS = 10  # botocore's default connection pool holds 10 connections

Message = tuple[str, "Sequence[ChangeNotice]"]  # a body and the notices it carries


def pack(notices: Sequence[ChangeNotice]) -> list[list[Message]]:
    """Notices into messages of up to NOTICES_PER_MESSAGE, messages into SendMessageBatch-sized calls.

    In order, greedily: a call closes at 10 messages or before its bodies would pass BATCH_BYTES.
    """
    calls: list[list[Message]] = []
    call: list[Message] = []
    size = 0
    for start in range(0, len(notices), NOTICES_PER_MESSAGE):
        group = notices[start : start + NOTICES_PER_MESSAGE]
        body = encode_message(group)
        length = len(body.encode())
        if call and (len(call) == BATCH_SIZE or size + length > BATCH_BYTES):
            calls.append(call)
            call, size = [], 0
        call.append((body, group))
        size += length
    if call:
        calls.append(call)
    return calls


class EnqueueError(RuntimeError):
    """Some notices could not be enqueued. ``failures`` maps each one's notice id to SQS's error code."""

    def __init__(self, failures: dict[str, str]) -> None:
        self.failures = dict(failures)
        codes = ", ".join(sorted(set(self.failures.values())))
        super().__init__(f"{len(self.failures)} change notice(s) not enqueued ({codes})")


class ChangeQueue:
    """SendMessageBatch of packed notices (:func:`pack`), calls sent concurrently, failed entries retried.

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
        calls = pack(notices)
        if not calls:
            return
        if len(calls) == 1:
            results = [self._send_call(calls[0])]
        else:
            # Sequential round trips would dominate the webhook's answer time; calls are independent.
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=_MAX_WORKERS, thread_name_prefix="enqueue")
            results = list(self._pool.map(self._send_call, calls))
        failures: dict[str, str] = {}
        for result in results:
            failures.update(result)
        if failures:
            raise EnqueueError(failures)

    def _send_call(self, messages: list[Message]) -> dict[str, str]:
        """Send one SendMessageBatch, retrying failed entries; ``{notice id: error code}`` of what failed."""
        pending = {str(index): message for index, message in enumerate(messages)}
        errors: dict[str, str] = {}
        for attempt in range(self._attempts):
            if attempt:
                self._sleep(self._backoff_s * 2 ** (attempt - 1))
            answer = self.client.send_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": key, "MessageBody": body} for key, (body, _) in pending.items()],
            )
            retry: dict[str, Message] = {}
            for failed in answer.get("Failed", []):
                message = pending[failed["Id"]]
                errors[failed["Id"]] = str(failed.get("Code", "unknown"))
                if not failed.get("SenderFault", False):
                    retry[failed["Id"]] = message
            for done in answer.get("Successful", []):
                errors.pop(done["Id"], None)
            pending = retry
            if not pending:
                break
        return {notice.id: code for key, code in errors.items() for notice in messages[int(key)][1]}
