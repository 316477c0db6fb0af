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

__all__ = ["write_result"]


def write_result(
    op: Operation, write: Callable[[], Mapping[str, Any] | None], *, id_key: str, version_keys: tuple[str, ...]
) -> WriteResult:
    """Run ``write`` (the call that carries out ``op``) and describe what happened."""
    try:
        made = write()
    except NotFoundError as exc:
        if op.action == "delete":
            return WriteResult(True, record_id=op.record_id)  # already gone: what a delete wants
        return WriteResult(False, record_id=op.record_id, error=str(exc))
    except ConflictError as exc:
        return WriteResult(False, record_id=op.record_id, error=f"changed meanwhile: {exc}", transient=True)
    except TransientError as exc:
        return WriteResult(False, record_id=op.record_id, error=str(exc), transient=True, retry_after=exc.retry_after)
    except ConnectorError as exc:
        return WriteResult(False, record_id=op.record_id, error=str(exc))
    if made is None:
        return WriteResult(True, record_id=op.record_id)
    version = next((str(made[key]) for key in version_keys if made.get(key) is not None), None)
    return WriteResult(True, record_id=str(made.get(id_key) or op.record_id), version=version)
