"""Fixtures shared by the agent tests."""

from __future__ import annotations

import os

import pytest

from gridpilot.agent.settings import ENV_PREFIX


@pytest.fixture(autouse=True)
def _no_gridpilot_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the environment: a developer's GRIDPILOT_* variables must not leak in."""
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
