"""The stale-feed trial of `gridpilot bench reliability` (agent.bench.stale): the real agent
process, the real Mosquitto and the real Prometheus with the shipped rules."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from gridpilot.adapters.broker import LocalBroker
from gridpilot.agent.bench.guard import bench_site
from gridpilot.agent.bench.stale import stale_feeds


def test_a_stopped_meter_makes_the_agent_safe_and_a_stopped_forecast_only_alerts(
    tmp_path: Path,
) -> None:
    """The meter stopped: safe mode within seconds of its age passing, the shipped alert firing
    after its 30 s, both gone within seconds of its return; the forecast stopped: its own
    alert after the same 30 s, and no safe mode."""
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed; `make test` installs it")
    with LocalBroker() as broker:
        site = bench_site(8, broker.port, broker.host, tmp_path).read_text()
        meter, forecast = asyncio.run(stale_feeds(broker, site, tmp_path, ("meter", "forecast")))
    assert (meter.feed, forecast.feed) == ("meter", "forecast")
    assert meter.safe_while_stale
    assert not forecast.safe_while_stale
    assert meter.safe_after_s is not None and 0 <= meter.safe_after_s < 5
    assert meter.normal_after_s is not None and 0 <= meter.normal_after_s < 5
    assert forecast.safe_after_s is None and forecast.normal_after_s is None
    for stopped in (meter, forecast):
        assert 29 <= stopped.alert_after_s < 90  # the rule's `for: 30s`, then scrapes
        assert 0 <= stopped.alert_cleared_s < 30
