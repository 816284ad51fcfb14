"""`gridpilot bench reliability` end to end on small counts (its figures are for `make
reliability`): the real Mosquitto restarted, the real agent process killed, fuzzed payloads.
The stale-feed and disk trials have their own tests (test_bench_stale.py, test_bench_disk.py)."""

from __future__ import annotations

import json

import pytest

from gridpilot.agent.cli import main


def test_bench_reliability_survives_a_restart_a_kill_and_fuzzing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One broker restart, two kills, 300 payloads per topic: recovered, nothing lost, the
    ledger intact, every reject under a known reason and no internal error."""
    args = ["bench", "reliability", "--restarts", "1", "--kills", "2", "--fuzz", "300"]
    # Each of these trials has its own test: test_bench_stale.py, _disk, _outage, _load.
    args += ["--stale-feeds", "--no-disk", "--no-outage", "--load-seconds", "0", "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["restarts"] == 1
    assert 0 < result["recovery_max_s"] < 30
    assert result["commands_lost"] == 0
    assert result["ledger_intact"] == result["kills"] == 2
    assert result["allowance_fell"] == 0
    assert result["allowance_over_bound"] == 0
    assert 0 < result["republish_max_s"] < 30
    assert result["fuzz_internal_errors"] == 0
    assert result["fuzz_unknown_reasons"] == []
    assert sum(result["fuzz_rejects"].values()) > 0
    assert result["broker_sample"] == 6 * 3  # every 100th of 300, per topic
    assert result["stale"] == []
    assert result["disk"] is None
    assert result["outage"] is None
    assert result["load"] is None
