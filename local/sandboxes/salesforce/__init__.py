"""The Salesforce sandbox: ``SalesforceSandbox`` (an in-memory org behind the REST API subset Concord
uses) and ``main()``, which serves it with seed data: ``python -m local.sandboxes.salesforce``."""

from __future__ import annotations

from local.sandboxes.salesforce.main import main
from local.sandboxes.salesforce.notify import OutboundMessage
from local.sandboxes.salesforce.sandbox import SalesforceSandbox, ValidationRule

__all__ = ["OutboundMessage", "SalesforceSandbox", "ValidationRule", "main"]
