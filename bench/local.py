"""How fast is the stand-in? The local stack's own figures (../shared/BENCHMARKS.md, bench `local`).

A benchmark of Concord is meaningless if DynamoDB Local or moto dominates it, so this measures them
at depth: SendMessageBatch(10) and ReceiveMessage(10) + DeleteMessageBatch with 5,000 messages
queued, and BatchGetItem of 100 keys with 10,000 items stored. It also measures moto unpatched
(in-process, same queue depth) so the patch's effect is visible.

Run: ``make bench B=local``.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from bench.report import emit, percentile
from local.aws.stack import LocalStack

if TYPE_CHECKING:
    from collections.abc import Callable

QUEUED = 5_000
ITEMS = 10_000
ROUNDS = 30


def timed(action: Callable[[], object], rounds: int = ROUNDS) -> list[float]:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def fill_queue(sqs: Any, url: str, count: int) -> None:
    def batch(start: int) -> None:
        entries = [{"Id": str(i), "MessageBody": f'{{"n": {start + i}, "pad": "{"x" * 200}"}}'} for i in range(10)]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(batch, range(0, count, 10)))


def fill_table(ddb: Any, table: str, count: int) -> None:
    def batch(start: int) -> None:
        items = [
            {"PutRequest": {"Item": {"pk": {"S": f"k{n}"}, "sk": {"S": "link"}, "blob": {"S": "x" * 300}}}}
            for n in range(start, min(start + 25, count))
        ]
        ddb.batch_write_item(RequestItems={table: items})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(batch, range(0, count, 25)))


def main() -> None:
    with LocalStack() as stack:
        sqs, ddb = stack.client("sqs"), stack.client("dynamodb")
        url = stack.env["CHANGES_QUEUE_URL"]
        fill_queue(sqs, url, QUEUED)
        entries = [{"Id": str(i), "MessageBody": "bench"} for i in range(10)]
        send = timed(lambda: sqs.send_message_batch(QueueUrl=url, Entries=entries))

        def receive_and_delete() -> None:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60)["Messages"]
            sqs.delete_message_batch(
                QueueUrl=url, Entries=[{"Id": m["MessageId"], "ReceiptHandle": m["ReceiptHandle"]} for m in got]
            )

        receive = timed(receive_and_delete)

        table = stack.env["LINKS_TABLE"]
        fill_table(ddb, table, ITEMS)
        keys = [{"pk": {"S": f"k{n}"}, "sk": {"S": "link"}} for n in range(0, ITEMS, ITEMS // 100)]
        get = timed(lambda: ddb.batch_get_item(RequestItems={table: {"Keys": keys}}))

    figures = {
        "local_sqs_send10_ms_at_5000": round(statistics.median(send), 2),
        "local_sqs_recv_del10_ms_at_5000": round(statistics.median(receive), 2),
        "local_ddb_batchget100_ms_at_10000": round(statistics.median(get), 2),
    }
    rows = [
        ("SQS SendMessageBatch(10) @5000, median ms", figures["local_sqs_send10_ms_at_5000"], "target <= 20"),
        ("  p99 ms", round(percentile(send, 99), 2), ""),
        ("SQS Receive(10)+DeleteBatch @5000, median ms", figures["local_sqs_recv_del10_ms_at_5000"], "target <= 40"),
        ("  p99 ms", round(percentile(receive, 99), 2), ""),
        ("DynamoDB BatchGetItem(100) @10000, median ms", figures["local_ddb_batchget100_ms_at_10000"], "target <= 60"),
        ("  p99 ms", round(percentile(get, 99), 2), ""),
    ]
    emit("local", rows, figures)


if __name__ == "__main__":
    main()
