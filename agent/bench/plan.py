"""`gridpilot bench plan`: how long the optimizer takes on a synthetic site.

The problem is `optimizer.synthetic.synthetic_problem`: N groups that cannot be merged (each its
own efficiency and state) over T five-minute steps; with `programs`, taking part in reserves and
4CP as `optimizer.synthetic.with_programs` sets them. Each run solves the same problem afresh; the
figures are medians, since the machines this runs on are shared and noisy.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from dataclasses import dataclass

from gridpilot.optimizer.horizon import block_index
from gridpilot.optimizer.problem import SolveOptions
from gridpilot.optimizer.solve import solve
from gridpilot.optimizer.synthetic import synthetic_problem, with_programs


@dataclass(frozen=True, slots=True)
class PlanBenchmark:
    groups: int
    steps: int
    programs: bool
    runs: int
    model_steps: int  # steps the model decides on its own, after move blocking
    build_s: float  # median: problem to model arrays
    solve_s: float  # median: the solver alone
    total_s: float  # median: the whole `solve()` call, rounding and scoring included
    status: str  # the most frequent plan status

    def as_json(self) -> str:
        return json.dumps(
            {
                "groups": self.groups,
                "steps": self.steps,
                "programs": self.programs,
                "runs": self.runs,
                "model_steps": self.model_steps,
                "build_s": round(self.build_s, 4),
                "solve_s": round(self.solve_s, 4),
                "total_s": round(self.total_s, 4),
                "status": self.status,
            }
        )

    def as_text(self) -> str:
        return (
            f"plan bench: {self.groups} groups x {self.steps} steps"
            f"{', grid programs on' if self.programs else ''}"
            f" ({self.model_steps} decided after move blocking), {self.runs} runs, medians:\n"
            f"  build {self.build_s:.3f} s   solve {self.solve_s:.3f} s"
            f"   total {self.total_s:.3f} s   status {self.status}"
        )


def bench_plan(
    groups: int, steps: int, *, runs: int, full_resolution: bool, programs: bool = False
) -> PlanBenchmark:
    options = SolveOptions(time_limit_s=120.0)
    if full_resolution:
        options = SolveOptions(time_limit_s=120.0, blocking=())
    problem = synthetic_problem(groups, steps, options=options)
    if programs:
        problem = with_programs(problem)
    builds: list[float] = []
    solves: list[float] = []
    totals: list[float] = []
    statuses: list[str] = []
    model_steps = int(block_index(problem, options.blocking)[-1]) + 1
    for _ in range(runs):
        started = time.perf_counter()
        plan = solve(problem)
        totals.append(time.perf_counter() - started)
        builds.append(plan.build_s)
        solves.append(plan.solve_s)
        statuses.append(str(plan.status))
    return PlanBenchmark(
        groups=groups,
        steps=steps,
        programs=programs,
        runs=runs,
        model_steps=model_steps,
        build_s=statistics.median(builds),
        solve_s=statistics.median(solves),
        total_s=statistics.median(totals),
        status=Counter(statuses).most_common(1)[0][0],
    )
