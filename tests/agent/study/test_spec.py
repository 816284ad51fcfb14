"""The study file: its grid of scenarios, their keys, and its errors (exit 78 naming the
field)."""

from __future__ import annotations

import itertools
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from gridpilot.agent.bundled import REFERENCE_SITE, bundled
from gridpilot.agent.cli import EX_CONFIG, main
from gridpilot.agent.study.scenario import (
    BusinessModel,
    Capex,
    ContractMix,
    HashpricePath,
    Scenario,
    Window,
)
from gridpilot.agent.study.spec import SpecError, load_spec
from tests.agent.study.conftest import SMALL_STUDY, write_spec

EXAMPLE = bundled("examples/study.toml")


def test_the_example_study_is_48_scenarios_of_the_issue() -> None:
    """The shipped example sweeps 6 AI shares from 0 to 1, hosting at 140,000 $/MW-month and
    cloud at 2.0 $/GPU-hour and 70 %, 2023 and 2024, agent and threshold: 48 whole years on
    the bundled reference site, each with its own key."""
    spec = load_spec(EXAMPLE)
    assert len(spec.scenarios) == 48
    assert len({s.key() for s in spec.scenarios}) == 48
    assert spec.site == REFERENCE_SITE
    assert spec.axes["ai_share"] == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    models = {s.business for s in spec.scenarios}
    assert models == {
        BusinessModel("hosting", "hosting", usd_per_mw_month=140_000.0),
        BusinessModel("cloud", "cloud", usd_per_gpu_hour=2.0, utilisation=0.7),
    }
    assert {(s.year, s.strategy, s.workload, s.hub) for s in spec.scenarios} == {
        (year, strategy, "training", "HB_WEST")
        for year in (2023, 2024)
        for strategy in ("agent", "threshold")
    }
    assert all(
        s.window is None and s.hashprice == HashpricePath("recorded") for s in spec.scenarios
    )


def test_the_grid_is_the_product_of_the_axes(tmp_path: Path) -> None:
    """Every combination of the axes' values is one scenario, and there are no others."""
    text = SMALL_STUDY.replace(
        "year = [2024]",
        'year = [2023, 2024]\nhub = ["HB_WEST", "HB_NORTH"]\nhashprice = ["recorded", "half"]',
    ).replace("[window]", '[hashprice_paths.half]\nkind = "scaled"\nfactor = 0.5\n\n[window]')
    spec = load_spec(write_spec(tmp_path, text))
    found = [
        (s.ai_share, s.business.name, s.year, s.hub, s.hashprice.name, s.strategy)
        for s in spec.scenarios
    ]
    expected = itertools.product(
        (0.0, 0.5),
        ("hosting", "cloud"),
        (2023, 2024),
        ("HB_WEST", "HB_NORTH"),
        ("recorded", "half"),
        ("threshold",),
    )
    assert sorted(found) == sorted(expected)
    assert len(found) == 32
    half = next(s.hashprice for s in spec.scenarios if s.hashprice.name == "half")
    assert half == HashpricePath("half", "scaled", factor=0.5)
    assert {s.window for s in spec.scenarios} == {Window(228, 231)}


def test_a_window_of_dates_is_the_same_days(tmp_path: Path) -> None:
    """`start = 2024-08-15` and `end = 2024-08-18` (exclusive) are days 228 to 230 of 2024,
    a leap year."""
    text = SMALL_STUDY.replace("start = 228\nend = 231", 'start = 2024-08-15\nend = "2024-08-18"')
    spec = load_spec(write_spec(tmp_path, text))
    assert {s.window for s in spec.scenarios} == {Window(228, 231)}


def _scenario() -> Scenario:
    return Scenario(
        ai_share=0.4,
        business=BusinessModel("hosting", "hosting", usd_per_mw_month=140_000.0),
        workload="training",
        mix=ContractMix("reference", 0.6, 0.28, 0.12),
        year=2024,
        hub="HB_WEST",
        hashprice=HashpricePath("recorded"),
        strategy="agent",
        capex=Capex(),
        window=Window(228, 231),
    )


def _changed(value: Any) -> Any:
    """A different value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    raise TypeError(value)


def _variants(scenario: Scenario) -> list[tuple[str, Scenario]]:
    """The scenario with each of its inputs, nested ones included, changed alone."""
    variants: list[tuple[str, Scenario]] = []
    for field in fields(scenario):
        value: Any = getattr(scenario, field.name)
        if is_dataclass(value) and not isinstance(value, type):
            for inner in fields(value):
                changes: dict[str, Any] = {inner.name: _changed(getattr(value, inner.name))}
                nested: dict[str, Any] = {field.name: replace(value, **changes)}
                variants.append((f"{field.name}.{inner.name}", replace(scenario, **nested)))
        else:
            changed: dict[str, Any] = {field.name: _changed(value)}
            variants.append((field.name, replace(scenario, **changed)))
    variants.append(("window", replace(scenario, window=None)))
    return variants


def test_keys_are_stable_and_differ_when_any_input_does() -> None:
    """A scenario's key is the same in every run (pinned here: a change to it re-runs every
    study's results, so it changes with SCENARIO_VERSION only), and changing any one input,
    nested ones included, changes it."""
    scenario = _scenario()
    assert scenario.key() == _scenario().key() == "e718b5d6468a52a2"
    variants = _variants(scenario)
    assert len(variants) == 25  # every field of every part, and a window against none
    keys = {name: variant.key() for name, variant in variants}
    assert scenario.key() not in keys.values()
    assert len(set(keys.values())) == len(keys)


def test_a_whole_year_is_keyed_without_the_window_field() -> None:
    """A scenario of the whole year hashes its inputs without the window field, as keys were
    before windows existed (pinned: it changes with SCENARIO_VERSION only)."""
    whole = replace(_scenario(), window=None)
    assert whole.span()[0].isoformat() == "2024-01-01T06:00:00+00:00"
    assert whole.span()[1].isoformat() == "2025-01-01T06:00:00+00:00"
    assert whole.inputs()["window_end_day"] == 367
    assert whole.key() == "db4f18aed0af81eb"


BROKEN = [
    ("ai_share = [0.0, 0.5]", "ai_shares = [0.0, 0.5]", "axes.ai_shares: unknown key"),
    ("ai_share = [0.0, 0.5]", "ai_share = [0.0, 1.5]", "axes.ai_share[1]: Input should be less"),
    ("ai_share = [0.0, 0.5]", "ai_share = [0.5, 0.5]", "axes.ai_share: 0.5 is listed twice"),
    ('"hosting", "cloud"]', '"hosting", "colo"]', "axes.business_model[1]: 'colo' is no"),
    ('strategy = ["threshold"]', 'strategy = ["greedy"]', "axes.strategy[0]: Input should be"),
    ("year = [2024]", "year = [2022]", "axes.year[0]: no bundled prices for 2022; use 2023, 2024"),
    ("year = [2024]", 'year = [2024]\nhub = ["HB_NOWHERE"]', "axes.hub[0]: 'HB_NOWHERE' is not in"),
    (
        "interruptible = 0.12",
        "interruptible = 0.2",
        "contract_mixes.reference: firm + flex + interruptible is 1.08",
    ),
    ("utilisation = 0.7", "", "business_models.cloud.utilisation: Field required"),
    ('kind = "cloud"', 'kind = "lease"', "business_models.cloud: Input tag 'lease'"),
    ("start = 228", "start = 2023-08-15", "window.start: the date 2023-08-15 is not in the"),
    ("end = 231", "end = 368", "window.end: day 367 is past the end of 2024"),
    ("end = 231", "end = 228", "window: start 228 up to end 228 (exclusive) is not a window"),
    ("start = 228", 'start = "soon"', "window.start: a day-of-year number"),
    ("[axes]", 'site = "nowhere.toml"\n[axes]', "site: no site file at"),
    ("[axes]", "[axes", "TOML syntax error"),
]


@pytest.mark.parametrize(("old", "new", "message"), BROKEN, ids=[b[2][:40] for b in BROKEN])
def test_a_broken_study_file_exits_78_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, message: str
) -> None:
    """Each kind of mistake exits 78 before anything runs, with the field and what is wrong."""
    assert old in SMALL_STUDY
    path = write_spec(tmp_path, SMALL_STUDY.replace(old, new, 1))
    assert main(["study", str(path), "--out", str(tmp_path / "out")]) == EX_CONFIG
    err = capsys.readouterr().err
    assert f"gridpilot: {path}: " in err
    assert f"  {message}" in err
    assert not (tmp_path / "out").exists()


def test_a_site_a_study_cannot_use_exits_78(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A base site file with an invalid value is the site file's error, exit 78 naming it."""
    site = REFERENCE_SITE.read_text()
    assert "\ninterconnect_watts = 80e6\n" in site
    (tmp_path / "site.toml").write_text(
        site.replace("interconnect_watts = 80e6", "interconnect_watts = -5")
    )
    path = write_spec(tmp_path, 'site = "site.toml"\n' + SMALL_STUDY)
    assert main(["study", str(path), "--out", str(tmp_path / "out")]) == EX_CONFIG
    assert "site.interconnect_watts: Input should be greater than 0" in capsys.readouterr().err


def test_spec_errors_list_every_problem(tmp_path: Path) -> None:
    """All the file's problems come at once, each with its own path."""
    text = SMALL_STUDY.replace("year = [2024]", "year = [2022]").replace('"cloud"]', '"colo"]')
    with pytest.raises(SpecError) as raised:
        load_spec(write_spec(tmp_path, text))
    assert [path for path, _ in raised.value.issues] == ["axes.business_model[1]", "axes.year[0]"]
