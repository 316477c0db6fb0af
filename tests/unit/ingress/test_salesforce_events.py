from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from concord.adapters.queue import EnqueueError
from concord.ingress.apps.salesforce_events import EnqueueFailed, SalesforceEvents
from concord.ingress.salesforce_cdc import is_echo
from concord.notices import ChangeNotice
from tests.support.events import load_event
from tests.unit.ingress.helpers import CONTEXT, FakeQueue, fake_deps, settings

if TYPE_CHECKING:
    from concord.ingress.apps.common import Deps


@pytest.fixture
def deps() -> Deps:
    return fake_deps()


@pytest.fixture
def handler(deps: Deps) -> SalesforceEvents:
    return SalesforceEvents(settings(), deps)


def _queue(deps: Deps) -> FakeQueue:
    assert isinstance(deps.queue, FakeQueue)
    return deps.queue


def _event(**header: Any) -> dict[str, Any]:
    event = load_event("salesforce_events/contact_change_event")
    event["detail"]["payload"]["ChangeEventHeader"].update(header)
    return event


def test_valid_event_enqueues_one_notice_per_record(handler: SalesforceEvents, deps: Deps) -> None:
    result = handler.handle(_event(recordIds=["0035g00000ADALVAA1", "0035g00000CHBABAA3"]), CONTEXT)
    assert result["status"] == "enqueued" and result["enqueued"] == 2
    notices = _queue(deps).notices
    assert [n["record_id"] for n in notices] == ["0035g00000ADALVAA1", "0035g00000CHBABAA3"]
    assert notices[0]["source_version"] == "2025-11-20T09:15:01.000Z"
    assert notices[0]["provider_event_id"] == "0004f2a1-8b3c-29d7-6e5f-1a2b3c4d5e6f:1:0035g00000ADALVAA1"


def test_replayed_event_enqueues_nothing(handler: SalesforceEvents, deps: Deps) -> None:
    handler.handle(_event(), CONTEXT)
    assert handler.handle(_event(), CONTEXT)["status"] == "replayed"
    assert len(_queue(deps).bodies) == 1


def test_echo_of_concords_own_write_is_recorded_not_enqueued(handler: SalesforceEvents, deps: Deps) -> None:
    result = handler.handle(_event(changeOrigin="com/salesforce/api/rest/60.0;client=concord"), CONTEXT)
    assert result["status"] == "echo" and _queue(deps).bodies == []


@pytest.mark.parametrize(
    ("origin", "echo"),
    [
        ("com/salesforce/api/rest/60.0;client=concord", True),
        ("com/salesforce/api/rest/60.0;client=concordx", False),
        ("", False),
        (None, False),
        ("client=concord", False),
        ("com/salesforce/api/soap/60.0; client=concord ", True),
    ],
)
def test_echo_detection(origin: str | None, echo: bool) -> None:
    assert is_echo(origin) is echo


@pytest.mark.parametrize(
    "header",
    [
        {"changeType": "GAP_OVERFLOW", "recordIds": ["000000000000000AAA"], "changeOrigin": ""},
        {"changeType": "UPDATE", "recordIds": ["003*"]},
        {"changeType": "GAP_UPDATE", "recordIds": ["003*"], "changeOrigin": ""},
    ],
)
def test_overflows_and_wildcards_enqueue_one_catch_up(
    handler: SalesforceEvents, deps: Deps, header: dict[str, Any]
) -> None:
    assert handler.handle(_event(**header), CONTEXT)["enqueued"] == 1
    [notice] = _queue(deps).notices
    assert notice["kind"] == "catch_up" and notice["object_type"] == "contact" and "record_id" not in notice


IDS = ["0035g00000ADALVAA1", "0035g00000CHBABAA3"]


@pytest.mark.parametrize(
    ("change_type", "deleted"),
    [
        ("GAP_CREATE", None),
        ("GAP_UPDATE", None),
        ("GAP_UNDELETE", None),
        ("GAP_DELETE", True),
    ],
)
def test_gap_events_name_the_records_to_reread(
    handler: SalesforceEvents, deps: Deps, change_type: str, deleted: bool | None
) -> None:
    # Gap events come from changes that need not move SystemModstamp: a watermark catch-up could miss them.
    result = handler.handle(_event(changeType=change_type, recordIds=IDS, changeOrigin=""), CONTEXT)
    assert result["enqueued"] == 2
    notices = _queue(deps).notices
    assert [(n["kind"], n["record_id"], n.get("deleted")) for n in notices] == [
        ("change", record_id, deleted) for record_id in IDS
    ]


def test_a_wildcard_beside_real_ids_catches_up_and_rereads_the_real_ones(handler: SalesforceEvents, deps: Deps) -> None:
    handler.handle(_event(changeType="GAP_UPDATE", recordIds=["003*", IDS[0]], changeOrigin=""), CONTEXT)
    assert sorted((n["kind"], n.get("record_id", "")) for n in _queue(deps).notices) == [
        ("catch_up", ""),
        ("change", IDS[0]),
    ]


def test_a_delete_says_the_record_is_gone(handler: SalesforceEvents, deps: Deps) -> None:
    handler.handle(_event(changeType="DELETE", recordIds=IDS), CONTEXT)
    notices = [ChangeNotice.from_message(body) for body in _queue(deps).bodies]
    assert [(n.kind, n.record_id, n.deleted) for n in notices] == [("change", rid, True) for rid in IDS]


@pytest.mark.parametrize("change_type", ["CREATE", "UPDATE", "UNDELETE"])
def test_creates_updates_and_undeletes_are_plain_changes(
    handler: SalesforceEvents, deps: Deps, change_type: str
) -> None:
    handler.handle(_event(changeType=change_type, recordIds=IDS[:1]), CONTEXT)
    [notice] = _queue(deps).notices
    assert (notice["kind"], notice["record_id"]) == ("change", IDS[0]) and "deleted" not in notice


def test_forged_org_is_rejected(handler: SalesforceEvents, deps: Deps) -> None:
    event = _event()
    event["source"] = "aws.partner/salesforce.com/00D000000000001AAA/0YL5g000000CNCRDGA"
    result = handler.handle(event, CONTEXT)
    assert (result["status"], result["statusCode"]) == ("rejected", 403) and _queue(deps).bodies == []


@pytest.mark.parametrize(
    "event", [{}, {"id": "x", "source": "aws.partner/salesforce.com/00D5g00000CNCRDEA0/c", "detail": {}}, []]
)
def test_malformed_event_is_rejected(handler: SalesforceEvents, deps: Deps, event: Any) -> None:
    result = handler.handle(event, CONTEXT)
    assert (result["status"], result["statusCode"]) == ("rejected", 400) and _queue(deps).bodies == []


def test_oversized_event_is_rejected(deps: Deps) -> None:
    handler = SalesforceEvents(settings(WEBHOOK_MAX_BODY_BYTES="1024"), deps)
    event = _event()
    event["detail"]["payload"]["Description"] = "x" * 4000
    assert handler.handle(event, CONTEXT)["statusCode"] == 413 and _queue(deps).bodies == []


def test_enqueue_failure_is_raised_for_eventbridge_to_retry(handler: SalesforceEvents, deps: Deps) -> None:
    _queue(deps).fail_with = EnqueueError({"ntc": "InternalError"})
    with pytest.raises(EnqueueFailed):
        handler.handle(_event(), CONTEXT)
    _queue(deps).fail_with = None
    assert handler.handle(_event(), CONTEXT)["status"] == "enqueued"
