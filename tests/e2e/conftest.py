from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.e2e.make_run import MakeRun

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def make_run() -> Iterator[MakeRun]:
    run = MakeRun()
    yield run
    run.kill()
