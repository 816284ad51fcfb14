"""Stand-ins for `scenario.evaluate` that the study's fault tests run in its workers: they
evaluate as the study does, but for the fault they inject. Picklable by value (frozen
dataclasses) and importable by a worker with this checkout on its path."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from gridpilot.agent.replay.programs import ProgramTerms
from gridpilot.agent.study.batches import Row
from gridpilot.agent.study.scenario import Scenario, YearData, evaluate
from gridpilot.optimizer.problem import Problem

# How long a worker waits to be killed before giving up (the test then fails, not hangs).
KILL_WAIT_S = 120.0


@dataclass(frozen=True, slots=True)
class RaisesAt:
    """Raises for the scenarios of one AI share."""

    ai_share: float

    def __call__(
        self, scenario: Scenario, base: Problem, year: YearData, terms: ProgramTerms
    ) -> Row:
        if scenario.ai_share == self.ai_share:
            raise RuntimeError(f"injected fault at AI share {self.ai_share}")
        return evaluate(scenario, base, year, terms)


@dataclass(frozen=True, slots=True)
class WaitsToBeKilled:
    """The first scenario to get here, in any worker, writes its worker's pid to
    `folder/pid` and waits there to be killed; every other one, and that one when run again,
    evaluates."""

    folder: str

    def __call__(
        self, scenario: Scenario, base: Problem, year: YearData, terms: ProgramTerms
    ) -> Row:
        folder = Path(self.folder)
        try:
            claim = os.open(folder / "claimed", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return evaluate(scenario, base, year, terms)
        os.close(claim)
        partial = folder / "pid.partial"
        partial.write_text(str(os.getpid()))
        partial.replace(folder / "pid")  # whole, or not there
        threading.Event().wait(KILL_WAIT_S)
        raise RuntimeError("the test did not kill this worker")


def wait_for_pid(folder: Path, *, timeout_s: float = 60.0) -> int:
    """The pid a `WaitsToBeKilled` worker wrote, once it is there."""
    ready = threading.Event()
    for _ in range(int(timeout_s / 0.05)):
        if (folder / "pid").exists():
            return int((folder / "pid").read_text())
        ready.wait(0.05)
    raise TimeoutError(f"no worker reached the fault within {timeout_s:g} s")
