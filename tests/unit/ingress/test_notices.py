from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from concord.notices import (
    NOTICES_PER_MESSAGE,
    ChangeNotice,
    MalformedMessage,
    decode_message,
    encode_message,
    new_notice_id,
)


def test_round_trip_is_compact_and_versioned() -> None:
    # GIVEN a change notice
    notice = ChangeNotice(
        source="graph",
        connection_id="conn_1",
        object_type="contact",
        record_id="AAMk=",
        provider_event_id="sub:updated:AAMk=:",
        received_at=datetime(2026, 11, 20, 9, 15, 2, 310000, tzinfo=UTC),
    )
    # WHEN it is serialized and read back
    body = notice.to_message()
    # THEN the body is compact JSON without None fields, version 1, and reads back equal
    assert " " not in body
    data = json.loads(body)
    assert data["v"] == 1 and data["kind"] == "change" and "source_version" not in data
    assert ChangeNotice.from_message(body) == notice


def test_ids_are_unique_and_sort_by_time() -> None:
    ids = [new_notice_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(i.startswith("ntc_") and len(i) == 30 for i in ids)


def test_received_at_is_normalized_to_utc() -> None:
    when = datetime(2026, 11, 20, 14, 45, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    notice = ChangeNotice(
        source="salesforce",
        object_type="lead",
        record_id="00Q5g00000ABCDEAA1",
        provider_event_id="n1",
        received_at=when,
    )
    assert notice.received_at == datetime(2026, 11, 20, 9, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    "fields",
    [
        {
            "source": "graph",
            "object_type": "contact",
            "provider_event_id": "x",
            "connection_id": "c",
        },  # change w/o record
        {
            "source": "graph",
            "object_type": "contact",
            "provider_event_id": "x",
            "kind": "reauthorize",
            "connection_id": "c",
        },
        {"source": "google", "object_type": "email", "provider_event_id": "x", "kind": "catch_up"},  # no connection
        {"source": "salesforce", "object_type": "account", "provider_event_id": "x", "record_id": "r"},
        {"v": 2, "source": "salesforce", "object_type": "lead", "provider_event_id": "x", "record_id": "r"},
        {"source": "salesforce", "object_type": "lead", "provider_event_id": "x", "kind": "catch_up", "deleted": True},
        {"source": "salesforce", "object_type": "lead", "provider_event_id": "x", "record_id": "r", "deleted": False},
    ],
)
def test_inconsistent_notices_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ChangeNotice.model_validate(fields)


def test_unknown_fields_are_ignored_within_version_1() -> None:
    body = json.dumps(
        {
            "v": 1,
            "source": "salesforce",
            "object_type": "lead",
            "record_id": "r",
            "provider_event_id": "x",
            "received_at": "2026-11-20T09:15:02Z",
            "added_later": 1,
        }
    )
    assert ChangeNotice.from_message(body).record_id == "r"


def test_a_delete_is_a_change_that_says_so_and_only_then_carries_the_flag() -> None:
    gone = ChangeNotice(source="salesforce", object_type="lead", record_id="r", provider_event_id="x", deleted=True)
    kept = ChangeNotice(source="salesforce", object_type="lead", record_id="r", provider_event_id="y")
    assert '"deleted":true' in gone.to_message() and "deleted" not in kept.to_message()
    assert ChangeNotice.from_message(gone.to_message()) == gone
    assert (gone.kind, kept.deleted) == ("change", None)


def _lead(n: int) -> ChangeNotice:
    return ChangeNotice(source="salesforce", object_type="lead", record_id=f"00Q{n:015d}", provider_event_id=f"n{n}")


def test_a_message_carries_several_notices_and_reads_back_in_order() -> None:
    notices = [_lead(n) for n in range(NOTICES_PER_MESSAGE)]
    body = encode_message(notices)
    assert json.loads(body)[0]["v"] == 1
    assert decode_message(body) == notices


def test_a_message_written_as_one_notice_object_still_reads() -> None:
    notice = _lead(1)
    assert decode_message(notice.to_message()) == [notice]


@pytest.mark.parametrize("count", [0, NOTICES_PER_MESSAGE + 1])
def test_a_message_holds_one_to_ten_notices(count: int) -> None:
    with pytest.raises(ValueError, match="1 to 10"):
        encode_message([_lead(n) for n in range(count)])


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        ("[]", "non-empty array"),
        ("[1, 2]", "non-empty array"),
        ('"text"', "non-empty array"),
        ('[{"v": 1, "source": "salesforce"}]', "notice 0 is invalid: object_type, provider_event_id"),
    ],
)
def test_what_is_not_a_message_of_notices_is_named(body: str | bytes, reason: str) -> None:
    with pytest.raises(MalformedMessage, match=reason):
        decode_message(body)


def test_the_reason_for_an_invalid_notice_carries_no_value() -> None:
    body = json.dumps([{"v": 1, "source": "CANARY-secret", "object_type": "lead", "provider_event_id": "x"}])
    with pytest.raises(MalformedMessage) as raised:
        decode_message(body)
    assert "CANARY" not in str(raised.value)
