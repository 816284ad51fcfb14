"""A study's progress on stderr: scenarios done, failed and left, and the time left.

On a terminal one line is redrawn in place; otherwise (a log, CI) a line is printed each time
another tenth of the scenarios is through, and at the end. The time left is the time taken so
far scaled by the estimated work left over the estimated work done (`batches.estimate_s`), so
that a slow agent scenario and a quick threshold one each count for what they cost; before the
first task ends it is the estimate spread over the workers.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 30


def render(done: int, failed: int, left: int, seconds_left: float | None) -> str:
    """One line: a bar of the scenarios through, then the counts and the time left."""
    total = done + failed + left
    through = done + failed
    filled = round(BAR_WIDTH * through / total) if total else BAR_WIDTH
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    when = "" if seconds_left is None or left == 0 else f", {_duration(seconds_left)} left"
    return f"study [{bar}] {done} done, {failed} failed, {left} left{when}"


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5_400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3_600:.1f} h"


class Progress:
    """Counts scenarios through and draws them (module docstring)."""

    def __init__(
        self,
        total: int,
        work_s: float,
        workers: int,
        *,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._terminal = self._stream.isatty()
        self._clock = clock
        self._started = clock()
        self._total = total
        self._work_s = work_s  # estimated seconds of all scenarios on one worker
        self._workers = max(1, workers)
        self._done_work_s = 0.0
        self.done = 0
        self.failed = 0
        self._shown_tenth = -1

    @property
    def left(self) -> int:
        return self._total - self.done - self.failed

    def seconds_left(self) -> float:
        """The time left (module docstring)."""
        left_work = self._work_s - self._done_work_s
        if self._done_work_s <= 0:
            return left_work / self._workers
        return (self._clock() - self._started) * left_work / self._done_work_s

    def advance(self, *, done: int, failed: int, work_s: float) -> None:
        """Scenarios through, with their estimated seconds."""
        self.done += done
        self.failed += failed
        self._done_work_s += work_s
        self.show()

    def show(self) -> None:
        line = render(self.done, self.failed, self.left, self.seconds_left())
        if self._terminal:
            end = "\n" if self.left == 0 else ""
            print(f"\r{line}\x1b[K", end=end, file=self._stream, flush=True)
            return
        tenth = 10 if self.left == 0 else int(10 * (self._total - self.left) / self._total)
        if tenth > self._shown_tenth:
            self._shown_tenth = tenth
            print(line, file=self._stream, flush=True)
