"""The study's progress line on stderr."""

from __future__ import annotations

import io

from gridpilot.agent.study.progress import Progress, render


def test_the_line_shows_done_failed_left_and_time_left() -> None:
    """A bar of the scenarios through, the three counts and the time left in words."""
    assert render(2, 1, 3, 125.0) == (
        "study [###############...............] 2 done, 1 failed, 3 left, 2 min left"
    )
    assert render(6, 0, 0, 0.0) == "study [##############################] 6 done, 0 failed, 0 left"
    assert render(0, 0, 4, 40.0).endswith("4 left, 40 s left")
    assert render(0, 0, 4, 4 * 3_600.0).endswith("4.0 h left")


def test_the_time_left_scales_the_time_taken_by_the_work_left() -> None:
    """Before any task ends, the estimate over the workers; then the time taken times the
    estimated work left over the work done."""
    now = [100.0]
    stream = io.StringIO()
    progress = Progress(4, work_s=40.0, workers=2, stream=stream, clock=lambda: now[0])
    assert progress.seconds_left() == 20.0
    now[0] = 130.0
    progress.advance(done=1, failed=0, work_s=10.0)
    assert progress.seconds_left() == 90.0  # 30 s for 10 of 40 estimated seconds
    now[0] = 140.0
    assert progress.seconds_left() == 120.0
    progress.advance(done=0, failed=3, work_s=30.0)
    assert stream.getvalue().splitlines() == [
        "study [########......................] 1 done, 0 failed, 3 left, 2 min left",
        "study [##############################] 1 done, 3 failed, 0 left",
    ]
