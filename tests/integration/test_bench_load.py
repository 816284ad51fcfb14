"""The load trial of `gridpilot bench reliability` (agent.bench.load), short: the real agent
process and the real Mosquitto, a few hundred meters at 10 Hz."""

from __future__ import annotations

import math

from gridpilot.agent.bench.load import load_trial


def test_every_reading_under_load_is_taken_and_every_called_for_shed_arrives() -> None:
    """200 meters at 10 Hz for 15 s: every reading sent is counted by the agent as taken (none
    lost without a counted reason), each over-cap reading brings exactly the sheds the guard's
    rule calls for, the agent's memory is read, and its metrics endpoint listens on loopback
    alone, by default."""
    result = load_trial(meters=200, rate_hz=10.0, seconds=15.0)
    assert result.readings_sent >= 200 * 10 * 15
    assert result.rejected == {}
    assert result.unaccounted() == 0
    assert result.trials >= 5  # about one a second after the first 3 s
    assert 0 < result.guard_p50_ms <= result.guard_p99_ms <= result.guard_max_ms
    assert math.isfinite(result.guard_max_ms)
    assert 0 < result.rss_start_mb <= result.rss_peak_mb
    assert result.metrics_bound_to == ["127.0.0.1"]
