"""`gridpilot bench study`."""

from __future__ import annotations

import json

import pytest

from gridpilot.agent.cli import main


def test_bench_study_prints_scenarios_per_minute(capsys: pytest.CaptureFixture[str]) -> None:
    """Two scenarios on one worker: one JSON object with the wall time and the rate, none
    failed."""
    assert main(["bench", "study", "--workers", "1", "--scenarios", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["scenarios"], result["days"]) == (2, 3)
    (run,) = result["runs"]
    assert (run["workers"], run["failed"]) == (1, 0)
    assert run["scenarios_per_minute"] == pytest.approx(60 * 2 / run["wall_s"], rel=0.01)
