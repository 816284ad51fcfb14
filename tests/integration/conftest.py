"""A real Mosquitto per test, on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gridpilot.adapters.broker import LocalBroker


@pytest.fixture
def broker() -> Iterator[LocalBroker]:
    with LocalBroker() as running:
        yield running
