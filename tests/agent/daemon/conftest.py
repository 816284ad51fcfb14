"""Fixtures shared by the daemon's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gridpilot.agent.daemon.ledger import Ledger


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    """A fresh ledger in the test's folder, closed after it."""
    with Ledger.open(tmp_path / "ledger.sqlite3") as opened:
        yield opened
