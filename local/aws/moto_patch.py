"""A small patch of moto's SQS hot paths, applied before the moto server serves.

Unpatched, every SQS call costs time in proportion to the queue's depth: each send rebuilds every
queue attribute (three scans of all messages, each reading the clock per message, just to look up
``ContentBasedDeduplication``), each receive scans with two clock reads per message, and each
delete scans every message and rebuilds the list. With thousands of messages queued that made the
local stack, not Concord, the thing every benchmark measured (a send batch took 1.2 s at 2,600).

The patch keeps moto's behaviour and changes only the cost:
- during a send or a receive, the three approximate message counts answer 0 without scanning: those
  calls build the attribute dictionary only to read a configured attribute
  (``ContentBasedDeduplication``, ``MessageRetentionPeriod``) and never report the counts; a
  GetQueueAttributes call is unaffected;
- ``Queue.messages`` reads the clock once per scan instead of twice per message;
- ``Queue.delete_message`` finds the message in one pass that stops at the first match;
- ``camelcase_to_underscores`` (a pure string function SQS's models call 14 times per sent message
  to build the attribute dictionary) is memoised for the SQS models: it was half of a send's cost;
- ``list_of_moto_modules`` (which the server's host dispatch calls on every request, listing moto's
  package directory and stat-ing each entry) is listed once: the installed package does not change.

moto is pinned (the dev dependency group in pyproject.toml). :data:`PATCHED_SOURCES` holds a hash of each upstream
function the patch replaces or relies on; ``tests/integration/test_moto_patch.py`` fails when an
upgrade changes any of them, so the patch is re-read rather than silently wrong.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import threading
from typing import Any

import moto
from moto import backends
from moto.core import utils
from moto.core.utils import unix_time_millis
from moto.sqs import models

PINNED_MOTO = "5.2.5"

# sha256 of inspect.getsource() of each upstream piece, as of PINNED_MOTO.
PATCHED_SOURCES = {
    "Queue.attributes": "40cb990b121628d535cecbcd0e0d333984024633b70a097489ae8611e1a59338",
    "Queue.approximate_number_of_messages": "d357a9506a56d2f8f9f364aa1e0a4739182106db6dbcede0e0699c00d1406eec",
    "Queue.approximate_number_of_messages_delayed": "c3c1dadb0c42ed5f8f5e1fddc8384de67db2df9a4055504f10903bd0b55e8d2f",
    "Queue.approximate_number_of_messages_not_visible": "5dbecc4dda174358d2aefa96e4b769def47fd6bb2c315241c451e8518c3fabab",
    "Queue.messages": "03a531dbcbcf9aee2e61c7254c08946a499f5c57f2447a8f2e534aa85b067dea",
    "Queue.delete_message": "fa6fd5b9bd2cafb4aaacd79da7fc656e513e1513197c2939ff002f9ebfd4be46",
    "SQSBackend.send_message": "bf161af09a9e6b860e3dd5d8f58ccc802623caa86883fab9b2ffb333f8f70330",
    "SQSBackend.receive_message": "065f3e5e7d2144089ce3b5d16d9306243ccd2f3ee11b44beb851292fadb7652f",
    "SQSBackend.get_queue_attributes": "58417223da457b5a0aac5ccc31b6646ed9b22c3b276a0f0d9fd5f3f13bd797ec",
    "SQSBackend.is_message_valid_based_on_retention_period": "cca23b94a5f3af9d9c5af1c09ee5e615017bdf6bd032301cb321c06c7e595d4b",
    "Message.visible": "5129b573308de62a700c40541df76673710ff2303258839ac66990eb56f27f27",
    "Message.delayed": "e2fd48abf582683aa4630cbd95daef06deb9f6de33e002a89f8c3d8a3f334838",
    "Message.had_receipt_handle": "31a347382a7315b72cefcd67fb5cf3c794406542cd3bbe1f4a1d0eb0fb014f91",
    "camelcase_to_underscores": "084cdc5bab92db95a0ebd8d554c70b212a057d35825b08ca3b80b202d4965eb3",
    "list_of_moto_modules": "4f741a10b06500e840c3aaa1b4f02706e6f2bfbababc0e8a2a7b9c9d0e8957dc",
}

_busy = threading.local()  # set while a send or receive runs in this thread


def upstream_source_hashes() -> dict[str, str]:
    """Hash the upstream pieces as they are in the installed moto (before or after patching)."""
    originals = getattr(models, "_concord_originals", None) or _current_pieces()
    return {name: hashlib.sha256(inspect.getsource(obj).encode()).hexdigest() for name, obj in originals.items()}


_COUNTS = (
    "approximate_number_of_messages",
    "approximate_number_of_messages_delayed",
    "approximate_number_of_messages_not_visible",
)


def _current_pieces() -> dict[str, Any]:
    return {
        "Queue.attributes": models.Queue.attributes.fget,
        **{f"Queue.{name}": getattr(models.Queue, name).fget for name in _COUNTS},
        "Queue.messages": models.Queue.messages.fget,
        "Queue.delete_message": models.Queue.delete_message,
        "SQSBackend.send_message": models.SQSBackend.send_message,
        "SQSBackend.receive_message": models.SQSBackend.receive_message,
        "SQSBackend.get_queue_attributes": models.SQSBackend.get_queue_attributes,
        "SQSBackend.is_message_valid_based_on_retention_period": (
            models.SQSBackend.is_message_valid_based_on_retention_period
        ),
        "Message.visible": models.Message.visible.fget,
        "Message.delayed": models.Message.delayed.fget,
        "Message.had_receipt_handle": models.Message.had_receipt_handle,
        "camelcase_to_underscores": utils.camelcase_to_underscores,
        "list_of_moto_modules": backends.list_of_moto_modules,
    }


def check_upstream() -> list[str]:
    """Names of the upstream pieces that differ from what the patch was written against."""
    problems = [f"moto {moto.__version__} installed, patch written for {PINNED_MOTO}"] * (
        moto.__version__ != PINNED_MOTO
    )
    actual = upstream_source_hashes()
    problems += [name for name, digest in PATCHED_SOURCES.items() if actual.get(name) != digest]
    return problems


def apply() -> None:
    """Patch moto's SQS models in this process. Idempotent."""
    if getattr(models, "_concord_originals", None):
        return
    originals = _current_pieces()
    models._concord_originals = originals  # remembered for the guard test

    def without_counts(call: Any) -> Any:
        def wrapped(self: models.SQSBackend, *args: Any, **kwargs: Any) -> Any:
            _busy.active = True
            try:
                return call(self, *args, **kwargs)
            finally:
                _busy.active = False

        return wrapped

    def count(original: Any) -> property:
        return property(lambda queue: 0 if getattr(_busy, "active", False) else original(queue))

    def messages(queue: models.Queue) -> list[models.Message]:
        now = unix_time_millis()
        return [m for m in queue._messages if now > m.visible_at and not now < m.delayed_until]

    def delete_message(queue: models.Queue, receipt_handle: str) -> None:
        if receipt_handle in queue.deleted_messages:
            return  # deleting twice is allowed, as in moto and SQS
        for index, message in enumerate(queue._messages):
            if message.receipt_handle == receipt_handle or receipt_handle in message._old_receipt_handles:
                queue.pending_messages.discard(message)
                queue.deleted_messages.update(message.all_receipt_handles)
                del queue._messages[index]
                return
        raise models.ReceiptHandleIsInvalid()

    for name in _COUNTS:
        setattr(models.Queue, name, count(originals[f"Queue.{name}"]))
    models.Queue.messages = property(messages)
    models.Queue.delete_message = delete_message
    models.SQSBackend.send_message = without_counts(originals["SQSBackend.send_message"])
    models.SQSBackend.receive_message = without_counts(originals["SQSBackend.receive_message"])
    models.camelcase_to_underscores = functools.cache(originals["camelcase_to_underscores"])
    module_names = tuple(originals["list_of_moto_modules"]())
    backends.list_of_moto_modules = lambda: module_names
