"""The link store's contract, for the fake and for DynamoDB Local alike."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest

from concord.core import LinkState
from concord.ports import LinkConflict, LinkKey, StoredLink

if TYPE_CHECKING:
    from tests.contract.conftest import Stores

CONN = "c1"


def link(sf: str | None = "003A", mb: str | None = "AAMk-1", **changes: Any) -> LinkState:
    state = LinkState(
        kind="contact",
        salesforce_object="Contact",
        salesforce_id=sf,
        mailbox_id=mb,
        salesforce_version="v1",
        mailbox_version="m1",
        salesforce_values={"email": ("a@example.com",), "last_name": "Doe", "rank": 3},
        mailbox_values={"email": ("a@example.com",), "last_name": "Doe"},
    )
    return replace(state, **changes)


def sf_key(record_id: str, connection: str = CONN) -> LinkKey:
    return LinkKey(connection, "contact", "salesforce", record_id)


def mb_key(record_id: str, connection: str = CONN) -> LinkKey:
    return LinkKey(connection, "contact", "mailbox", record_id)


def test_a_new_link_is_found_by_either_id_with_its_snapshot_intact(stores: Stores) -> None:
    [stored] = stores.links.put_many([StoredLink(CONN, link(), claimed_at=123)])
    assert stored.lock_version == 1

    found = stores.links.get_many([sf_key("003A"), mb_key("AAMk-1"), sf_key("003-none")])

    assert set(found) == {sf_key("003A"), mb_key("AAMk-1")}
    assert found[sf_key("003A")] == found[mb_key("AAMk-1")] == stored
    assert found[sf_key("003A")].link == link()
    assert found[sf_key("003A")].claimed_at == 123


def test_links_of_another_connection_or_kind_are_not_found(stores: Stores) -> None:
    stores.links.put_many([StoredLink(CONN, link())])
    found = stores.links.get_many([sf_key("003A", "c2"), LinkKey(CONN, "event", "salesforce", "003A")])
    assert found == {}


def test_a_bulk_get_over_the_batch_limit_finds_every_link(stores: Stores) -> None:
    links = [StoredLink(CONN, link(f"003{n:04}", f"MB{n:04}")) for n in range(130)]
    stores.links.put_many(links)
    before = stores.links.requests

    keys = [sf_key(f"003{n:04}") for n in range(130)] + [mb_key(f"MB{n:04}") for n in range(130)]
    found = stores.links.get_many(keys)

    assert len(found) == 260
    assert found[mb_key("MB0129")].link.salesforce_id == "0030129"
    assert stores.links.requests - before == 3  # 260 keys, 100 a BatchGetItem


def test_many_new_links_are_written_in_transactions_of_at_most_100_actions(stores: Stores) -> None:
    before = stores.links.requests
    stored = stores.links.put_many([StoredLink(CONN, link(f"003{n:04}", f"MB{n:04}")) for n in range(120)])
    assert [s.lock_version for s in stored] == [1] * 120
    # 2 items a link and one counter per transaction: 49 links fill 99 actions
    assert stores.links.requests - before == 3
    assert stores.links.count(CONN, "contact") == 120


def test_storing_a_new_link_over_an_existing_one_conflicts(stores: Stores) -> None:
    stores.links.put_many([StoredLink(CONN, link())])
    with pytest.raises(LinkConflict) as lost:
        stores.links.put_many([StoredLink(CONN, link(salesforce_version="v2"))])
    assert lost.value.keys == (sf_key("003A"),)
    assert stores.links.get_many([sf_key("003A")])[sf_key("003A")].link.salesforce_version == "v1"


def test_a_new_link_whose_mailbox_id_is_already_linked_elsewhere_conflicts(stores: Stores) -> None:
    stores.links.put_many([StoredLink(CONN, link("003A", "AAMk-1"))])
    with pytest.raises(LinkConflict) as lost:
        stores.links.put_many([StoredLink(CONN, link("003B", "AAMk-1"))])
    assert lost.value.keys == (sf_key("003B"),)
    assert stores.links.get_many([sf_key("003B")]) == {}  # no half of the losing link was written
    assert stores.links.count(CONN, "contact") == 1


def test_an_update_increments_the_lock_version_and_a_stale_update_conflicts(stores: Stores) -> None:
    [v1] = stores.links.put_many([StoredLink(CONN, link())])
    [v2] = stores.links.put_many([replace(v1, link=link(salesforce_version="v2"))])
    assert v2.lock_version == 2
    with pytest.raises(LinkConflict):
        stores.links.put_many([replace(v1, link=link(salesforce_version="v3"))])
    [current] = stores.links.get_many([mb_key("AAMk-1")]).values()
    assert (current.lock_version, current.link.salesforce_version) == (2, "v2")


def test_a_partial_conflict_keeps_the_winners(stores: Stores) -> None:
    stores.links.put_many([StoredLink(CONN, link("003X", "MB-X"))])
    batch = [StoredLink(CONN, link(f"003{n}", f"MB-{n}")) for n in range(5)]
    batch.insert(2, StoredLink(CONN, link("003Y", "MB-X")))  # MB-X is taken

    with pytest.raises(LinkConflict) as lost:
        stores.links.put_many(batch)

    assert lost.value.keys == (sf_key("003Y"),)
    found = stores.links.get_many([sf_key(f"003{n}") for n in range(5)] + [sf_key("003Y")])
    assert set(found) == {sf_key(f"003{n}") for n in range(5)}
    assert stores.links.count(CONN, "contact") == 6


def test_a_claim_learning_its_mailbox_id_is_then_found_by_it(stores: Stores) -> None:
    [claim] = stores.links.put_many([StoredLink(CONN, link(mb=None), claimed_at=100)])
    [done] = stores.links.put_many([StoredLink(CONN, link(mb="AAMk-new"), claim.lock_version)])
    assert done.lock_version == 2
    found = stores.links.get_many([mb_key("AAMk-new"), sf_key("003A")])
    assert found[mb_key("AAMk-new")] == found[sf_key("003A")] == done
    assert found[mb_key("AAMk-new")].claimed_at is None


def test_an_id_change_moves_the_key_and_frees_the_old_id(stores: Stores) -> None:
    [lead] = stores.links.put_many([StoredLink(CONN, link("00QL", "AAMk-1", salesforce_object="Lead"))])
    converted = replace(lead, link=link("003C", "AAMk-1"))
    stores.links.put_many([converted])

    found = stores.links.get_many([sf_key("00QL"), sf_key("003C"), mb_key("AAMk-1")])
    assert set(found) == {sf_key("003C"), mb_key("AAMk-1")}
    assert found[mb_key("AAMk-1")].link.salesforce_id == "003C"
    assert stores.links.count(CONN, "contact") == 1
    stores.links.put_many([StoredLink(CONN, link("00QL", "AAMk-2"))])  # the old id is free again


def test_tombstones_of_pairs_deleted_on_both_sides_expire_after_48_hours_at_least(stores: Stores) -> None:
    [live] = stores.links.put_many([StoredLink(CONN, link())])
    assert live.expires_at is None
    [half] = stores.links.put_many([replace(live, link=link(status="tombstone", deleted_side="mailbox"))])
    assert half.expires_at is None  # the survivor must never be linked again
    assert stores.links.count(CONN, "contact") == 0
    [gone] = stores.links.put_many([replace(half, link=link(status="tombstone", deleted_side="both"))])

    assert gone.expires_at is not None
    assert gone.expires_at >= stores.clock.now + 48 * 3600
    assert stores.links.get_many([sf_key("003A")])[sf_key("003A")].expires_at == gone.expires_at
    assert stores.links.count(CONN, "contact") == 0


def test_a_tombstone_of_a_side_never_created_is_found_by_the_other_id(stores: Stores) -> None:
    stores.links.put_many([StoredLink(CONN, link(sf=None, status="tombstone", deleted_side="mailbox"))])
    assert set(stores.links.get_many([mb_key("AAMk-1")])) == {mb_key("AAMk-1")}
    assert [s.link.mailbox_id for s in stores.links.list(CONN)] == ["AAMk-1"]


def test_count_list_and_delete(stores: Stores) -> None:
    stores.links.put_many([StoredLink(CONN, link(f"003{n}", f"MB{n}")) for n in range(3)])
    stores.links.put_many([StoredLink(CONN, replace(link("EV1", "E1"), kind="event", salesforce_object="Event"))])
    stores.links.put_many([StoredLink("c2", link("003Z", "MBZ"))])

    assert stores.links.count(CONN, "contact") == 3
    assert stores.links.count(CONN, "event") == 1
    assert stores.links.count("c9", "contact") == 0
    listed = stores.links.list(CONN, "contact")
    assert sorted(s.link.salesforce_id for s in listed) == ["0030", "0031", "0032"]
    assert len(stores.links.list(CONN)) == 4

    stores.links.delete(listed[0])

    assert stores.links.count(CONN, "contact") == 2
    assert stores.links.get_many([sf_key(listed[0].link.salesforce_id), mb_key(listed[0].link.mailbox_id)]) == {}
    with pytest.raises(LinkConflict):
        stores.links.delete(replace(listed[1], lock_version=7))


def test_two_links_sharing_an_id_in_one_write_are_refused(stores: Stores) -> None:
    with pytest.raises(ValueError, match="share"):
        stores.links.put_many([StoredLink(CONN, link("003A", "M")), StoredLink(CONN, link("003B", "M"))])


def _race(store: Any, start: threading.Barrier, stored: StoredLink, outcome: list[str]) -> None:
    start.wait()
    try:
        store.put_many([stored])
        outcome.append("won")
    except LinkConflict:
        outcome.append("lost")


def test_two_workers_creating_a_link_for_the_same_mailbox_id_at_once_one_wins(stores: Stores) -> None:
    for round_ in range(5):
        start = threading.Barrier(2)
        outcome: list[str] = []
        threads = [
            threading.Thread(
                target=_race,
                args=(stores.new_links(), start, StoredLink(CONN, link(f"003-{round_}-{i}", f"MB-{round_}")), outcome),
            )
            for i in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert sorted(outcome) == ["lost", "won"]
        [winner] = stores.links.get_many([mb_key(f"MB-{round_}")]).values()
        both = stores.links.get_many([sf_key(f"003-{round_}-0"), sf_key(f"003-{round_}-1")])
        assert list(both.values()) == [winner]
    assert stores.links.count(CONN, "contact") == 5
