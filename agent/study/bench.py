"""`gridpilot bench study`: scenarios per minute through the local process pool.

A short-window study (threshold scenarios of the reference site over a few days of 2024 at
HB_WEST, AI shares spread over 0..1) is run afresh into an empty folder once per worker count,
the pool's start, each worker's first read of the year and the writing of the results and the
report included: what a person waits for. A year's scenario costs far more than a window's
(`batches.YEAR_S`), so the figure measures the study's machinery and its scaling over workers,
not a full study's pace.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gridpilot.agent.study.executors import ProcessPool
from gridpilot.agent.study.run import run_study
from gridpilot.agent.study.spec import load_spec

# August 15th to 18th of 2024: days a West Texas price spike falls in, so the rule curtails.
WINDOW_DAYS = (228, 231)


@dataclass(frozen=True, slots=True)
class Timing:
    workers: int
    wall_s: float
    failed: int

    def per_minute(self, scenarios: int) -> float:
        return 60.0 * scenarios / self.wall_s


@dataclass(frozen=True, slots=True)
class StudyBenchmark:
    scenarios: int
    days: int
    timings: tuple[Timing, ...]

    def as_json(self) -> str:
        return json.dumps(
            {
                "scenarios": self.scenarios,
                "days": self.days,
                "runs": [
                    {
                        "workers": t.workers,
                        "wall_s": round(t.wall_s, 3),
                        "scenarios_per_minute": round(t.per_minute(self.scenarios), 2),
                        "failed": t.failed,
                    }
                    for t in self.timings
                ],
            }
        )

    def as_text(self) -> str:
        lines = [
            f"study bench: {self.scenarios} threshold scenarios of {self.days} days each"
            " (reference site, 2024, HB_WEST), local process pool",
            "  workers   wall s   scenarios/min   speed-up",
        ]
        first = self.timings[0].per_minute(self.scenarios) if self.timings else 0.0
        for t in self.timings:
            rate = t.per_minute(self.scenarios)
            failed = f"   ({t.failed} failed)" if t.failed else ""
            lines.append(
                f"  {t.workers:>7}   {t.wall_s:6.1f}   {rate:13.1f}   {rate / first:7.2f}x{failed}"
            )
        return "\n".join(lines)


def spec_text(scenarios: int) -> str:
    """The bench's study file: `scenarios` AI shares from 0 up (short of 1: a site of no
    miners does not replay yet), everything else one value."""
    shares = ", ".join(f"{i / scenarios:.6g}" for i in range(scenarios))
    return f"""\
[axes]
ai_share = [{shares}]
business_model = ["hosting"]
contract_mix = ["reference"]
year = [2024]
strategy = ["threshold"]

[business_models.hosting]
kind = "hosting"
usd_per_mw_month = 140_000

[contract_mixes.reference]
firm = 0.6
flex = 0.28
interruptible = 0.12

[window]
start = {WINDOW_DAYS[0]}
end = {WINDOW_DAYS[1]}
"""


def bench_study(workers: Sequence[int], scenarios: int) -> StudyBenchmark:
    """Time the bench's study on a pool of each worker count."""
    timings: list[Timing] = []
    with tempfile.TemporaryDirectory(prefix="gridpilot-bench-study-") as folder:
        source = Path(folder) / "study.toml"
        source.write_text(spec_text(scenarios))
        spec = load_spec(source)
        for count in workers:
            started = time.perf_counter()
            with ProcessPool(count) as pool:
                outcome = run_study(spec, Path(folder) / f"out-{count}", pool, progress=False)
            timings.append(Timing(count, time.perf_counter() - started, outcome.failed))
    return StudyBenchmark(scenarios, WINDOW_DAYS[1] - WINDOW_DAYS[0], tuple(timings))
