"""`make run`'s decision lines: each sync-log entry told once, oldest first, in one readable line,
read from the SyncLog table in DynamoDB Local as the running feed reads it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from concord.adapters.stores import DynamoDB, DynamoSyncLog
from concord.ports import LogEntry
from local.aws.provision import REGION
from local.run import DecisionFeed, decision_line

if TYPE_CHECKING:
    from concord.ports import LogStatus
    from local.aws.stack import LocalStack

GRAPH_ID = "AAMkAGI2Z4mFb0DkyAKNfg9iM7Rk7woBPOsIfucdPdm07mwJ"
T0 = datetime(2026, 12, 4, 11, 2, 3, tzinfo=UTC)


def _entry(
    status: LogStatus,
    record: str,
    at: datetime,
    *,
    source: str = "graph",
    reason: str = "link contact (new): matched existing records → link",
    salesforce_id: str | None = None,
    mailbox_id: str | None = None,
) -> LogEntry:
    return LogEntry(
        connection_id="conn-m365",
        status=status,
        action="link",
        object_type="contact",
        record_key=f"{source}#contact#{record}",
        source=source,
        reason=reason,
        at=at,
        salesforce_id=salesforce_id,
        mailbox_id=mailbox_id,
    )


def _log(aws: LocalStack) -> DynamoSyncLog:
    return DynamoSyncLog(aws.env["SYNC_LOG_TABLE"], dynamodb=DynamoDB(aws.dynamodb.url, region=REGION))


def test_a_decision_is_one_line_with_its_time_status_record_pair_and_reason() -> None:
    entry = _entry("synced", GRAPH_ID, T0, salesforce_id="0035g0000000002AAA")

    line = decision_line(entry)

    when = T0.astimezone().strftime("%H:%M:%S")
    assert line == (
        f"{when} synced  contact conn-m365   graph AAMkAG…Pdm07mwJ ↔ 0035g0000000002AAA: "
        "link contact (new): matched existing records → link"
    )


def test_long_mailbox_ids_are_shortened_in_the_reason_too_and_salesforce_ids_stay_whole() -> None:
    entry = _entry(
        "failed",
        "0035g0000000002AAA",
        T0,
        source="salesforce",
        reason=f"mailbox update contact {GRAPH_ID}: will retry",
        mailbox_id=GRAPH_ID,
    )

    line = decision_line(entry)

    assert "salesforce 0035g0000000002AAA ↔ AAMkAG…Pdm07mwJ: mailbox update contact AAMkAG…Pdm07mwJ: will retry" in line
    assert "\n" not in line


def test_the_feed_tells_each_new_entry_once_oldest_first_across_statuses(aws: LocalStack) -> None:
    log = _log(aws)
    told: list[str] = []
    feed = DecisionFeed(log, told.append)
    log.append([_entry("skipped", "b", T0 + timedelta(seconds=2)), _entry("synced", "a", T0)])

    assert feed.poll() == 2
    assert feed.poll() == 0  # nothing new: nothing told again

    # an entry decided earlier but written later (a slower batch) is still told
    log.append([_entry("held", "c", T0 + timedelta(seconds=1)), _entry("synced", "d", T0 + timedelta(seconds=3))])
    assert feed.poll() == 2
    records = [line.split(" graph ")[1].split(":")[0] for line in told]
    assert records == ["a", "b", "c", "d"]


def test_more_new_entries_than_the_window_say_that_some_are_not_shown(aws: LocalStack) -> None:
    log = _log(aws)
    told: list[str] = []
    feed = DecisionFeed(log, told.append, window=3)
    log.append([_entry("synced", str(n), T0 + timedelta(seconds=n)) for n in range(5)])

    feed.poll()

    assert told[0] == "concord: more than 3 synced decisions at once; the oldest are not shown"
    assert [line.split(" graph ")[1].split(":")[0] for line in told[1:]] == ["2", "3", "4"]
