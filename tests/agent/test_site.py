"""From settings to optimizer values: containers, contracts and the merit order."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridpilot.adapters.grid import read_transmission_rates
from gridpilot.adapters.recorded import NotRecordedError
from gridpilot.agent import site
from gridpilot.agent.settings import load_settings
from gridpilot.optimizer.problem import PowerTarget, Tier
from tests.agent.site_files import REFERENCE_FILE, write_variant

RATES_FILE = "ercot_4cp_transmission_rates.csv"


def test_containers_are_expanded_with_the_remainder_last(tmp_path: Path) -> None:
    """An entry of 450 miners in containers of 200 becomes groups of 200, 200 and 50."""
    path = write_variant(tmp_path, ("count = 8000", "count = 450"))

    groups = [g for g in site.asic_groups(load_settings(path)) if g.model == "Antminer S19j Pro"]

    assert [(g.name, g.units) for g in groups] == [
        ("s19jpro-01", 200),
        ("s19jpro-02", 200),
        ("s19jpro-03", 50),
    ]
    assert all(g.overhead_factor == 1.05 and g.wake_loss_s == 600 for g in groups)


def test_reference_asics_become_95_containers() -> None:
    """The reference site's 19,000 miners become 40 + 30 + 25 containers of 200."""
    groups = site.asic_groups(load_settings(REFERENCE_FILE))

    assert len(groups) == 95
    assert groups[0].name == "s19jpro-01"
    assert groups[-1].name == "s21-25"
    assert {g.units for g in groups} == {200}


def test_power_target_is_carried_over(tmp_path: Path) -> None:
    """A firmware power-target table reaches the optimizer's group unchanged."""
    path = write_variant(
        tmp_path,
        (
            "wake_loss_s = 600",
            "wake_loss_s = 600\npower_target = { min_watts_per_unit = 2000,"
            " hash_fraction_at_min = 0.7 }",
        ),
    )

    group = site.asic_groups(load_settings(path))[0]

    assert group.power_target == PowerTarget(min_watts_per_unit=2000, hash_fraction_at_min=0.7)


def test_gpu_groups_split_by_nodes_per_group(tmp_path: Path) -> None:
    """`nodes_per_group` splits a GPU entry like containers; each part keeps the contract."""
    path = write_variant(
        tmp_path, ('contract = "firm"', 'contract = "firm"\nnodes_per_group = 600')
    )

    groups = [g for g in site.gpu_groups(load_settings(path)) if g.contract == "firm"]

    assert [(g.name, g.nodes) for g in groups] == [
        ("h100-firm-01", 600),
        ("h100-firm-02", 600),
        ("h100-firm-03", 300),
    ]
    assert groups[0].full_node_watts == 8 * 700 + 1500
    assert groups[0].overhead_factor == 1.25


def test_contract_allowance_is_in_node_hours() -> None:
    """Allowance hours at full size become node-hours over the nodes serving each contract."""
    contracts = {c.name: c for c in site.contracts(load_settings(REFERENCE_FILE))}

    assert contracts["firm"].allowance_node_hours == 0
    assert contracts["flex"].allowance_node_hours == 100 * 700
    assert contracts["interruptible"].allowance_node_hours == 40 * 300
    assert contracts["flex"].min_power_fraction == 0.6
    assert contracts["interruptible"].max_event_s == 14_400
    assert contracts["interruptible"].notice_s == 900
    assert contracts["firm"].min_power_fraction == 0.0


def test_merit_order_sheds_least_efficient_miners_first_then_cheapest_gpus() -> None:
    """ASICs come first from the lowest breakeven up, then GPUs from the lowest value up."""
    rows = site.merit_order(load_settings(REFERENCE_FILE), 0.05)

    asics = [row for row in rows if isinstance(row, site.AsicMerit)]
    gpus = [row for row in rows if isinstance(row, site.GpuMerit)]
    assert rows == [*asics, *gpus]
    assert [row.model for row in asics] == ["Antminer S19j Pro", "Antminer S19 XP", "Antminer S21"]
    breakevens = [row.breakeven_usd_per_mwh for row in asics]
    assert breakevens == pytest.approx([68.3, 96.9, 119.0], abs=0.1)
    s21 = asics[-1]
    assert s21.breakeven_at_meter_usd_per_mwh == pytest.approx(119.05 * 0.98 / 1.05, abs=0.01)
    assert [row.tier for row in gpus] == [Tier.INTERRUPTIBLE, Tier.FLEXIBLE, Tier.FIRM]
    firm = gpus[-1]
    assert firm.value_usd_per_mwh == pytest.approx(2.10 * 8 / 0.0071)
    assert firm.value_at_meter_usd_per_mwh == pytest.approx(firm.value_usd_per_mwh / 1.25)


def test_reserve_products_reach_every_container_as_frozensets() -> None:
    """Each S21 container carries RRS, ECRS and NSPIN, each S19 XP ECRS and NSPIN, the rest none."""
    groups = site.asic_groups(load_settings(REFERENCE_FILE))

    by_entry: dict[str, set[frozenset[str]]] = {}
    for group in groups:
        by_entry.setdefault(group.name.rsplit("-", 1)[0], set()).add(group.reserve_products)
    assert by_entry == {
        "s19jpro": {frozenset()},
        "s19xp": {frozenset({"ECRS", "NSPIN"})},
        "s21": {frozenset({"RRS", "ECRS", "NSPIN"})},
    }
    assert all(
        g.reserve_products == frozenset() for g in site.gpu_groups(load_settings(REFERENCE_FILE))
    )


def test_gpu_reserve_qualification_reaches_the_optimizer(tmp_path: Path) -> None:
    """A qualified interruptible GPU entry's groups carry its products, and the summary counts
    its nodes at full power with the hall's overhead."""
    path = write_variant(
        tmp_path,
        (
            'contract = "interruptible"\n',
            'contract = "interruptible"\nreserve_products = ["NSPIN"]\nnodes_per_group = 100\n',
        ),
    )
    settings = load_settings(path)

    qualified = [g for g in site.gpu_groups(settings) if g.reserve_products]
    assert [(g.name, g.reserve_products) for g in qualified] == [
        (f"h100-interruptible-0{k}", frozenset({"NSPIN"})) for k in (1, 2, 3)
    ]
    gpu = site.reserve_qualifications(settings)[-1]
    assert (gpu.name, gpu.kind, gpu.products, gpu.groups) == (
        "h100-interruptible",
        "gpu",
        ("NSPIN",),
        3,
    )
    assert gpu.full_power_watts == pytest.approx(300 * (8 * 700 + 1500) * 1.25)


def test_reserve_qualifications_give_each_entry_at_full_power() -> None:
    """The S19 XP entry qualifies 6,000 x 3,010 W and the S21 5,000 x 3,500 W, with overhead."""
    rows = site.reserve_qualifications(load_settings(REFERENCE_FILE))

    assert [(q.name, q.kind, q.groups) for q in rows] == [
        ("s19xp", "asic", 30),
        ("s21", "asic", 25),
    ]
    assert rows[0].full_power_watts == pytest.approx(6_000 * 3_010 * 1.05)
    assert rows[1].full_power_watts == pytest.approx(5_000 * 3_500 * 1.05)


def test_transmission_rate_is_the_files_unless_the_site_sets_one(tmp_path: Path) -> None:
    """Unset, the rate is the rates file's for the year billed; set, it is the site's for any
    year."""
    rates = read_transmission_rates(REFERENCE_FILE.parents[1] / "data" / RATES_FILE)
    settings = load_settings(REFERENCE_FILE)

    assert site.transmission_usd_per_kw_year(settings, rates, 2025) == pytest.approx(
        68.547, abs=5e-4
    )
    with pytest.raises(NotRecordedError, match="charge year 2030"):
        site.transmission_usd_per_kw_year(settings, rates, 2030)
    path = tmp_path / "site.toml"
    path.write_text(
        REFERENCE_FILE.read_text(encoding="utf-8")
        + "\n[programs]\ntransmission_usd_per_kw_year = 70\n",
        encoding="utf-8",
    )
    assert site.transmission_usd_per_kw_year(load_settings(path), rates, 2030) == 70
