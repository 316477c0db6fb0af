"""The cursor store's and the sync log's contracts, for the fakes and for DynamoDB Local alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from concord.adapters.stores import CursorConflict
from concord.ports import LogEntry

if TYPE_CHECKING:
    from concord.ports import LogStatus
    from tests.contract.conftest import Stores

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def test_cursors_are_saved_on_condition(stores: Stores) -> None:
    cursors = stores.cursors
    assert cursors.get("c1", "graph#contacts_delta#f1") is None
    cursors.put("c1", "graph#contacts_delta#f1", "link-1")
    cursors.put("org", "salesforce#system_modstamp#Contact", "2025-06-01T00:00:00Z")
    cursors.put("c1", "graph#contacts_delta#f1", "link-2", expected="link-1")
    with pytest.raises(CursorConflict):
        cursors.put("c1", "graph#contacts_delta#f1", "link-3", expected="link-1")
    with pytest.raises(CursorConflict):
        cursors.put("c2", "graph#contacts_delta#f1", "link-3", expected="link-1")

    assert cursors.get("c1", "graph#contacts_delta#f1") == "link-2"
    assert cursors.get("org", "salesforce#system_modstamp#Contact") == "2025-06-01T00:00:00Z"
    cursors.delete("c1", "graph#contacts_delta#f1")
    assert cursors.get("c1", "graph#contacts_delta#f1") is None


def entry(
    n: int, connection: str = "c1", status: LogStatus = "synced", record: str = "salesforce#Contact#0"
) -> LogEntry:
    return LogEntry(
        connection_id=connection,
        status=status,
        action="update",
        object_type="Contact",
        record_key=record,
        source="graph",
        reason=f"decision {n}",
        at=T0 + timedelta(seconds=n),
        salesforce_id="003A",
        mailbox_id=None,
        notice_id=f"n{n}",
        reasons=("email: mailbox changed",),
        details={"calls": n, "share": 0.25, "codes": ["X"]},
    )


def test_the_log_is_appended_in_bulk_and_read_newest_first(stores: Stores) -> None:
    before = stores.log.requests
    stores.log.append([entry(n) for n in range(60)])
    assert stores.log.requests - before == 3  # 25 a BatchWriteItem

    newest = stores.log.by_connection("c1", limit=10)
    assert [e.reason for e in newest] == [f"decision {n}" for n in range(59, 49, -1)]
    assert newest[0].entry_id
    assert newest[0].at == T0 + timedelta(seconds=59)
    assert newest[0].details == {"calls": 59, "share": 0.25, "codes": ["X"]}
    assert newest[0].reasons == ("email: mailbox changed",)
    assert len(stores.log.by_connection("c1", limit=100)) == 60
    assert stores.log.by_connection("c2") == []


def test_the_log_is_read_by_status_and_by_record(stores: Stores) -> None:
    stores.log.append(
        [
            entry(1, status="failed"),
            entry(2, connection="c2", status="failed", record="graph#contact#M1"),
            entry(3, status="held"),
            entry(4),
        ]
    )
    assert [e.reason for e in stores.log.by_status("failed")] == ["decision 2", "decision 1"]
    assert [e.reason for e in stores.log.by_status("held")] == ["decision 3"]
    assert [e.reason for e in stores.log.by_record("salesforce#Contact#0")] == [
        "decision 4",
        "decision 3",
        "decision 1",
    ]
    assert [e.connection_id for e in stores.log.by_record("graph#contact#M1")] == ["c2"]


def test_entries_keep_their_id_and_expire_after_the_ttl(stores: Stores) -> None:
    given = LogEntry(
        "c1", "skipped", "none", "Contact", "salesforce#Contact#0", "salesforce", "echo", T0, entry_id="E1"
    )
    stores.log.append([given])
    assert stores.log.by_connection("c1") == [given]
    assert stores.log_expiry("E1") == int(T0.timestamp()) + 30 * 24 * 3600
