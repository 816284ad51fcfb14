"""The simulated plant: watts at the meter, hashing and GPU work under commanded setpoints."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gridpilot.adapters.plant import IntervalUse, PlantError, SimulatedPlant
from gridpilot.adapters.recorded import GpuTrace, read_gpu_trace
from gridpilot.optimizer.economics import WATT_SECONDS_PER_MWH
from gridpilot.optimizer.problem import AsicGroup, CapLevel, GpuGroup
from gridpilot.optimizer.schedule import IntArray

TRACE = (
    Path(__file__).resolve().parents[2]
    / "deploy"
    / "data"
    / "h100x8_llama3-8b_train_ckpt100_per_gpu_100ms.csv.gz"
)
LEVELS = (CapLevel(700.0, 1.0), CapLevel(500.0, 0.96), CapLevel(300.0, 0.9))


def _ints(*values: int) -> IntArray:
    return np.array(values, dtype=np.int64)


def _asic(name: str = "a", *, units: int = 10, on_now: int | None = None) -> AsicGroup:
    return AsicGroup(
        name=name,
        model="S19j Pro",
        units=units,
        watts_per_unit=3_000.0,
        ths_per_unit=100.0,
        overhead_factor=1.05,
        wake_loss_s=600.0,
        units_on_now=on_now,
    )


def _gpu(name: str = "g", *, nodes: int = 150) -> GpuGroup:
    return GpuGroup(
        name=name,
        contract="c",
        nodes=nodes,
        gpus_per_node=8,
        cap_levels=LEVELS,
        idle_watts_per_gpu=100.0,
        host_watts_per_node=1_500.0,
        overhead_factor=1.25,
    )


@pytest.fixture(scope="module")
def trace() -> GpuTrace:
    return read_gpu_trace(TRACE)


def _small_trace(samples: int = 1_234, gpus: int = 8) -> GpuTrace:
    rng = np.random.default_rng(7)
    return GpuTrace(0.1, rng.uniform(50.0, 650.0, size=(samples, gpus)))


def test_constant_asic_load_uses_units_times_watts_times_overhead(trace: GpuTrace) -> None:
    """Energy of a steady ASIC load is units x watts x overhead x duration, hashing units x TH/s."""
    plant = SimulatedPlant((_asic("a"), _asic("b")), (), trace)
    plant.apply(_ints(10, 4), _ints(), _ints(), _ints(), at_s=0.0)
    for start in (0.0, 900.0, 1_800.0):
        use = plant.advance(start, start + 900.0)
        watts = 14 * 3_000.0 * 1.05
        assert use.energy_mwh == pytest.approx(watts * 900 / WATT_SECONDS_PER_MWH)
        assert use.asic_energy_mwh == pytest.approx(use.energy_mwh)
        assert use.gpu_energy_mwh == pytest.approx(0.0, abs=1e-12)
        assert use.max_site_watts == pytest.approx(watts)
        assert use.mean_site_watts == pytest.approx(watts)
        assert use.hash_ths_s == pytest.approx(14 * 100.0 * 900)
        assert use.wake_loss_ths_s == 0.0
    assert plant.accounted_s == 2_700.0


def test_woken_units_draw_at_once_but_hash_only_after_their_wake_loss(trace: GpuTrace) -> None:
    """Units woken draw power from that moment and hash nothing for 600 s, across intervals."""
    plant = SimulatedPlant((_asic(on_now=5),), (), trace)
    plant.apply(_ints(8), _ints(), _ints(), _ints(), at_s=0.0)
    first = plant.advance(0.0, 900.0)
    assert first.energy_mwh == pytest.approx(8 * 3_150.0 * 900 / WATT_SECONDS_PER_MWH)
    assert first.wake_loss_ths_s == pytest.approx(3 * 100.0 * 600)
    assert first.hash_ths_s == pytest.approx(100.0 * (5 * 900 + 3 * 300))
    plant.apply(_ints(10), _ints(), _ints(), _ints(), at_s=1_500.0)
    second = plant.advance(900.0, 1_800.0)
    assert second.wake_loss_ths_s == pytest.approx(2 * 100.0 * 300)
    assert second.energy_mwh == pytest.approx(3_150.0 * (8 * 600 + 10 * 300) / WATT_SECONDS_PER_MWH)
    third = plant.advance(1_800.0, 2_700.0)
    assert third.wake_loss_ths_s == pytest.approx(2 * 100.0 * 300)
    assert third.hash_ths_s == pytest.approx(100.0 * (8 * 900 + 2 * 600))
    fourth = plant.advance(2_700.0, 3_600.0)
    assert fourth.hash_ths_s == pytest.approx(10 * 100.0 * 900)


def test_units_put_back_to_sleep_while_waking_are_the_waking_ones(trace: GpuTrace) -> None:
    """Sleeping 3 of 5 waking units at 300 s leaves the 5 hashing units untouched."""
    plant = SimulatedPlant((_asic(on_now=5),), (), trace)
    plant.apply(_ints(10), _ints(), _ints(), _ints(), at_s=0.0)
    plant.apply(_ints(7), _ints(), _ints(), _ints(), at_s=300.0)
    use = plant.advance(0.0, 900.0)
    assert use.hash_ths_s == pytest.approx(100.0 * (5 * 900 + 2 * 300))
    assert use.wake_loss_ths_s == pytest.approx(100.0 * (5 * 300 + 2 * 300))
    assert use.energy_mwh == pytest.approx(3_150.0 * (10 * 300 + 7 * 600) / WATT_SECONDS_PER_MWH)


def test_a_repeated_command_at_the_same_moment_replaces_the_first(trace: GpuTrace) -> None:
    """Waking units and sleeping them again at the same instant costs no hashing."""
    plant = SimulatedPlant((_asic(on_now=5),), (), trace)
    plant.apply(_ints(10), _ints(), _ints(), _ints(), at_s=0.0)
    plant.apply(_ints(5), _ints(), _ints(), _ints(), at_s=0.0)
    use = plant.advance(0.0, 900.0)
    assert use.hash_ths_s == pytest.approx(5 * 100.0 * 900)
    assert use.wake_loss_ths_s == 0.0


def test_a_unit_put_to_sleep_stays_asleep_for_its_minimum_off_time(trace: GpuTrace) -> None:
    """With a 1,800 s minimum off time, four units put to sleep at 0 s and commanded awake at
    900 s stay asleep (counted refused) and the meter shows them off; at 1,800 s they wake.
    Units asleep when the plant starts may wake at once."""
    group = replace(_asic(on_now=8), min_off_s=1_800.0)
    plant = SimulatedPlant((group,), (), trace)
    assert plant.apply(_ints(4), _ints(), _ints(), _ints(), at_s=0.0).tolist() == [4]
    assert plant.locked_off(900.0)[0].tolist() == [4]
    assert plant.locked_off(900.0)[1].tolist() == [900.0]
    plant.advance(0.0, 900.0)
    assert plant.apply(_ints(10), _ints(), _ints(), _ints(), at_s=900.0).tolist() == [6]
    assert plant.wakes_refused == 4
    assert plant.meter(900.0, 901.0)[0] == pytest.approx(6 * 3_150.0)
    plant.advance(900.0, 1_800.0)
    assert plant.apply(_ints(10), _ints(), _ints(), _ints(), at_s=1_800.0).tolist() == [10]
    assert plant.locked_off(1_800.0)[0].tolist() == [0]


@pytest.mark.parametrize("level", [0, 1, 2])
def test_gpu_draw_never_exceeds_the_cap(trace: GpuTrace, level: int) -> None:
    """With every node capped, no meter sample exceeds nodes x (8 x cap + host) x overhead."""
    plant = SimulatedPlant((), (_gpu(),), trace)
    plant.apply(_ints(), _ints(level), _ints(150), _ints(0), at_s=0.0)
    samples = plant.meter(0.0, plant.loop_s)
    bound = 1.25 * 150 * (8 * LEVELS[level].watts_per_gpu + 1_500.0)
    assert float(samples.max()) <= bound
    if level == 2:
        # 300 W binds in the training phases, so the cap really cuts the draw there.
        assert float(samples.max()) >= 0.9 * bound


def test_full_power_averages_the_trace_mean(trace: GpuTrace) -> None:
    """At full power the GPUs average the trace's node mean (2,203 W per poll, 2,185 W
    time-weighted), plus host, times overhead, whatever the jobs' offsets."""
    plant = SimulatedPlant((), (_gpu(),), trace, seed=11)
    samples = plant.meter(0.0, plant.loop_s)
    gpu_mean = float(samples.mean()) / (1.25 * 150) - 1_500.0
    loop = trace.node_watts()[: round(plant.loop_s / trace.interval_s)]
    assert gpu_mean == pytest.approx(float(loop.mean()), rel=1e-9)
    assert gpu_mean == pytest.approx(2_203.0, rel=0.015)
    # Jobs out of phase smooth the group: its swing is narrower than one node's.
    node = trace.node_watts()
    assert np.ptp(samples) / (1.25 * 150) < float(np.ptp(node))


def test_paused_nodes_draw_idle_watts(trace: GpuTrace) -> None:
    """Paused nodes draw 8 x idle + host per node, times overhead, flat."""
    plant = SimulatedPlant((), (_gpu(),), trace)
    plant.apply(_ints(), _ints(1), _ints(0), _ints(150), at_s=0.0)
    samples = plant.meter(0.0, 900.0)
    assert samples == pytest.approx(np.full(900, 1.25 * 150 * (8 * 100.0 + 1_500.0)))
    use = plant.advance(0.0, 900.0)
    assert use.gpu_paused_node_s.tolist() == [150 * 900.0]
    assert use.gpu_work_gpu_s.tolist() == [0.0]


def test_gpu_node_seconds_and_work_follow_the_setpoints(trace: GpuTrace) -> None:
    """Node-seconds split into full, capped and paused; work weights GPU-seconds by throughput."""
    plant = SimulatedPlant((), (_gpu("x"), _gpu("y", nodes=20)), trace)
    plant.apply(_ints(), _ints(2, 1), _ints(50, 0), _ints(10, 20), at_s=0.0)
    plant.apply(_ints(), _ints(0, 0), _ints(0, 0), _ints(0, 0), at_s=600.0)
    use = plant.advance(0.0, 900.0)
    assert use.gpu_full_node_s.tolist() == [90 * 600 + 150 * 300, 20 * 300]
    assert use.gpu_capped_node_s.tolist() == [50 * 600, 0]
    assert use.gpu_paused_node_s.tolist() == [10 * 600, 20 * 600]
    assert use.gpu_work_gpu_s.tolist() == pytest.approx(
        [8 * (90 * 600 + 50 * 0.9 * 600 + 150 * 300), 8 * 20 * 300]
    )
    assert use.energy_mwh == pytest.approx(use.gpu_energy_mwh)


def test_shed_applied_mid_interval_cuts_the_meter_from_that_moment(trace: GpuTrace) -> None:
    """A guard sees the first sample over the cap, sheds from it, and only later samples fall."""
    plant = SimulatedPlant((_asic(units=200),), (_gpu(),), trace, seed=3)
    plant.apply(_ints(200), _ints(0), _ints(0), _ints(0), at_s=0.0)
    before = plant.meter(0.0, 900.0).copy()
    cap = float(np.quantile(before, 0.8))
    first_over = int(np.argmax(before > cap))
    assert before[first_over] > cap
    plant.apply(_ints(150), _ints(0), _ints(0), _ints(0), at_s=float(first_over))
    after = plant.meter(0.0, 900.0)
    assert after[:first_over].tolist() == before[:first_over].tolist()
    assert before[first_over:] - after[first_over:] == pytest.approx(
        np.full(900 - first_over, 50 * 3_150.0)
    )
    use = plant.advance(0.0, 900.0, cap_watts=cap)
    assert use.energy_mwh == pytest.approx(float(after.sum()) / WATT_SECONDS_PER_MWH)
    assert use.over_cap_s == float(np.count_nonzero(after > cap))
    assert use.over_cap_mwh == pytest.approx(
        float(np.maximum(after - cap, 0).sum()) / WATT_SECONDS_PER_MWH
    )
    assert use.max_site_watts == float(after.max())


def test_periodic_shortcut_agrees_with_a_per_job_computation() -> None:
    """Summing each job's own looped trace sample by sample gives the same meter readings."""
    small = _small_trace()
    group = _gpu(nodes=150)
    plant = SimulatedPlant((), (group,), small, job_nodes=64, seed=5)
    assert [job.nodes for job in plant.jobs[0]] == [64, 64, 22]
    capped, paused, level = 40, 25, 1
    plant.apply(_ints(), _ints(level), _ints(capped), _ints(paused), at_s=0.0)
    start, end = 100, 400  # seconds, crossing the 123 s loop twice
    shortcut = plant.meter(float(start), float(end))

    loop = round(plant.loop_s / small.interval_s)
    assert loop == 1_230
    brute = np.zeros(end - start)
    full = group.nodes - capped - paused
    for job in plant.jobs[0]:
        offset = round(job.offset_s / small.interval_s)
        share = job.nodes / group.nodes
        for second in range(start, end):
            draw = 0.0
            for tenth in range(10):
                row = small.gpu_watts[(second * 10 + tenth + offset) % loop]
                at_full = float(row.sum())
                at_cap = float(np.minimum(row, LEVELS[level].watts_per_gpu).sum())
                draw += share * (full * at_full + capped * at_cap) / 10
            draw += share * paused * 8 * 100.0
            draw += job.nodes * 1_500.0
            brute[second - start] += 1.25 * draw
    assert shortcut == pytest.approx(brute, rel=1e-12)


def test_gpus_beyond_the_trace_replay_its_columns_in_turn() -> None:
    """A 4-GPU node on a 2-GPU trace replays columns 0, 1, 0, 1."""
    flat = GpuTrace(0.1, np.tile(np.array([[100.0, 300.0]]), (50, 1)))
    group = GpuGroup("g", "c", 1, 4, LEVELS, 50.0, 0.0)
    plant = SimulatedPlant((), (group,), flat)
    assert plant.meter(0.0, 5.0).tolist() == [800.0] * 5


def test_the_same_seed_draws_the_same_job_offsets(trace: GpuTrace) -> None:
    """Offsets are reproducible from the seed and differ between seeds."""
    groups = (_gpu(nodes=300),)
    one = SimulatedPlant((), groups, trace, seed=1)
    again = SimulatedPlant((), groups, trace, seed=1)
    other = SimulatedPlant((), groups, trace, seed=2)
    assert one.jobs == again.jobs
    assert one.jobs != other.jobs
    assert one.meter(0.0, 60.0).tolist() == again.meter(0.0, 60.0).tolist()


def test_the_meter_resolution_sets_the_sample_count(trace: GpuTrace) -> None:
    """A 5 s meter gives one sample per 5 s, the mean of the 1 s samples it covers."""
    whole = GpuTrace(trace.interval_s, trace.gpu_watts[:6_950])  # both loops are 695 s
    fine = SimulatedPlant((), (_gpu(),), whole, seed=4)
    coarse = SimulatedPlant((), (_gpu(),), whole, seed=4, meter_interval_s=5.0)
    assert coarse.loop_s == 695.0
    assert coarse.meter(0.0, 600.0) == pytest.approx(
        fine.meter(0.0, 600.0).reshape(-1, 5).mean(axis=1)
    )


def test_invalid_commands_and_times_are_refused(trace: GpuTrace) -> None:
    """Wrong shapes, counts outside the group, going back in time or off-grid times are errors."""
    plant = SimulatedPlant((_asic(),), (_gpu(),), trace)
    ok = (_ints(10), _ints(0), _ints(0), _ints(0))
    with pytest.raises(PlantError, match="units_on: expected 1 integers"):
        plant.apply(_ints(1, 2), *ok[1:], at_s=0.0)
    with pytest.raises(PlantError, match="units_on: expected 1 integers"):
        plant.apply(np.array([1.5]), *ok[1:], at_s=0.0)
    with pytest.raises(PlantError, match=r"units_on\[a\]: 11 is outside 0..10"):
        plant.apply(_ints(11), *ok[1:], at_s=0.0)
    with pytest.raises(PlantError, match=r"gpu_level\[g\]: 3 is outside 0..2"):
        plant.apply(ok[0], _ints(3), *ok[2:], at_s=0.0)
    with pytest.raises(PlantError, match="capped plus paused nodes exceed"):
        plant.apply(ok[0], ok[1], _ints(100), _ints(51), at_s=0.0)
    with pytest.raises(PlantError, match=r"not on the 1\.0 s grid"):
        plant.apply(*ok, at_s=0.5)
    plant.apply(*ok, at_s=300.0)
    with pytest.raises(PlantError, match="before setpoints already applied"):
        plant.apply(*ok, at_s=200.0)
    with pytest.raises(PlantError, match=r"must continue from 0\.0 s"):
        plant.advance(900.0, 1_800.0)
    plant.advance(0.0, 900.0)
    with pytest.raises(PlantError, match=r"at or after 900\.0 s"):
        plant.meter(0.0, 900.0)
    with pytest.raises(PlantError, match="before setpoints already applied or accounted"):
        plant.apply(*ok, at_s=600.0)
    with pytest.raises(PlantError, match="not a whole multiple"):
        SimulatedPlant((), (), trace, meter_interval_s=0.25)
    with pytest.raises(PlantError, match="job_nodes"):
        SimulatedPlant((), (), trace, job_nodes=0)


def test_setpoints_stay_in_force_across_intervals(trace: GpuTrace) -> None:
    """A command applied once holds in later intervals until the next one."""
    plant = SimulatedPlant((_asic(),), (), trace)
    plant.apply(_ints(3), _ints(), _ints(), _ints(), at_s=450.0)
    uses: list[IntervalUse] = [plant.advance(s, s + 900.0) for s in (0.0, 900.0, 1_800.0)]
    watts = [u.mean_site_watts for u in uses]
    assert watts == pytest.approx([3_150.0 * (10 + 3) / 2, 3_150.0 * 3, 3_150.0 * 3])


def _busy_plant(trace: GpuTrace) -> SimulatedPlant:
    """Miners and a GPU hall with some nodes capped and paused, held from the start."""
    plant = SimulatedPlant((_asic(units=200), _asic("b", units=50)), (_gpu(),), trace, seed=5)
    plant.apply(_ints(200, 50), _ints(2), _ints(30), _ints(10), at_s=0.0)
    return plant


def test_a_steady_stretch_accounts_each_interval_as_advance_does(trace: GpuTrace) -> None:
    """Over 300 intervals (past a block of gathered samples, the GPU loop wrapping many times)
    the bulk accounting gives each interval's figures to the last bit."""
    count = 300
    one_by_one = _busy_plant(trace)
    uses = [one_by_one.advance(k * 900.0, (k + 1) * 900.0) for k in range(count)]
    assert count * 900.0 > 10 * one_by_one.loop_s
    steady = _busy_plant(trace).advance_steady(0.0, 900.0, count, guard_watts=np.inf)
    assert steady.count == count
    assert steady.energy_mwh.tolist() == [u.energy_mwh for u in uses]
    assert steady.mean_site_watts.tolist() == [u.mean_site_watts for u in uses]
    assert {steady.asic_energy_mwh} == {u.asic_energy_mwh for u in uses}
    assert {steady.hash_ths_s} == {u.hash_ths_s for u in uses}
    for field in ("gpu_full_node_s", "gpu_capped_node_s", "gpu_paused_node_s", "gpu_work_gpu_s"):
        assert all(getattr(steady, field).tolist() == getattr(u, field).tolist() for u in uses)


def test_a_steady_stretch_stops_before_an_interval_over_the_guard() -> None:
    """The interval with a sample over the guard's cap is left to the caller, whose guard acts
    there; the plant has accounted up to it, and goes on from it."""
    long_loop = _small_trace(samples=60_000)  # 6,000 s: intervals see different peaks
    probe = _busy_plant(long_loop)
    peaks = [probe.advance(k * 900.0, (k + 1) * 900.0).max_site_watts for k in range(40)]
    guard = sorted(set(peaks))[-3]  # two peaks of the loop above it
    first_over = next(k for k, peak in enumerate(peaks) if peak > guard)
    assert first_over > 0
    plant = _busy_plant(long_loop)
    steady = plant.advance_steady(0.0, 900.0, 40, guard_watts=guard)
    assert steady.count == first_over
    assert plant.accounted_s == first_over * 900.0
    assert plant.meter(plant.accounted_s, plant.accounted_s + 900.0).max() > guard
    assert (
        plant.advance(plant.accounted_s, plant.accounted_s + 900.0).max_site_watts
        == (peaks[first_over])
    )


def test_no_steady_stretch_while_units_wake_or_a_change_is_pending(trace: GpuTrace) -> None:
    """Intervals in which a woken unit still hashes nothing, or setpoints change, differ in
    more than the GPU loop's phase: none is accounted in bulk."""
    plant = SimulatedPlant((_asic(on_now=5),), (), trace)
    plant.apply(_ints(8), _ints(), _ints(), _ints(), at_s=0.0)
    assert plant.advance_steady(0.0, 900.0, 4, guard_watts=np.inf).count == 0
    assert plant.accounted_s == 0.0
    assert plant.advance(0.0, 900.0).wake_loss_ths_s > 0  # the wake is over within 600 s
    plant.apply(_ints(6), _ints(), _ints(), _ints(), at_s=2_700.0)
    assert plant.advance_steady(900.0, 900.0, 4, guard_watts=np.inf).count == 0
    plant.advance(900.0, 1_800.0)
    plant.advance(1_800.0, 2_700.0)
    steady = plant.advance_steady(2_700.0, 900.0, 4, guard_watts=np.inf)
    assert steady.count == 4
    assert steady.hash_ths_s == 6 * 100.0 * 900
    assert plant.holds(_ints(6), _ints(), _ints(), _ints())
    assert not plant.holds(_ints(8), _ints(), _ints(), _ints())
