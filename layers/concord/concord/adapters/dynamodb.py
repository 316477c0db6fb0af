"""The DynamoDB client, created once per process, and small table helpers the functions share."""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def client() -> Any:
    """boto3's DynamoDB client; imported lazily so functions that never touch a table don't pay for it."""
    import boto3

    return boto3.client("dynamodb")


def count_items(table: str, **scan: Any) -> int:
    """Items in ``table`` (matching ``scan``'s filter), counted by DynamoDB page by page."""
    paginator = client().get_paginator("scan")
    return sum(page["Count"] for page in paginator.paginate(TableName=table, Select="COUNT", **scan))
