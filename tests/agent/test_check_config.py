"""`gridpilot check-config`: the site summary and merit order, or exit 78 on a bad file."""

from __future__ import annotations

from pathlib import Path

import pytest

from gridpilot.agent import cli
from gridpilot.agent.cli import EX_CONFIG, main
from tests.agent.site_files import REFERENCE_FILE, write_variant

MODELS = ("Antminer S19j Pro", "Antminer S19 XP", "Antminer S21")


def _asic_rows(out: str) -> dict[str, list[float]]:
    """Model -> [units, groups, J/TH, breakeven, breakeven at meter] from the printed table."""
    rows: dict[str, list[float]] = {}
    for line in out.splitlines():
        for model in MODELS:
            if line.strip().startswith(f"{model} "):
                cells = line.strip().removeprefix(model).split()
                rows[model] = [float(cell.replace(",", "")) for cell in cells]
    return rows


def test_reference_site_prints_the_merit_order(capsys: pytest.CaptureFixture[str]) -> None:
    """The S19j Pro is first to sleep and the S21 last, at the domain doc's breakevens."""
    code = main(["check-config", str(REFERENCE_FILE), "--hashprice", "0.05"])

    out = capsys.readouterr().out
    assert code == 0
    assert [out.index(model) for model in MODELS] == sorted(out.index(model) for model in MODELS)
    rows = _asic_rows(out)
    assert rows["Antminer S19j Pro"][:3] == [8_000, 40, 30.5]
    # docs/domain.md at 0.05 $/TH/day: S21 about 119, S19 XP about 97, S19j Pro about 68 $/MWh.
    assert rows["Antminer S21"][3] == pytest.approx(119, abs=0.5)
    assert rows["Antminer S19 XP"][3] == pytest.approx(97, abs=0.5)
    assert rows["Antminer S19j Pro"][3] == pytest.approx(68, abs=0.5)
    # At the meter: 2 % pool fee and 1.05 overhead.
    assert rows["Antminer S21"][4] == pytest.approx(119.05 * 0.98 / 1.05, abs=0.05)


def test_reference_site_summary_shows_it_oversubscribed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """62.958 MW of miners and 22.188 MW of GPUs exceed the 78.4 MW plannable draw."""
    assert main(["check-config", str(REFERENCE_FILE)]) == 0

    out = capsys.readouterr().out
    assert "interconnect limit  80.000 MW" in out
    assert "ASIC peak           62.958 MW" in out
    assert "GPU hall peak       22.188 MW" in out
    assert "oversubscribed by    6.745 MW" in out
    assert "merit order at hashprice 0.041 $/TH/s/day" in out


def test_gpu_groups_follow_the_miners_with_contract_and_tier(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """GPU groups are listed after the miners, cheapest contract first, with their $/MWh."""
    main(["check-config", str(REFERENCE_FILE)])

    out = capsys.readouterr().out
    merit = out[: out.index("actuation:")]
    gpu_lines = [line.split() for line in merit.splitlines() if line.strip().startswith("h100-")]
    assert [line[:3] for line in gpu_lines] == [
        ["h100-interruptible", "interruptible", "interruptible"],
        ["h100-flex", "flex", "flexible"],
        ["h100-firm", "firm", "firm"],
    ]
    assert gpu_lines[-1][-2:] == ["2,366", "1,893"]
    assert out.index("Antminer S21") < out.index("h100-interruptible")


def test_broken_file_exits_78_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad contract reference exits with EX_CONFIG and stderr names the field and the fix."""
    path = write_variant(tmp_path, ('contract = "flex"', 'contract = "flexx"'))

    code = main(["check-config", str(path)])

    captured = capsys.readouterr()
    assert code == EX_CONFIG == 78
    assert captured.out == ""
    assert "gpu_groups[1].contract: 'flexx' is not a contract" in captured.err
    assert "define it under [[contracts]]" in captured.err


def test_missing_file_exits_78(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A path that does not exist is a configuration error, not a traceback."""
    assert main(["check-config", str(tmp_path / "absent.toml")]) == EX_CONFIG
    assert "cannot read the site file" in capsys.readouterr().err


def test_hashprice_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    """A non-positive hashprice is a usage error from argparse (exit 2)."""
    with pytest.raises(SystemExit) as caught:
        main(["check-config", str(REFERENCE_FILE), "--hashprice", "-1"])

    assert caught.value.code == 2
    assert "must be a positive number" in capsys.readouterr().err


def _programs_section(out: str) -> list[str]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("grid programs"))
    end = lines.index("", start)
    return lines[start:end]


def test_reference_site_prints_its_grid_programs(capsys: pytest.CaptureFixture[str]) -> None:
    """The section lists each product's qualified groups and MW at full power, no ERS period,
    and the bundled 4CP rates by the year billed."""
    assert main(["check-config", str(REFERENCE_FILE)]) == 0

    section = _programs_section(capsys.readouterr().out)
    rows = {line.split()[0]: line.split() for line in section[2:5]}
    assert rows["RRS"][1:3] == ["18.375", "MW"]
    assert rows["RRS"][4:] == ["s21", "(25", "groups)"]
    assert rows["ECRS"][1] == rows["NSPIN"][1] == "37.338"  # 18.963 + 18.375 MW
    assert "s19xp (30 groups), s21 (25 groups)" in " ".join(rows["NSPIN"])
    assert "  an award not held costs 5,000 $/MW-h" in section
    assert "  ERS: no contract period" in section
    assert "66.757 in 2024, 68.547 in 2025, 75.527 in 2026 (not final)" in section[-1]


def test_configured_programs_are_printed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A site's own rate, months and ERS periods replace the defaults in the summary."""
    path = write_variant(tmp_path, ('reserve_products = ["ECRS", "NSPIN"]', ""))
    path.write_text(
        path.read_text(encoding="utf-8")
        + "\n[programs]\ntransmission_usd_per_kw_year = 70\ncp_months = [7, 8]\n"
        '[[programs.ers]]\nproduct = "ERS-30"\nstart = 2025-06-01\nend = 2025-10-01\n'
        "mw = 12.5\nusd_per_mw_h = 6\n",
        encoding="utf-8",
    )

    assert main(["check-config", str(path)]) == 0

    section = _programs_section(capsys.readouterr().out)
    text = "\n".join(section)
    assert "ECRS     18.375 MW" in text  # the S21 alone
    assert "  ERS-30: 2025-06-01 up to 2025-10-01, 12.5 MW at 6 $/MW-h" in section
    assert "peaks of months 7, 8 set" in text
    assert section[-1].strip() == "rate 70 $/kW-yr, from the site file"


def test_unreadable_rates_file_is_reported_in_the_section(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a readable rates file check-config still passes and says there is no rate."""
    monkeypatch.setattr(cli, "BUNDLED_RATES", tmp_path / "absent.csv")

    assert main(["check-config", str(REFERENCE_FILE)]) == 0

    last = _programs_section(capsys.readouterr().out)[-1]
    assert last.strip().startswith("no rate: the bundled rates cannot be read")
    assert "absent.csv: cannot read" in last


def test_unknown_reserve_product_exits_78_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A group qualified for Regulation exits with EX_CONFIG, naming the group's field."""
    path = write_variant(
        tmp_path, ('reserve_products = ["ECRS", "NSPIN"]', 'reserve_products = ["REGUP"]')
    )

    assert main(["check-config", str(path)]) == EX_CONFIG

    captured = capsys.readouterr()
    assert captured.out == ""
    assert "asic_groups[1].reserve_products: item 0 ('REGUP'): Regulation needs" in captured.err


def test_overlapping_ers_periods_exit_78(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two ERS-10 periods that overlap are a configuration error naming the later one."""
    entry = '[[programs.ers]]\nproduct = "ERS-10"\nstart = {}\nend = {}\nmw = 5\nusd_per_mw_h = 1\n'
    path = tmp_path / "site.toml"
    path.write_text(
        REFERENCE_FILE.read_text(encoding="utf-8")
        + "\n"
        + entry.format("2025-06-01", "2025-10-01")
        + entry.format("2025-09-01", "2025-12-01"),
        encoding="utf-8",
    )

    assert main(["check-config", str(path)]) == EX_CONFIG
    assert "programs.ers[1].start: ERS-10 from 2025-09-01 overlaps" in capsys.readouterr().err
