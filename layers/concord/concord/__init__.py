"""Concord: keeps Salesforce and mailboxes (Microsoft 365, Google Workspace) in agreement.

The package is shipped as a Lambda layer. Its parts, from the bottom up:
``core`` (pure sync decisions), ``ports`` (small interfaces), ``adapters`` (HTTP clients, DynamoDB,
SQS), ``ingress`` (request authentication and parsing), ``service`` (use cases) and ``bootstrap``
(the one composition root the Lambda handlers call).
"""
