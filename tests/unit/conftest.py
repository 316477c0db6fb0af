"""Unit tier: no network at all. pytest-socket refuses every socket, so a test that reaches for
one fails loudly instead of silently depending on a server."""

from __future__ import annotations

import pytest
from pytest_socket import disable_socket


@pytest.fixture(autouse=True)
def _no_sockets() -> None:
    disable_socket(allow_unix_socket=False)
