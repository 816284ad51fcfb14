"""The site file: what loads, what the environment overrides, and what a bad file reports."""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path

import pytest

from gridpilot.agent import site
from gridpilot.agent.settings import (
    DEFAULT_FAILURE_USD_PER_MW_H,
    RESERVE_PRODUCTS,
    ConfigError,
    Settings,
    default_ledger_path,
    load_settings,
)
from gridpilot.optimizer.problem import Tier
from tests.agent.site_files import REFERENCE_FILE, write_variant


def _issues(path: Path) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return caught.value.issues


def test_reference_site_loads_with_its_totals() -> None:
    """The reference file loads into the documented 80 MW site: 19,000 miners, 2,500 GPU nodes."""
    settings = load_settings(REFERENCE_FILE)

    assert type(settings) is Settings
    assert settings.site.name == "west-texas"
    assert settings.site.settlement_point == "HB_WEST"
    assert settings.site.interconnect_watts == 80e6
    assert settings.site.margin_watts == 1.6e6
    assert sum(entry.count for entry in settings.asic_groups) == 19_000
    assert sum(entry.nodes for entry in settings.gpu_groups) == 2_500
    assert [c.name for c in settings.contracts] == ["firm", "flex", "interruptible"]
    assert [c.tier for c in settings.contracts] == [Tier.FIRM, Tier.FLEXIBLE, Tier.INTERRUPTIBLE]
    assert [c.billed_when_curtailed for c in settings.contracts] == [False, True, False]
    assert site.asic_peak_watts(settings) == pytest.approx(59.96e6 * 1.05)
    assert site.gpu_peak_watts(settings) == pytest.approx(2_500 * 7_100 * 1.25)


def test_loading_twice_gives_equal_settings() -> None:
    """Settings are plain values: the same file loads to equal, hashable settings."""
    first, second = load_settings(REFERENCE_FILE), load_settings(REFERENCE_FILE)

    assert first == second
    assert hash(first.site) == hash(second.site)


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GRIDPILOT_SECTION__KEY variable wins over the file and leaves the section's other keys."""
    monkeypatch.setenv("GRIDPILOT_SITE__INTERCONNECT_WATTS", "7e7")

    settings = load_settings(REFERENCE_FILE)

    assert settings.site.interconnect_watts == 7e7
    assert settings.site.margin_watts == 1.6e6
    assert settings.site.settlement_point == "HB_WEST"


def test_invalid_environment_override_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """An override is validated like the file: a margin above the limit names the field."""
    monkeypatch.setenv("GRIDPILOT_SITE__MARGIN_WATTS", "9e7")

    [(path, message)] = _issues(REFERENCE_FILE)

    assert path == "site.margin_watts"
    assert "not below interconnect_watts" in message


def test_environment_section_that_is_not_json_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole section overridden with text that is not JSON is a ConfigError saying the fix."""
    monkeypatch.setenv("GRIDPILOT_SITE", "west-texas")

    with pytest.raises(ConfigError) as caught:
        load_settings(REFERENCE_FILE)

    assert 'field "site"' in str(caught.value)
    assert "GRIDPILOT_<SECTION>__<KEY>" in str(caught.value)


def test_unknown_key_is_rejected_naming_it(tmp_path: Path) -> None:
    """A misspelt key is an error at its own path, with the key it was probably meant to be."""
    path = write_variant(tmp_path, ("margin_watts = 1.6e6", "margin_wats = 1.6e6"))

    issues = dict(_issues(path))

    assert issues["site.margin_wats"] == "not a known setting; did you mean 'margin_watts'?"
    assert issues["site.margin_watts"].startswith("required but missing")


def test_unknown_section_is_rejected(tmp_path: Path) -> None:
    """A section the agent does not know yet is an error listing the sections it does know."""
    path = write_variant(tmp_path, ("[site]", '[metrics]\nhost = "localhost"\n\n[site]'))

    [(where, message)] = _issues(path)

    assert where == "metrics"
    assert message.endswith(
        "use one of: site, contracts, asic_groups, gpu_groups, programs, mqtt, agent, devices"
    )


def test_bad_contract_reference_names_the_field_and_the_fix(tmp_path: Path) -> None:
    """A GPU group serving an undefined contract names its field and the contracts to pick."""
    path = write_variant(tmp_path, ('contract = "flex"', 'contract = "flexx"'))

    assert _issues(path) == [
        (
            "gpu_groups[1].contract",
            "'flexx' is not a contract; define it under [[contracts]] or use one of:"
            " firm, flex, interruptible",
        )
    ]


def test_unsorted_cap_levels_are_rejected(tmp_path: Path) -> None:
    """Cap levels out of order are reported at the group's cap_levels with the offending level."""
    path = write_variant(tmp_path, ("watts_per_gpu = 600,", "watts_per_gpu = 750,"))

    [(where, message)] = _issues(path)

    assert where == "gpu_groups[0].cap_levels"
    assert message.startswith("level 1 (750 W) is not below level 0 (700 W)")


def test_cap_levels_cannot_gain_throughput_at_lower_power(tmp_path: Path) -> None:
    """A lower cap keeping more throughput than a higher one is reported as a measurement error."""
    path = write_variant(tmp_path, ("throughput = 0.96 }", "throughput = 0.99 }"))

    [(where, message)] = _issues(path)

    assert where == "gpu_groups[0].cap_levels"
    assert "level 2 keeps more throughput (0.99) than level 1 (0.985)" in message


def test_flexible_fraction_must_leave_a_cap_usable(tmp_path: Path) -> None:
    """A flexible contract whose floor is above every cap below full power says how low to go."""
    path = write_variant(tmp_path, ("min_power_fraction = 0.6", "min_power_fraction = 0.9"))

    [(where, message)] = _issues(path)

    assert where == "contracts[1].min_power_fraction"
    assert "lower min_power_fraction to at most 0.857" in message


def test_min_power_fraction_only_on_a_flexible_contract(tmp_path: Path) -> None:
    """A capping floor on a contract that is never capped is an error, not a silent no-op."""
    path = write_variant(tmp_path, ("allowance_hours_per_month = 0", "min_power_fraction = 0.5"))

    [(where, message)] = _issues(path)

    assert where == "contracts[0].min_power_fraction"
    assert "set tier = 'flexible'" in message


def test_group_names_are_unique_after_containers_are_expanded(tmp_path: Path) -> None:
    """A group named like another entry's container collides, and the error says with which."""
    path = write_variant(tmp_path, ('name = "h100-firm"', 'name = "s21-07"'))

    [(where, message)] = _issues(path)

    assert where == "gpu_groups[0].name"
    assert message == "group 's21-07' is also named by asic_groups[2].name; rename one"


def test_billing_while_curtailed_defaults_by_tier(tmp_path: Path) -> None:
    """Unset, a flexible contract is billed while capped and an interruptible one is not."""
    path = write_variant(
        tmp_path,
        ("billed_when_curtailed = true", ""),
        ("notice_s = 900        # 15 minutes\nbilled_when_curtailed = false", "notice_s = 900"),
    )

    settings = load_settings(path)

    assert [c.billed_when_curtailed for c in settings.contracts] == [False, True, False]


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A file that does not exist is a ConfigError chained to the OS error, not silently empty."""
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "absent.toml")

    assert isinstance(caught.value.__cause__, FileNotFoundError)
    assert "cannot read the site file (No such file or directory)" in str(caught.value)


def test_toml_syntax_error_is_a_config_error(tmp_path: Path) -> None:
    """Broken TOML is a ConfigError giving the line, chained to the parser's error."""
    path = write_variant(tmp_path, ("[site]", "[site"))

    with pytest.raises(ConfigError) as caught:
        load_settings(path)

    assert isinstance(caught.value.__cause__, tomllib.TOMLDecodeError)
    assert "TOML syntax error" in str(caught.value)
    assert "line 9" in str(caught.value)


def test_config_error_lists_every_problem(tmp_path: Path) -> None:
    """All field problems are reported at once, one line each, naming the file."""
    path = write_variant(
        tmp_path, ("count = 6000", "count = -1"), ("pool_fee = 0.02", "pool_fee = 1")
    )

    with pytest.raises(ConfigError) as caught:
        load_settings(path)

    text = str(caught.value)
    assert text.startswith(f"{path}: 2 problems in the site file:")
    assert "\n  site.pool_fee: Input should be less than 1 (got 1)" in text
    assert "\n  asic_groups[1].count: Input should be greater than 0 (got -1)" in text


@pytest.mark.parametrize(
    ("environ", "euid", "expected"),
    [
        ({"STATE_DIRECTORY": "/var/lib/gridpilot"}, 998, "/var/lib/gridpilot/ledger.sqlite3"),
        ({"STATE_DIRECTORY": "/srv/a:/srv/b", "HOME": "/home/op"}, 0, "/srv/a/ledger.sqlite3"),
        ({"HOME": "/home/op"}, 0, "/var/lib/gridpilot/ledger.sqlite3"),
        ({"HOME": "/home/op"}, 1000, "/home/op/.local/state/gridpilot/ledger.sqlite3"),
        (
            {"HOME": "/home/op", "XDG_STATE_HOME": "/data/state"},
            1000,
            "/data/state/gridpilot/ledger.sqlite3",
        ),
    ],
    ids=["systemd", "systemd-first-of-many", "root", "user", "user-xdg"],
)
def test_the_ledger_defaults_to_a_state_directory_the_user_may_write(
    environ: dict[str, str], euid: int, expected: str
) -> None:
    """Unset, the ledger lives in systemd's state directory for the service, in /var/lib for
    root, and in the user's own state directory for anyone else."""
    assert default_ledger_path(environ, euid) == Path(expected)


def test_an_unset_ledger_path_follows_the_state_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The reference site, which leaves the ledger unset, puts it where systemd says."""
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path))
    assert load_settings(REFERENCE_FILE).agent.ledger_path == tmp_path / "ledger.sqlite3"


# --- Grid programs ---------------------------------------------------------------------------

PROGRAMS = """
[programs]
transmission_usd_per_kw_year = 70.5
cp_months = [9, 6, 7, 8]
failure_usd_per_mw_h = 250

[programs.deploy_chance_per_hour]
ECRS = 0.004

[[programs.ers]]
product = "ERS-10"
start = 2025-06-01
end = 2025-10-01
mw = 10
usd_per_mw_h = 8.5

[[programs.ers]]
product = "ERS-10"
start = 2025-10-01
end = 2026-02-01
mw = 8
usd_per_mw_h = 4

[[programs.ers]]
product = "ERS-30"
start = 2025-07-01
end = 2025-08-01
mw = 5
usd_per_mw_h = 3
"""


def _with_programs(tmp_path: Path, programs: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(REFERENCE_FILE.read_text(encoding="utf-8") + programs, encoding="utf-8")
    return path


def test_reference_site_qualifies_its_steady_miners_for_reserves() -> None:
    """The S21 (with under-frequency relays) carry RRS, ECRS and NSPIN, the S19 XP ECRS and
    NSPIN; the S19j Pro and the GPU hall carry none."""
    settings = load_settings(REFERENCE_FILE)

    qualified = {entry.name: entry.reserve_products for entry in settings.asic_groups}
    assert qualified == {"s19jpro": (), "s19xp": ("ECRS", "NSPIN"), "s21": ("RRS", "ECRS", "NSPIN")}
    assert all(entry.reserve_products == () for entry in settings.gpu_groups)


def test_programs_default_when_the_section_is_absent() -> None:
    """Without [programs] the rate comes from the rates file, 4CP months are June-September,
    no ERS is contracted and an award not held costs the documented default."""
    programs = load_settings(REFERENCE_FILE).programs

    assert programs.transmission_usd_per_kw_year is None
    assert programs.cp_months == (6, 7, 8, 9)
    assert programs.failure_usd_per_mw_h == DEFAULT_FAILURE_USD_PER_MW_H == 5_000
    assert programs.ers == ()
    assert [programs.deploy_chance(p) for p in RESERVE_PRODUCTS] == [0.0002, 0.001, 0.002]


def test_programs_section_reads_rates_months_chances_and_ers_periods(tmp_path: Path) -> None:
    """Given keys override the defaults one by one; ERS periods of one product may touch, and
    periods of different products may overlap."""
    programs = load_settings(_with_programs(tmp_path, PROGRAMS)).programs

    assert programs.transmission_usd_per_kw_year == 70.5
    assert programs.cp_months == (6, 7, 8, 9)
    assert programs.failure_usd_per_mw_h == 250
    assert programs.deploy_chance("ECRS") == 0.004
    assert programs.deploy_chance("RRS") == 0.0002
    assert [(e.product, e.start, e.end, e.mw) for e in programs.ers] == [
        ("ERS-10", date(2025, 6, 1), date(2025, 10, 1), 10),
        ("ERS-10", date(2025, 10, 1), date(2026, 2, 1), 8),
        ("ERS-30", date(2025, 7, 1), date(2025, 8, 1), 5),
    ]


def test_environment_overrides_a_deployment_chance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GRIDPILOT_PROGRAMS__DEPLOY_CHANCE_PER_HOUR__NSPIN reaches the one product it names."""
    monkeypatch.setenv("GRIDPILOT_PROGRAMS__DEPLOY_CHANCE_PER_HOUR__NSPIN", "0.01")

    programs = load_settings(REFERENCE_FILE).programs

    assert programs.deploy_chance("NSPIN") == 0.01
    assert programs.deploy_chance("ECRS") == 0.001


@pytest.mark.parametrize(
    ("products", "expected"),
    [
        ('["ECRS", "REGUP"]', "item 1 ('REGUP'): Regulation needs a Controllable Load Resource"),
        ('["ERS-10"]', "ERS-10'): Emergency Response Service is contracted per period"),
        ('["ecrs"]', "item 0 ('ecrs') is not a reserve product; did you mean 'ECRS'?"),
        ('["SPIN"]', "item 0 ('SPIN') is not a reserve product; use one of: RRS, ECRS, NSPIN"),
        ('["NSPIN", "NSPIN"]', "item 1 ('NSPIN') is listed twice"),
    ],
)
def test_a_product_a_group_cannot_carry_is_named_with_the_reason(
    tmp_path: Path, products: str, expected: str
) -> None:
    """Regulation, ERS, misspelt and repeated products are errors at the group's field."""
    path = write_variant(
        tmp_path, ('reserve_products = ["ECRS", "NSPIN"]', f"reserve_products = {products}")
    )

    [(where, message)] = _issues(path)

    assert where == "asic_groups[1].reserve_products"
    assert expected in message


def test_a_firm_gpu_group_cannot_carry_reserves(tmp_path: Path) -> None:
    """A firm contract's nodes are never dropped, so qualifying them is an error saying why."""
    path = write_variant(
        tmp_path, ('contract = "firm"\n', 'contract = "firm"\nreserve_products = ["ECRS"]\n')
    )

    [(where, message)] = _issues(path)

    assert where == "gpu_groups[0].reserve_products"
    assert "contract 'firm' is firm" in message


def test_an_interruptible_gpu_group_may_carry_reserves(tmp_path: Path) -> None:
    """A GPU group of an interruptible contract qualified for NSPIN loads."""
    path = write_variant(
        tmp_path,
        (
            'contract = "interruptible"\n',
            'contract = "interruptible"\nreserve_products = ["NSPIN"]\n',
        ),
    )

    assert load_settings(path).gpu_groups[2].reserve_products == ("NSPIN",)


def test_overlapping_ers_periods_of_one_product_are_rejected(tmp_path: Path) -> None:
    """A second ERS-10 period starting inside the first names its start and the other entry,
    even when a short period lies between them."""
    programs = PROGRAMS.replace("start = 2025-10-01", "start = 2025-09-15")
    programs += (
        '\n[[programs.ers]]\nproduct = "ERS-10"\nstart = 2025-06-10\nend = 2025-06-20\n'
        "mw = 1\nusd_per_mw_h = 1\n"
    )

    issues = _issues(_with_programs(tmp_path, programs))

    assert [where for where, _ in issues] == ["programs.ers[3].start", "programs.ers[1].start"]
    assert issues[1][1].startswith(
        "ERS-10 from 2025-09-15 overlaps programs.ers[0] (2025-06-01 up to 2025-10-01)"
    )


@pytest.mark.parametrize(
    ("old", "new", "where", "expected"),
    [
        ("end = 2025-10-01", "end = 2025-06-01", "programs.ers[0].end", "is not after start"),
        ("mw = 10", "mw = 0", "programs.ers[0].mw", "greater than 0"),
        ('product = "ERS-30"', 'product = "ERS-60"', "programs.ers[2].product", "'ERS-10' or"),
        ("usd_per_mw_h = 3", "usd_per_mw_h = -3", "programs.ers[2].usd_per_mw_h", "equal to 0"),
        ("cp_months = [9, 6, 7, 8]", "cp_months = [6, 13]", "programs.cp_months", "13 is not a"),
        ("cp_months = [9, 6, 7, 8]", "cp_months = [6, 6]", "programs.cp_months", "listed twice"),
        (
            "failure_usd_per_mw_h = 250",
            "failure_usd_per_mw_h = -1",
            "programs.failure",
            "equal to 0",
        ),
        ("ECRS = 0.004", "ECRS = 1.5", "programs.deploy_chance_per_hour.ECRS", "less than or eq"),
        ("ECRS = 0.004", "REGUP = 0.004", "programs.deploy_chance_per_hour.REGUP", "not a known"),
        ("70.5", "0", "programs.transmission_usd_per_kw_year", "greater than 0"),
    ],
)
def test_bad_program_values_name_their_field(
    tmp_path: Path, old: str, new: str, where: str, expected: str
) -> None:
    """Each bad [programs] value is one issue at its own field path."""
    assert old in PROGRAMS
    [(path, message)] = _issues(_with_programs(tmp_path, PROGRAMS.replace(old, new, 1)))

    assert path.startswith(where)
    assert expected in message
