"""What the study tests share: a small study file and its results through the process pool."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from gridpilot.agent.study.executors import ProcessPool
from gridpilot.agent.study.run import StudyOutcome, run_study
from gridpilot.agent.study.spec import StudySpec, load_spec

# Four threshold scenarios over three days of August 2024 (a West Texas price spike): AI share
# 0 and 0.5, hosting and cloud. About a second each.
SMALL_STUDY = """\
[axes]
ai_share = [0.0, 0.5]
business_model = ["hosting", "cloud"]
contract_mix = ["reference"]
year = [2024]
strategy = ["threshold"]

[business_models.hosting]
kind = "hosting"
usd_per_mw_month = 140_000

[business_models.cloud]
kind = "cloud"
usd_per_gpu_hour = 2.0
utilisation = 0.7

[contract_mixes.reference]
firm = 0.6
flex = 0.28
interruptible = 0.12

[window]
start = 228
end = 231
"""


def write_spec(folder: Path, text: str = SMALL_STUDY) -> Path:
    path = folder / "study.toml"
    path.write_text(text)
    return path


@dataclass(frozen=True, slots=True)
class PoolRun:
    spec: StudySpec
    out: Path
    outcome: StudyOutcome


@pytest.fixture(scope="session")
def pool_run(tmp_path_factory: pytest.TempPathFactory) -> PoolRun:
    """The small study run once through a pool of two workers."""
    folder = tmp_path_factory.mktemp("pool-study")
    spec = load_spec(write_spec(folder))
    with ProcessPool(2) as pool:
        outcome = run_study(spec, folder / "out", pool, progress=False)
    return PoolRun(spec, folder / "out", outcome)
