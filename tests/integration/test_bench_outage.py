"""The broker-outage trial of `gridpilot bench reliability` (agent.bench.outage): the real agent
process and the real Mosquitto, stopped for longer than the meter's age and started again."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gridpilot.adapters.broker import LocalBroker
from gridpilot.agent.bench.outage import outage_trial


def test_safe_mode_decided_while_the_broker_is_down_reaches_it_and_the_guard_sheds_after(
    tmp_path: Path,
) -> None:
    """With the broker gone for 6 s the meter goes stale and the agent goes safe on its own;
    the restarted broker (which forgot every retained message) gets safe mode's commands,
    within the safe share, and the guard sheds at the first reading over the cap after."""
    with LocalBroker() as broker:
        result = asyncio.run(outage_trial(broker, tmp_path, down_s=6.0))
    assert result.safe_while_down
    assert result.safe_share_kept
    assert 0 < result.draw_watts <= result.safe_watts
    assert 0 < result.commands_back_s < 30
    assert 0 < result.normal_after_s < 30
    assert 0 < result.guard_after_ms < 30_000
