"""The sleep record: a wake takes only units whose minimum off time has passed."""

from __future__ import annotations

import numpy as np

from gridpilot.optimizer.lockout import SleepRecord


def _units(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def test_units_put_to_sleep_stay_asleep_for_their_minimum_off_time() -> None:
    """Ten units, 600 s minimum off: four sleep at 0 s and two more at 300 s; at 450 s a wake
    of all six wakes none; at 600 s the first four; at 900 s the last two."""
    record = SleepRecord([10], [600.0])
    on = record.change(_units(10), _units(6), 0.0)
    on = record.change(on, _units(4), 300.0)
    assert record.locked(450.0)[0].tolist() == [6]
    assert record.locked(450.0)[1].tolist() == [450.0]  # the 300 s sleepers, free at 900 s
    assert record.change(on, _units(10), 450.0).tolist() == [4]
    assert record.change(on, _units(10), 600.0).tolist() == [8]
    assert record.locked(600.0)[0].tolist() == [2]
    assert record.change(_units(8), _units(10), 900.0).tolist() == [10]
    assert record.locked(900.0)[0].tolist() == [0]


def test_units_asleep_before_the_record_are_free_and_wake_first() -> None:
    """A group of ten starting with three asleep (nothing says since when) puts two more to
    sleep; a wake of four right after takes the three unknown ones only."""
    record = SleepRecord([10, 5], [600.0, 0.0])
    on = record.change(_units(7, 5), _units(5, 0), 0.0)
    assert record.change(on, _units(9, 5), 1.0).tolist() == [8, 5]  # no minimum: all wake
    assert record.locked(1.0)[0].tolist() == [2, 0]
