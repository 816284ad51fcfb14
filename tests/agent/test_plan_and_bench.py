"""`gridpilot plan` and `gridpilot bench plan` on the bundled data and a synthetic site."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gridpilot.agent.bundled import REFERENCE_SITE
from gridpilot.agent.cli import EX_CONFIG, EX_DATAERR, main


def test_plan_prints_a_day_beside_the_baselines(capsys: pytest.CaptureFixture[str]) -> None:
    """The default day plan covers 24 hours and the agent earns at least what both baselines do
    on the same prices (it plans with them known)."""
    assert main(["plan"]) == 0
    out = capsys.readouterr().out
    assert "plan for 2024-08-20" in out
    assert "00:00" in out
    assert "23:00" in out
    profits = {}
    for line in out.splitlines():
        words = line.split()
        if words and words[0] in {"agent", "always_on", "threshold"}:
            profits[words[0]] = float(words[1].replace(",", ""))
    assert profits.keys() == {"agent", "always_on", "threshold"}
    assert profits["agent"] >= profits["threshold"]
    assert profits["agent"] >= profits["always_on"]


def test_plan_on_a_dst_day_has_23_hours(capsys: pytest.CaptureFixture[str]) -> None:
    """On the spring-forward day the Central operating day has 92 quarter hours: 02:00 is absent."""
    assert main(["plan", "--day", "2024-03-10"]) == 0
    hours = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line[:2] == "  "]
    assert "01:00" in hours
    assert "03:00" in hours
    assert "02:00" not in hours


def test_plan_outside_the_data_exits_65(capsys: pytest.CaptureFixture[str]) -> None:
    """A day the recorded prices do not cover is a data error, exit 65, with the reason."""
    assert main(["plan", "--day", "2023-06-01"]) == EX_DATAERR
    err = capsys.readouterr().err
    assert "outside the recorded prices (2024-01-01T06:00:00+00:00 to" in err
    assert "'" not in err  # the message, not a KeyError's quoted repr


def test_plan_with_a_broken_config_exits_78(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One bad value in the site file exits 78 naming the file, the field and what it must be."""
    site = REFERENCE_SITE.read_text()
    assert "\ninterconnect_watts = 80e6\n" in site
    broken = tmp_path / "site.toml"
    broken.write_text(site.replace("\ninterconnect_watts = 80e6\n", "\ninterconnect_watts = -5\n"))
    assert main(["plan", "--config", str(broken)]) == EX_CONFIG
    captured = capsys.readouterr()
    assert f"gridpilot: {broken}: 1 problem in the site file:" in captured.err
    assert "  site.interconnect_watts: Input should be greater than 0 (got -5)" in captured.err
    assert captured.out == ""


def test_bench_plan_json_has_the_documented_keys(capsys: pytest.CaptureFixture[str]) -> None:
    """`bench plan --json` prints one object with medians and the plan status."""
    assert main(["bench", "plan", "--groups", "20", "--steps", "24", "--runs", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"groups", "steps", "runs", "build_s", "solve_s", "total_s", "status"} <= result.keys()
    assert (result["groups"], result["steps"], result["runs"]) == (20, 24, 2)
    assert result["status"] == "optimal"
    assert 0 < result["build_s"] <= result["total_s"]


def test_bench_plan_text_and_full_resolution(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json the figures are printed for people; --full-resolution decides every step."""
    assert (
        main(
            ["bench", "plan", "--groups", "10", "--steps", "48", "--runs", "1", "--full-resolution"]
        )
        == 0
    )
    assert "10 groups x 48 steps (48 decided" in capsys.readouterr().out


def test_bench_rejects_nonsense_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    """Zero groups is refused by the argument parser with a message."""
    with pytest.raises(SystemExit):
        main(["bench", "plan", "--groups", "0"])
    assert "positive whole number" in capsys.readouterr().err
