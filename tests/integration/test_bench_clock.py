"""The wall-clock trial of `gridpilot bench reliability` (agent.bench.clock): the real agent
process under libfaketime, its wall clock stepped while its monotonic clock runs on."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridpilot.adapters.broker import LocalBroker
from gridpilot.agent.bench.clock import clock_trial
from gridpilot.agent.bench.guard import bench_site
from gridpilot.agent.bench.reliability import with_gpu_hall


def test_clock_jumps_across_a_month_end_charge_each_month_its_own_span_once(
    tmp_path: Path,
) -> None:
    """From 2026-11-30 23:20 UTC an hour forward, back and forward again, with the GPU hall
    capped: November is charged to its midnight and December from it, each to the mark's
    node-hour; the hour back charges nothing and leaves the mark; no third month appears."""
    with LocalBroker() as broker:
        site = bench_site(8, broker.port, broker.host, tmp_path).read_text()
        result = clock_trial(broker, with_gpu_hall(site, plan_interval_s=86_400), tmp_path)
    if result.skipped:
        pytest.skip(result.skipped)
    assert result.nodes > 0
    assert result.november_h == pytest.approx(result.november_expected_h, abs=1e-6)
    assert result.december_h == pytest.approx(result.december_expected_h, abs=1e-6)
    # Forty minutes of November after 23:20 and about twenty of December: the jump counted.
    assert result.november_h == pytest.approx(result.nodes * 40 / 60, rel=0.02)
    assert result.december_h >= result.nodes * 20 / 60
    assert result.back_charged_h == 0
    assert not result.mark_moved_back
    assert result.months == ["2026-11-01", "2026-12-01"]
    assert result.right
