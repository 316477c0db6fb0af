"""The credential secrets a deploy creates, stored in the local Secrets Manager for tests that start the
sync worker without the sandboxes: it reads them at cold start and fails loudly when one is missing.
The values are well-formed but point nowhere (no sandbox answers), so a call that needs them fails as a
transient connection error."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

if TYPE_CHECKING:
    from collections.abc import Mapping

    from local.aws.stack import LocalStack

__all__ = ["store_credentials"]


def store_credentials(stack: LocalStack, arns: Mapping[str, str]) -> None:
    """Store them unless they are there. ``arns``: ``salesforce``, ``graph`` and ``google`` → the secret ARN
    the functions are given."""
    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )
    values = {
        "salesforce": {"consumer_key": "test", "username": "integration@x.example", "private_key": pem},
        "graph": {"tenant_id": "t", "client_id": "c", "client_secret": "test-client-secret"},
        "google": {"client_email": "sa@x.iam.gserviceaccount.com", "private_key": pem},
    }
    client = stack.client("secretsmanager")
    existing = {
        entry["Name"] for page in client.get_paginator("list_secrets").paginate() for entry in page["SecretList"]
    }
    for name, value in values.items():
        secret_name = arns[name].rsplit(":secret:", 1)[1]
        if secret_name not in existing:  # a reset of the stack wipes them; a second call keeps the first
            client.create_secret(Name=secret_name, SecretString=json.dumps(value))
