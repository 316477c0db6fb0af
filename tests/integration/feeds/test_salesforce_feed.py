"""SalesforceFeed over HTTP against the Salesforce sandbox: the org-wide watermark query (``queryAll``,
owners in chunks) and the records a user owns within the connection's event window."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from concord.adapters.feeds import OWNERS_PER_QUERY
from concord.core import ConnectionOptions

if TYPE_CHECKING:
    from concord.adapters.feeds import SalesforceFeed
    from concord.adapters.salesforce import SalesforceClient
    from local.sandboxes.salesforce import SalesforceSandbox

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def next_second() -> datetime:
    """The start of the next wall-clock second: Salesforce stamps hold whole seconds, so a watermark taken
    this way is after everything stamped before it and at or before everything stamped after."""
    time.sleep(1 - time.time() % 1 + 0.01)
    return datetime.now(UTC).replace(microsecond=0)


def other_owner(sandbox: SalesforceSandbox) -> str:
    return sandbox.insert("User", Username="other@concord.example", LastName="Other", Email="other@concord.example")


def ids(client: SalesforceClient, soql: str) -> list[str]:
    return [str(r["Id"]) for r in client.query(soql)]


def test_changed_since_finds_updates_and_deletes_of_the_owners_only(
    salesforce_feed: SalesforceFeed, salesforce_client: SalesforceClient, salesforce: SalesforceSandbox
) -> None:
    me, other = salesforce.user_id, other_owner(salesforce)
    edited, gone, untouched = ids(salesforce_client, "SELECT Id FROM Contact ORDER BY Id")[:3]
    since = next_second()
    salesforce_client.update("Contact", [{"Id": edited, "Title": "Changed"}])
    salesforce_client.delete([gone])
    theirs = salesforce.insert("Contact", LastName="Theirs", OwnerId=other)

    mine = salesforce_feed.changed_since("Contact", since, [me])
    others = salesforce_feed.changed_since("Contact", since, [other])

    by_id = {c.record_id: c for c in mine}
    assert set(by_id) == {edited, gone}  # neither the untouched one nor the other owner's
    assert by_id[gone].deleted and not by_id[edited].deleted
    stamp = next(salesforce_client.query(f"SELECT SystemModstamp FROM Contact WHERE Id = '{edited}'"))
    assert by_id[edited].version == stamp["SystemModstamp"]
    assert [c.record_id for c in others] == [theirs]
    assert untouched not in by_id


def test_changed_since_makes_one_query_per_chunk_of_owners(
    salesforce_feed: SalesforceFeed, salesforce_client: SalesforceClient, salesforce: SalesforceSandbox
) -> None:
    since = next_second()
    salesforce.insert("Contact", LastName="Recent")
    strangers = [f"005{n:012d}AAA" for n in range(OWNERS_PER_QUERY)]
    salesforce_feed.changed_since("Contact", since, [salesforce.user_id])  # logs in first
    calls = salesforce_feed.calls()

    found = salesforce_feed.changed_since("Contact", since, [*strangers, salesforce.user_id, *strangers])

    assert salesforce_feed.calls() - calls == 2  # 301 distinct owners (601 given): 300 + 1
    assert len(found) == 1
    calls = salesforce_feed.calls()
    assert salesforce_feed.changed_since("Contact", since, []) == []
    assert salesforce_feed.calls() == calls


def test_owner_ids_are_escaped(salesforce_feed: SalesforceFeed, salesforce: SalesforceSandbox) -> None:
    since = next_second()
    salesforce.insert("Contact", LastName="Recent")

    assert salesforce_feed.changed_since("Contact", since, ["x' OR OwnerId != 'x"]) == []
    options = ConnectionOptions()
    assert salesforce_feed.owned("Contact", "x' OR OwnerId != 'x", NOW, options) == []


def test_owned_respects_the_event_window(salesforce_feed: SalesforceFeed, salesforce: SalesforceSandbox) -> None:
    me = salesforce.user_id
    salesforce.insert(
        "Event",
        Subject="Theirs",
        StartDateTime="2026-12-03T10:00:00Z",
        EndDateTime="2026-12-03T11:00:00Z",
        OwnerId=other_owner(salesforce),
    )

    def subjects(**window: int | None) -> set[str]:
        owned = salesforce_feed.owned("Event", me, NOW, ConnectionOptions(**window))  # type: ignore[arg-type]
        return {salesforce.records[c.record_id]["Subject"] for c in owned}

    everything = {"Quarterly review", "Engine demo", "Kernel roadmap"}
    assert subjects() == everything  # 30 days back, 365 ahead
    assert subjects(event_window_past_days=None, event_window_future_days=None) == everything
    # 2026-12-02T12:00Z .. 2026-12-04T12:00Z: the demo ended at 11:30 on the 2nd
    assert subjects(event_window_past_days=1, event_window_future_days=1) == {"Kernel roadmap"}
    assert subjects(event_window_past_days=None, event_window_future_days=0) == {"Quarterly review", "Engine demo"}
    assert subjects(event_window_past_days=0, event_window_future_days=None) == {"Kernel roadmap"}


def test_owned_lists_live_records_and_leaves_converted_leads_out(
    salesforce_feed: SalesforceFeed, salesforce_client: SalesforceClient, salesforce: SalesforceSandbox
) -> None:
    me, options = salesforce.user_id, ConnectionOptions()
    contacts = ids(salesforce_client, "SELECT Id FROM Contact")
    leads = ids(salesforce_client, "SELECT Id FROM Lead")
    assert contacts and leads
    salesforce_client.delete([contacts[0]])
    salesforce.convert_lead(leads[0])
    converted = set(ids(salesforce_client, "SELECT Id FROM Contact")) - set(contacts)  # the conversion's Contact
    salesforce.insert("Contact", LastName="Theirs", OwnerId=other_owner(salesforce))

    owned_contacts = salesforce_feed.owned("Contact", me, NOW, options)
    owned_leads = salesforce_feed.owned("Lead", me, NOW, options)

    assert len(converted) == 1
    assert {c.record_id for c in owned_contacts} == set(contacts[1:]) | converted
    assert {c.record_id for c in owned_leads} == set(leads[1:])
    assert all(c.version and not c.deleted for c in owned_contacts + owned_leads)
