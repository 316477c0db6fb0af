from __future__ import annotations

from typing import Any

import pytest

from concord.adapters.queue import ChangeQueue, EnqueueError
from concord.notices import ChangeNotice


def _notices(count: int) -> list[ChangeNotice]:
    return [
        ChangeNotice(
            source="salesforce", object_type="contact", record_id=f"0035g00000R{n:06d}A", provider_event_id=f"n{n}"
        )
        for n in range(count)
    ]


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


def test_sends_in_chunks_of_ten() -> None:
    sqs = ScriptedSqs()
    ChangeQueue("q", sqs, sleep=lambda _: None).send(_notices(25))
    assert sorted(len(call) for call in sqs.calls) == [5, 10, 10]


def test_retries_only_the_failed_entries() -> None:
    # GIVEN SQS failing entry 3 once (not the sender's fault)
    sqs = ScriptedSqs([{"3": False}])
    # WHEN seven notices are sent
    ChangeQueue("q", sqs, sleep=lambda _: None).send(_notices(7))
    # THEN the second call carries entry 3 alone
    assert [len(c) for c in sqs.calls] == [7, 1] and sqs.calls[1][0]["Id"] == "3"


def test_a_notice_that_keeps_failing_is_reported_not_lost() -> None:
    sqs = ScriptedSqs([{"0": False}, {"0": False}, {"0": False}])
    notices = _notices(2)
    with pytest.raises(EnqueueError) as raised:
        ChangeQueue("q", sqs, sleep=lambda _: None).send(notices)
    assert raised.value.failures == {notices[0].id: "InternalError"}


def test_sender_faults_are_not_retried() -> None:
    sqs = ScriptedSqs([{"1": True}])
    with pytest.raises(EnqueueError):
        ChangeQueue("q", sqs, sleep=lambda _: None).send(_notices(2))
    assert len(sqs.calls) == 1


def test_nothing_to_send_sends_nothing() -> None:
    sqs = ScriptedSqs()
    ChangeQueue("q", sqs).send([])
    assert sqs.calls == []
