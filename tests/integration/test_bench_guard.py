"""`gridpilot bench guard` works end to end (its figures are for `make bench-guard`)."""

from __future__ import annotations

import json

import pytest

from gridpilot.adapters.broker import LocalBroker
from gridpilot.agent.bench.guard import bench_guard
from gridpilot.agent.cli import main


def test_bench_guard_times_every_trial_on_a_given_broker(broker: LocalBroker) -> None:
    """On a broker it is given, every trial sheds and is timed, beside the broker's round
    trip, and the bench leaves no retained command behind."""
    result = bench_guard(8, 15, broker=(broker.host, broker.port))
    assert result.groups == 8
    assert result.trials == 15
    assert 0 < result.p50_ms <= result.p99_ms
    assert 0 < result.broker_p50_ms <= result.broker_p99_ms
    assert set(json.loads(result.as_json())) == {
        "groups",
        "trials",
        "p50_ms",
        "p99_ms",
        "broker_p50_ms",
        "broker_p99_ms",
    }
    assert "p99" in result.as_text()


def test_bench_guard_command_starts_its_own_broker(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --broker the command starts a private Mosquitto and prints one JSON object."""
    assert main(["bench", "guard", "--groups", "4", "--trials", "5", "--json"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1])["trials"] == 5
