from __future__ import annotations

from typing import Any

import pytest

from concord.adapters.queue import BATCH_BYTES, ChangeQueue, EnqueueError, pack
from concord.notices import ChangeNotice, decode_message


def _notices(count: int, *, event_id_length: int = 8) -> list[ChangeNotice]:
    return [
        ChangeNotice(
            source="salesforce",
            object_type="contact",
            record_id=f"0035g00000R{n:06d}A",
            provider_event_id=f"n{n}".ljust(event_id_length, "x"),
        )
        for n in range(count)
    ]


def _sent(sqs: ScriptedSqs) -> list[ChangeNotice]:
    return [notice for call in sqs.calls for entry in call for notice in decode_message(entry["MessageBody"])]


class ScriptedSqs:
    """Answers SendMessageBatch from a script: entry ids to fail (and how) per call."""

    def __init__(self, failures: list[dict[str, bool]] | None = None) -> None:
        self.failures = list(failures or [])
        self.calls: list[list[dict[str, Any]]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 - boto3's names
        self.calls.append(Entries)
        fail = self.failures.pop(0) if self.failures else {}
        return {
            "Successful": [{"Id": e["Id"], "MessageId": "m"} for e in Entries if e["Id"] not in fail],
            "Failed": [
                {
                    "Id": e["Id"],
                    "Code": "InternalError" if not fail[e["Id"]] else "InvalidMessageContents",
                    "SenderFault": fail[e["Id"]],
                }
                for e in Entries
                if e["Id"] in fail
            ],
        }


def test_a_hundred_notices_take_one_call_of_ten_messages_in_order() -> None:
    sqs = ScriptedSqs()
    notices = _notices(100)
    ChangeQueue("q", sqs, sleep=lambda _: None).send(notices)
    assert [len(call) for call in sqs.calls] == [10]
    assert _sent(sqs) == notices


def test_more_than_a_hundred_notices_are_split_into_calls_sent_together() -> None:
    sqs = ScriptedSqs()
    notices = _notices(250)
    ChangeQueue("q", sqs, sleep=lambda _: None).send(notices)
    assert sorted(len(call) for call in sqs.calls) == [5, 10, 10]
    assert sorted(n.id for n in _sent(sqs)) == sorted(n.id for n in notices)


def test_a_call_never_carries_more_than_sqs_allows() -> None:
    # GIVEN notices as large as the model allows (512-character event ids)
    calls = pack(_notices(100, event_id_length=512))
    # THEN every call stays within SendMessageBatch's payload limit, and nothing is left out
    assert all(sum(len(body.encode()) for body, _ in call) <= BATCH_BYTES for call in calls)
    assert sum(len(notices) for call in calls for _, notices in call) == 100


def test_retries_only_the_failed_entries() -> None:
    # GIVEN SQS failing entry 3 (the fourth message) once, not the sender's fault
    sqs = ScriptedSqs([{"3": False}])
    # WHEN 37 notices (four messages) are sent
    notices = _notices(37)
    ChangeQueue("q", sqs, sleep=lambda _: None).send(notices)
    # THEN the second call carries entry 3 alone, with that message's notices
    assert [len(c) for c in sqs.calls] == [4, 1] and sqs.calls[1][0]["Id"] == "3"
    assert decode_message(sqs.calls[1][0]["MessageBody"]) == notices[30:]


def test_a_notice_that_keeps_failing_is_reported_not_lost() -> None:
    sqs = ScriptedSqs([{"1": False}, {"1": False}, {"1": False}])
    notices = _notices(12)
    with pytest.raises(EnqueueError) as raised:
        ChangeQueue("q", sqs, sleep=lambda _: None).send(notices)
    assert raised.value.failures == {notice.id: "InternalError" for notice in notices[10:]}


def test_sender_faults_are_not_retried() -> None:
    sqs = ScriptedSqs([{"1": True}])
    with pytest.raises(EnqueueError):
        ChangeQueue("q", sqs, sleep=lambda _: None).send(_notices(12))
    assert len(sqs.calls) == 1


def test_nothing_to_send_sends_nothing() -> None:
    sqs = ScriptedSqs()
    ChangeQueue("q", sqs).send([])
    assert sqs.calls == []
