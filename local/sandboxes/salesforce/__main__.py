from __future__ import annotations

from local.sandboxes.salesforce.main import main

main()
