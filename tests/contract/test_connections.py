"""The connection store's contract, for the fake and for DynamoDB Local alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from concord.core import ConnectionOptions, DeleteLimits
from concord.ports import Connection

if TYPE_CHECKING:
    from tests.contract.conftest import Stores

T0 = datetime(2025, 6, 1, 12, 0, 30, tzinfo=UTC)


def connection(cid: str = "c1", user: str = "005U1", mailbox: str = "Ann@Example.com", **kw: Any) -> Connection:
    kw.setdefault("provider", "graph")
    return Connection(
        connection_id=cid, mailbox_user=mailbox, salesforce_user_id=user, options=ConnectionOptions(), **kw
    )


def test_options_round_trip_exactly(stores: Stores) -> None:
    options = ConnectionOptions(
        provider="google",
        directions={"contact": "to_salesforce", "event": "both"},
        propagate_deletes=True,
        contact_group="contactGroups/abc",
        event_window_past_days=None,
        invitation_mode=True,
        user_email="ann@example.com",
        new_contact_object="Lead",
        phone_region="GB",
        delete_limits={"contact": DeleteLimits(10, 0.125, 3), "event": DeleteLimits(2, 1 / 3)},
        mass_delete_approved=True,
    )
    stored = Connection("c1", "google", "ann@example.com", "005U1", options, "degraded", {"pending": 3})
    stores.connections.put(stored)
    assert stores.connections.get("c1") == stored
    assert stores.connections.get("nope") is None


def test_connections_by_id_salesforce_user_mailbox_user_and_status(stores: Stores) -> None:
    stores.connections.put(connection("c1", "005U1", "ann@example.com"))
    stores.connections.put(connection("c2", "005U1", "ann@gmail.example", provider="google", status="suspended"))
    stores.connections.put(connection("c3", "005U2", "bob@example.com"))

    assert set(stores.connections.get_many(["c1", "c3", "c9"])) == {"c1", "c3"}
    owners = stores.connections.by_salesforce_user(["005U1", "005U2", "005U9"])
    assert {user: [c.connection_id for c in found] for user, found in owners.items()} == {
        "005U1": ["c1", "c2"],
        "005U2": ["c3"],
    }
    found = stores.connections.by_mailbox_user("google", "Ann@Gmail.Example")
    assert found is not None
    assert found.connection_id == "c2"
    assert stores.connections.by_mailbox_user("graph", "ann@gmail.example") is None
    assert [c.connection_id for c in stores.connections.list("active")] == ["c1", "c3"]
    assert [c.connection_id for c in stores.connections.list("suspended")] == ["c2"]
    assert [c.connection_id for c in stores.connections.list()] == ["c1", "c2", "c3"]


def test_status_changes_and_health_merges(stores: Stores) -> None:
    stores.connections.put(connection(health={"pending": 2, "last_error": "old"}))
    stores.connections.set_status("c1", "needs_reauth", "invalid_grant")
    before = stores.connections.requests
    stores.connections.update_health(
        "c1", last_error=None, last_success_at=datetime(2025, 6, 1, tzinfo=UTC), channel={"expiry": 1.5, "ids": [1, 2]}
    )
    assert stores.connections.requests - before == 1

    found = stores.connections.get("c1")
    assert found is not None
    assert found.status == "needs_reauth"
    assert found.health == {
        "pending": 2,
        "last_error": None,
        "last_success_at": "2025-06-01T00:00:00+00:00",
        "channel": {"expiry": 1.5, "ids": [1, 2]},
    }
    assert [c.connection_id for c in stores.connections.list("needs_reauth")] == ["c1"]
    with pytest.raises(KeyError):
        stores.connections.set_status("nope", "active")
    with pytest.raises(KeyError):
        stores.connections.update_health("nope", pending=1)
    assert stores.connections.get("nope") is None


def test_deletes_are_counted_over_a_rolling_window(stores: Stores) -> None:
    record = stores.connections.record_deletes
    assert record("c1", "contact", 0, T0, 3600) == 0
    assert record("c1", "contact", 30, T0, 3600) == 30
    assert record("c1", "contact", 20, T0 + timedelta(minutes=30), 3600) == 50
    assert record("c1", "event", 5, T0 + timedelta(minutes=30), 3600) == 5  # per kind
    assert record("c2", "contact", 1, T0, 3600) == 1  # per connection
    # the minute of the first deletes is still partly inside the window: counted (a guard counts more, not less)
    assert record("c1", "contact", 0, T0 + timedelta(minutes=60), 3600) == 50
    # once wholly outside, it no longer counts, and a write prunes it
    assert record("c1", "contact", 0, T0 + timedelta(minutes=61), 3600) == 20
    assert record("c1", "contact", 1, T0 + timedelta(minutes=61), 3600) == 21
    assert record("c1", "contact", 0, T0 + timedelta(minutes=200), 3600) == 0
