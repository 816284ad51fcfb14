"""The ledger-disk trial of `gridpilot bench reliability` (agent.bench.disk): the real agent
process with its ledger on a real tmpfs, filled to its last block and then read-only."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridpilot.adapters.broker import LocalBroker
from gridpilot.agent.bench.disk import disk_trial
from gridpilot.agent.bench.guard import bench_site


def test_a_full_ledger_disk_keeps_the_guard_on_and_a_read_only_one_stops_the_start(
    tmp_path: Path,
) -> None:
    """The disk full: the guard sheds within a second, the plan made meanwhile is not carried
    out, the failures are said, the agent stays online, the ledger stays intact, and with room
    again a plan is recorded; an agent started on the disk read-only exits 73."""
    with LocalBroker() as broker:
        site = bench_site(8, broker.port, broker.host, tmp_path).read_text()
        result = disk_trial(broker, site, tmp_path)
    if result.skipped:
        pytest.skip(result.skipped)
    assert 0 < result.shed_ms < 1_000
    assert result.plan_refused
    assert result.failures_logged >= 1
    assert result.alive
    assert result.recovered and result.recovered_s < 60
    assert result.ledger_intact
    assert result.start_read_only_exit == 73
