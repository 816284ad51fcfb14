"""The daemon's code stays in parts a reader can hold at once (tests/code_sizes.py)."""

from __future__ import annotations

import pytest

from tests.code_sizes import Unit, units

LIMITS = {"class": 250, "function": 60}  # lines, as `make sizes` counts them


def _daemon_units() -> list[Unit]:
    return [u for u in units() if u.path.startswith("agent/daemon/")]


def test_the_daemon_package_is_measured() -> None:
    """The measure sees the daemon's parts (so the limits below are not held over nothing)."""
    names = {u.name for u in _daemon_units()}
    assert {"Daemon", "Inputs", "GuardLoop", "PlanningCycle", "Publisher"} <= names


@pytest.mark.parametrize("kind", sorted(LIMITS))
def test_no_class_or_function_of_the_daemon_is_over_its_limit(kind: str) -> None:
    """No class in agent/daemon/ is over 250 lines and no function over 60."""
    over = [
        f"{u.name} ({u.path}): {u.lines} lines"
        for u in _daemon_units()
        if u.kind == kind and u.lines > LIMITS[kind]
    ]
    assert over == []
