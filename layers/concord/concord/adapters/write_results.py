"""How a mailbox write's outcome, or the connector error it raised, becomes a :class:`WriteResult`.

Shared by the Graph and Google mailbox adapters, which word their calls differently but fail alike: a
delete of something already gone did what it meant to; a conflict (412, stale etag) is worth retrying
after the item is read again; throttling and 5xx are transient; anything else is permanent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from concord.adapters.http import ConflictError, ConnectorError, NotFoundError, TransientError
from concord.ports import WriteResult

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from concord.core import Operation

__all__ = ["failed_write", "made_write", "write_result"]


def write_result(
    op: Operation, write: Callable[[], Mapping[str, Any] | None], *, id_key: str, version_keys: tuple[str, ...]
) -> WriteResult:
    """Run ``write`` (the call that carries out ``op``) and describe what happened."""
    try:
        made = write()
    except ConnectorError as exc:
        return failed_write(op, exc)
    return made_write(op, made, id_key=id_key, version_keys=version_keys)


def made_write(
    op: Operation, made: Mapping[str, Any] | None, *, id_key: str, version_keys: tuple[str, ...]
) -> WriteResult:
    """A write that worked: the item's id and new version from what the service answered."""
    if made is None:
        return WriteResult(True, record_id=op.record_id)
    version = next((str(made[key]) for key in version_keys if made.get(key) is not None), None)
    return WriteResult(True, record_id=str(made.get(id_key) or op.record_id), version=version)


def failed_write(op: Operation, exc: ConnectorError) -> WriteResult:
    """A write that raised (or whose ``$batch`` answer carried) ``exc``."""
    if isinstance(exc, NotFoundError):
        if op.action == "delete":
            return WriteResult(True, record_id=op.record_id)  # already gone: what a delete wants
        return WriteResult(False, record_id=op.record_id, error=str(exc))
    if isinstance(exc, ConflictError):
        return WriteResult(False, record_id=op.record_id, error=f"changed meanwhile: {exc}", transient=True)
    if isinstance(exc, TransientError):
        return WriteResult(False, record_id=op.record_id, error=str(exc), transient=True, retry_after=exc.retry_after)
    return WriteResult(False, record_id=op.record_id, error=str(exc))
