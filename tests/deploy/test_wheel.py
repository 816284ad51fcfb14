"""The package as a user gets it: a wheel built from the checkout, installed with its
dependencies into a fresh virtual environment outside the checkout, run from an empty folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("agent", "optimizer", "adapters")
# What a checkout holds that a build must not see: environments, caches, outputs.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "out", "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)


def _run(command: list[str], cwd: Path, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("GRIDPILOT_", "PYTHON"))}
    return subprocess.run(  # noqa: S603  # our own interpreter, the built wheel's commands
        command,
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the checkout so that the build leaves nothing in it."""
    source = tmp_path_factory.mktemp("source") / "gridpilot"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    dist = tmp_path_factory.mktemp("dist")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _ok(_run([*pip, "wheel", "--no-deps", "--quiet", "--wheel-dir", str(dist), "."], source))
    (built,) = dist.glob("gridpilot-*.whl")
    return built


def test_the_wheel_holds_every_module_and_the_bundled_files_under_one_namespace(
    wheel: Path,
) -> None:
    """Every module of agent/, optimizer/ and adapters/ is in the wheel under `gridpilot.`,
    with the example site, the bundled data and the Prometheus files (the reliability bench
    runs them); no top-level `agent` or `adapters` package."""
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {
        f"gridpilot/{path.relative_to(ROOT).as_posix()}"
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
    }
    bundled = {
        f"gridpilot/{path.relative_to(ROOT / 'deploy').as_posix()}"
        for path in [
            *(ROOT / "deploy" / "data").iterdir(),
            *(ROOT / "deploy" / "examples").iterdir(),
            *(ROOT / "deploy" / "prometheus").glob("*.yml"),
        ]
    }
    root = {"gridpilot/__init__.py", "gridpilot/__main__.py", "gridpilot/py.typed"}
    assert modules | bundled | root <= names, sorted((modules | bundled | root) - names)
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"gridpilot"}


def test_an_installed_wheel_runs_its_commands_from_any_folder(wheel: Path, tmp_path: Path) -> None:
    """Installed into a fresh environment, `check-config` and `plan` with no options and
    `replay` with only a window find the bundled site and data from an empty folder; an
    explicit path that is missing still names the file."""
    venv = tmp_path / "venv"
    _ok(_run([sys.executable, "-m", "venv", str(venv)], tmp_path))
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    _ok(_run([*pip, "install", str(wheel)], tmp_path))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    gridpilot = str(venv / "bin" / "gridpilot")

    assert "west-texas" in _ok(_run([gridpilot, "check-config"], elsewhere))
    assert "threshold" in _ok(_run([gridpilot, "plan"], elsewhere))
    # A week: every default file is read (site, prices, day-ahead, Bitcoin, fees, GPU trace).
    window = ["--start", "2024-08-05T05:00Z", "--end", "2024-08-12T05:00Z"]
    _ok(_run([gridpilot, "replay", *window, "--json", "week.json"], elsewhere))
    figures = json.loads((elsewhere / "week.json").read_text())
    assert {"agent", "always_on", "threshold", "hindsight"} <= set(figures)
    assert figures["agent"]["profit_usd"] > 0
    assert "usage: gridpilot" in _ok(_run([python, "-m", "gridpilot", "--help"], elsewhere))

    missing = _run([gridpilot, "replay", "--prices", "nowhere.csv.gz", *window], elsewhere)
    assert missing.returncode == 65
    assert "nowhere.csv.gz" in missing.stderr
