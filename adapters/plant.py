"""A simulated site: the physical plant a replay runs against.

It takes the optimizer's own group descriptions and answers in watts at the site meter.

- ASIC groups: each awake unit draws `watts_per_unit * overhead_factor`, a sleeping one nothing.
  A unit that wakes draws power at once but hashes nothing for its group's `wake_loss_s`, which
  may run on into later intervals. When units of a group go to sleep, those still waking go
  first (the latest woken first), since they hash nothing yet. A unit put to sleep stays
  asleep for its group's `min_off_s`, as a controller's lockout keeps it: a command to wake it
  sooner wakes the units that are free, and the rest are counted in `wakes_refused`
  (`optimizer.lockout`). Firmware power targets are not modelled (units run at their nominal
  watts).
- GPU groups: nodes form jobs of `job_nodes` (the last job of a group takes the remainder) that
  swing together; each job replays the recorded per-GPU trace, looping, from its own offset
  drawn from `numpy.random.default_rng(seed)`. GPU k of a node replays trace column
  k mod (trace GPUs). Under cap level L a GPU draws min(trace watts, the level's
  `watts_per_gpu`); a paused node's GPUs draw `idle_watts_per_gpu`; every node adds
  `host_watts_per_node`, and `overhead_factor` multiplies the whole. Which nodes are capped or
  paused is not modelled: the group's draw scales by the share of its nodes capped (at the
  commanded level), paused (idle) and at full power, as if spread evenly over its jobs.
  Throughput kept is the cap level's `throughput` (1 at full power by the levels' convention, 0
  when paused); a capped job's trace is not stretched in time.
- The meter reports the mean draw over each `meter_interval_s`. Since every job loops the same
  trace, a group's draw at a given cap level is periodic: one loop of it is precomputed per
  group and level at meter resolution, and an interval of any length costs one gather. For that
  the loop is cut to a whole number of meter intervals (at most one meter interval of the trace
  is dropped); `loop_s` gives its length.

Times are seconds since the plant's start and must lie on the meter grid (whole multiples of
`meter_interval_s`). Commands and accounting go forward only: `apply` from a moment on, `meter`
to look at what an interval would draw, `advance` to account it and move on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridpilot.adapters.recorded import GpuTrace
from gridpilot.optimizer.economics import WATT_SECONDS_PER_MWH
from gridpilot.optimizer.lockout import SleepRecord
from gridpilot.optimizer.problem import AsicGroup, FloatArray, GpuGroup
from gridpilot.optimizer.schedule import IntArray


class PlantError(ValueError):
    """A command or a time the simulated plant cannot take; the message names what is wrong."""


@dataclass(frozen=True, slots=True)
class TraceJob:
    """One GPU job: `nodes` nodes replaying the trace from `offset_s` into its loop."""

    nodes: int
    offset_s: float


@dataclass(frozen=True, slots=True, eq=False)
class IntervalUse:
    """What the plant did over [start_s, end_s). Per-group arrays follow the GPU group order."""

    start_s: float
    end_s: float
    energy_mwh: float  # at the site meter
    asic_energy_mwh: float
    gpu_energy_mwh: float
    hash_ths_s: float  # TH/s x seconds hashed, after waking losses (/ 86,400 for TH/s-days)
    wake_loss_ths_s: float  # TH/s x seconds lost to waking, already out of hash_ths_s
    gpu_full_node_s: FloatArray  # node-seconds at full power
    gpu_capped_node_s: FloatArray
    gpu_paused_node_s: FloatArray
    gpu_work_gpu_s: FloatArray  # GPU-seconds weighted by the throughput kept
    max_site_watts: float
    mean_site_watts: float
    over_cap_s: float  # meter time above `cap_watts` (0 without a cap)
    over_cap_mwh: float  # energy drawn above `cap_watts`


@dataclass(frozen=True, slots=True, eq=False)
class SteadyUse:
    """What the plant did over `count` back-to-back intervals of `interval_s` under one set of
    setpoints (`SimulatedPlant.advance_steady`). Only the GPU loop's phase differs from one
    interval to the next, so the site meter's figures are per interval (arrays of `count`) and
    the rest is one interval's, the same in each."""

    interval_s: float
    count: int
    energy_mwh: FloatArray  # at the site meter, per interval
    mean_site_watts: FloatArray  # per interval
    asic_energy_mwh: float  # per interval, as are the fields below
    hash_ths_s: float  # no unit is waking in a steady stretch: nothing lost
    gpu_full_node_s: FloatArray
    gpu_capped_node_s: FloatArray
    gpu_paused_node_s: FloatArray
    gpu_work_gpu_s: FloatArray


# How far past its phase a setpoint's loop is laid out for `meter` to read an interval as one
# view: an hour of samples, the longest interval a replay reads.
_TILED_S = 3_600.0
# Intervals gathered at once by `advance_steady`: a block of 15-minute intervals at 1 s meter
# resolution is 256 x 900 samples (1.8 MB), whatever the stretch's length.
_STEADY_BLOCK = 256


@dataclass(frozen=True, slots=True, eq=False)
class _Setpoints:
    """Setpoints in force from meter sample `at_k` on, with what they imply."""

    at_k: int
    units_on: IntArray
    gpu_level: IntArray
    capped: IntArray
    paused: IntArray
    site_watts: FloatArray  # one loop of the site meter at these setpoints, by phase
    asic_watts: float
    ths_on: float
    work_gpus: FloatArray  # GPUs x throughput, per GPU group


class SimulatedPlant:
    """The site's physics, one interval at a time (see the module notes for the model).

    A replay step: `apply` the plan's setpoints at the interval's start, read `meter` over it,
    and where a sample exceeds the site's cap `apply` a shed from that sample's time on and read
    again; then `advance` to account the interval. `jobs[g]` lists GPU group g's jobs with their
    offsets into the trace loop, whose length is `loop_s`.
    """

    def __init__(
        self,
        asic_groups: tuple[AsicGroup, ...],
        gpu_groups: tuple[GpuGroup, ...],
        trace: GpuTrace,
        *,
        job_nodes: int = 64,
        meter_interval_s: float = 1.0,
        seed: int = 0,
    ) -> None:
        if job_nodes < 1:
            raise PlantError("job_nodes: must be at least 1")
        ratio = meter_interval_s / trace.interval_s
        per_meter = round(ratio)
        if per_meter < 1 or abs(ratio - per_meter) > 1e-9:
            raise PlantError(
                f"meter_interval_s: {meter_interval_s} s is not a whole multiple of the"
                f" trace's {trace.interval_s} s"
            )
        self._period = trace.samples // per_meter
        if self._period < 1:
            raise PlantError("trace: shorter than one meter interval")
        self.meter_interval_s = meter_interval_s
        self.loop_s = self._period * meter_interval_s
        self._asic_groups = asic_groups
        self._gpu_groups = gpu_groups
        self._asic_watts = np.array([g.watts_per_unit * g.overhead_factor for g in asic_groups])
        self._ths = np.array([g.ths_per_unit for g in asic_groups], dtype=np.float64)
        self._wake_loss_s = np.array([g.wake_loss_s for g in asic_groups], dtype=np.float64)
        self._units = np.array([g.units for g in asic_groups], dtype=np.int64)
        self._nodes = np.array([g.nodes for g in gpu_groups], dtype=np.int64)
        self._levels = np.array([len(g.cap_levels) for g in gpu_groups], dtype=np.int64)
        rng = np.random.default_rng(seed)
        loop = trace.gpu_watts[: self._period * per_meter]
        jobs: list[tuple[TraceJob, ...]] = []
        rows: list[FloatArray] = []
        for group in gpu_groups:
            sizes = [job_nodes] * (group.nodes // job_nodes)
            sizes += [group.nodes % job_nodes] if group.nodes % job_nodes else []
            offsets = rng.integers(0, len(loop), size=len(sizes))
            jobs.append(
                tuple(
                    TraceJob(n, float(o) * trace.interval_s)
                    for n, o in zip(sizes, offsets, strict=True)
                )
            )
            rows.append(_group_loops(group, loop, sizes, offsets, per_meter))
        self.jobs: tuple[tuple[TraceJob, ...], ...] = tuple(jobs)
        # (sum of cap levels over groups, period): each group's summed GPU draw at each level.
        self._loops = np.concatenate(rows) if rows else np.zeros((0, self._period))
        self._first_row = np.cumsum(self._levels) - self._levels
        self._scale = np.array([g.overhead_factor / max(g.nodes, 1) for g in gpu_groups])
        self._idle_watts = np.array(
            [g.overhead_factor * g.gpus_per_node * g.idle_watts_per_gpu for g in gpu_groups]
        )
        self._host_watts = sum(
            g.overhead_factor * g.nodes * g.host_watts_per_node for g in gpu_groups
        )
        self._gpus_per_node = np.array([g.gpus_per_node for g in gpu_groups], dtype=np.int64)
        self._throughput = np.zeros((len(gpu_groups), int(self._levels.max(initial=1))))
        for index, group in enumerate(gpu_groups):
            self._throughput[index, : len(group.cap_levels)] = [
                c.throughput for c in group.cap_levels
            ]
        on_now = np.array([g.on_now for g in asic_groups], dtype=np.int64)
        zeros = np.zeros(len(gpu_groups), dtype=np.int64)
        self._changes = [self._setpoints(0, on_now, zeros, zeros, zeros)]
        self._accounted_k = 0
        # The latest moment setpoints were applied at, kept apart from the last change: an
        # apply that changes nothing records no change, and an earlier one still is refused.
        self._applied_k = 0
        # Waking cohorts, one row each: woken at (sample), hashing from (s, per ASIC group),
        # units still waking (per ASIC group).
        self._wake_at = np.zeros(0, dtype=np.int64)
        self._wake_until = np.zeros((0, len(asic_groups)))
        self._wake_units = np.zeros((0, len(asic_groups)), dtype=np.int64)
        self._metered: tuple[int, int, FloatArray] | None = None
        self._tiles: tuple[_Setpoints, FloatArray] | None = None
        self._sleeps = SleepRecord(self._units.tolist(), [g.min_off_s for g in asic_groups])
        self.wakes_refused = 0  # units commanded awake within their minimum off time

    @property
    def accounted_s(self) -> float:
        """The end of the last interval accounted by `advance`."""
        return self._accounted_k * self.meter_interval_s

    def apply(
        self,
        units_on: IntArray,
        gpu_level: IntArray,
        gpu_capped_nodes: IntArray,
        gpu_paused_nodes: IntArray,
        at_s: float,
    ) -> IntArray:
        """Set every group's setpoints from `at_s` on: ASIC units awake, and per GPU group the
        cap level of its capped nodes, how many are capped and how many paused (the rest run at
        full power). A later `apply` at the same moment replaces this one. Returns the units
        awake: fewer than `units_on` where a wake came within a minimum off time."""
        at_k = self._sample(at_s, "at_s")
        last = self._changes[-1]
        earliest_k = max(self._applied_k, self._accounted_k)
        if at_k < earliest_k:
            raise PlantError(
                f"at_s: {at_s} s is before setpoints already applied or accounted"
                f" (from {earliest_k * self.meter_interval_s} s)"
            )
        if self.holds(units_on, gpu_level, gpu_capped_nodes, gpu_paused_nodes):
            # Most intervals change nothing: the setpoints in force (checked when applied) go
            # on, with the same samples and accounting, and no wake to refuse.
            self._applied_k = at_k
            return last.units_on.copy()
        units = self._checked(units_on, self._units, "units_on", self._asic_groups)
        level = self._checked(gpu_level, self._levels - 1, "gpu_level", self._gpu_groups)
        capped = self._checked(gpu_capped_nodes, self._nodes, "capped", self._gpu_groups)
        paused = self._checked(gpu_paused_nodes, self._nodes, "paused", self._gpu_groups)
        over = np.flatnonzero(capped + paused > self._nodes)
        if over.size:
            name = self._gpu_groups[int(over[0])].name
            raise PlantError(f"gpu group {name}: capped plus paused nodes exceed its nodes")
        wanted = units
        units = self._sleeps.change(last.units_on, wanted, at_k * self.meter_interval_s)
        self.wakes_refused += int((wanted - units).sum())
        self._applied_k = at_k
        slept = np.maximum(last.units_on - units, 0)
        if slept.any():
            self._sleep_waking(slept, at_k)
        woken = np.maximum(units - last.units_on, 0)
        if woken.any():
            until = at_k * self.meter_interval_s + self._wake_loss_s
            self._wake_at = np.append(self._wake_at, at_k)
            self._wake_until = np.vstack((self._wake_until, until))
            self._wake_units = np.vstack((self._wake_units, woken))
        setpoints = self._setpoints(at_k, units, level, capped, paused)
        if last.at_k == at_k:
            self._changes[-1] = setpoints
        else:
            self._changes.append(setpoints)
        self._metered = None
        return units

    def locked_off(self, at_s: float) -> tuple[IntArray, FloatArray]:
        """Per ASIC group, the units asleep within their minimum off time at `at_s`, and the
        seconds until the last of them may wake."""
        return self._sleeps.locked(at_s)

    def meter(self, start_s: float, end_s: float) -> FloatArray:
        """Site meter samples (watts, the mean over each meter interval) over [start_s, end_s)
        under the setpoints applied so far. Read-only; valid until the next `apply`."""
        start_k = self._sample(start_s, "start_s")
        end_k = self._sample(end_s, "end_s")
        if start_k < self._accounted_k or end_k <= start_k:
            raise PlantError(
                f"meter: [{start_s}, {end_s}) must be a non-empty interval at or after"
                f" {self.accounted_s} s"
            )
        if self._metered is not None and self._metered[:2] == (start_k, end_k):
            return self._metered[2]
        segments = self._segments(start_k, end_k)
        first_phase = start_k % self._period
        if len(segments) == 1 and first_phase + end_k - start_k <= _TILED_S / self.meter_interval_s:
            # One setpoint over the interval, as most are: a view of its loop laid end to end
            # (read-only), whose phase runs on across the loop's wraps.
            tiled = self._tiled(segments[0][0])
            samples = tiled[first_phase : first_phase + end_k - start_k]
        else:
            samples = np.empty(end_k - start_k)
            for setpoints, seg_start, seg_end in segments:
                # Phases into the loop; taken modulo here, as take(mode="wrap") costs per wrap.
                phase = (seg_start % self._period + np.arange(seg_end - seg_start)) % self._period
                samples[seg_start - start_k : seg_end - start_k] = setpoints.site_watts[phase]
            samples.flags.writeable = False
        self._metered = (start_k, end_k, samples)
        return samples

    def advance(
        self, start_s: float, end_s: float, *, cap_watts: float | None = None
    ) -> IntervalUse:
        """Account [start_s, end_s), which must follow the last accounted interval, under the
        setpoints in force over it, and move the plant's accounting on to `end_s`."""
        start_k = self._sample(start_s, "start_s")
        if start_k != self._accounted_k:
            raise PlantError(f"advance: must continue from {self.accounted_s} s, not {start_s} s")
        samples = self.meter(start_s, end_s)
        end_k = self._sample(end_s, "end_s")
        dt = self.meter_interval_s
        segments = self._segments(start_k, end_k)
        if len(segments) == 1:
            # One setpoint over the interval, as most are: the sums below, without the zeros
            # they start from (adding to 0.0 changes no value).
            setpoints = segments[0][0]
            length_s = (end_k - start_k) * dt
            asic_ws = setpoints.asic_watts * length_s
            ths_s = setpoints.ths_on * length_s
            full_s = ((self._nodes - setpoints.capped - setpoints.paused) * length_s).astype(
                np.float64, copy=False
            )
            capped_s = (setpoints.capped * length_s).astype(np.float64, copy=False)
            paused_s = (setpoints.paused * length_s).astype(np.float64, copy=False)
            work_s = setpoints.work_gpus * length_s
        else:
            groups = len(self._gpu_groups)
            asic_ws = ths_s = 0.0
            full_s, capped_s, paused_s, work_s = (np.zeros(groups) for _ in range(4))
            for setpoints, seg_start, seg_end in segments:
                length_s = (seg_end - seg_start) * dt
                asic_ws += setpoints.asic_watts * length_s
                ths_s += setpoints.ths_on * length_s
                full_s += (self._nodes - setpoints.capped - setpoints.paused) * length_s
                capped_s += setpoints.capped * length_s
                paused_s += setpoints.paused * length_s
                work_s += setpoints.work_gpus * length_s
        lost = self._waking_ths_s(start_s, end_s)
        energy_ws = float(samples.sum()) * dt
        peak_watts = float(samples.max())
        over_s = over_mwh = 0.0
        if cap_watts is not None and peak_watts > cap_watts:
            over = np.maximum(samples - cap_watts, 0.0)
            over_s = float(np.count_nonzero(over)) * dt
            over_mwh = float(over.sum()) * dt / WATT_SECONDS_PER_MWH
        self._close(end_k)
        return IntervalUse(
            start_s=start_s,
            end_s=end_s,
            energy_mwh=energy_ws / WATT_SECONDS_PER_MWH,
            asic_energy_mwh=asic_ws / WATT_SECONDS_PER_MWH,
            gpu_energy_mwh=(energy_ws - asic_ws) / WATT_SECONDS_PER_MWH,
            hash_ths_s=ths_s - lost,
            wake_loss_ths_s=lost,
            gpu_full_node_s=full_s,
            gpu_capped_node_s=capped_s,
            gpu_paused_node_s=paused_s,
            gpu_work_gpu_s=work_s,
            max_site_watts=peak_watts,
            mean_site_watts=energy_ws / ((end_k - start_k) * dt),
            over_cap_s=over_s,
            over_cap_mwh=over_mwh,
        )

    def holds(
        self,
        units_on: IntArray,
        gpu_level: IntArray,
        gpu_capped_nodes: IntArray,
        gpu_paused_nodes: IntArray,
    ) -> bool:
        """Whether these are the setpoints in force (as applied, after any refused wake), so
        that applying them would change nothing."""
        last = self._changes[-1]
        return (
            _same(units_on, last.units_on)
            and _same(gpu_level, last.gpu_level)
            and _same(gpu_capped_nodes, last.capped)
            and _same(gpu_paused_nodes, last.paused)
        )

    def advance_steady(
        self, start_s: float, interval_s: float, count: int, *, guard_watts: float
    ) -> SteadyUse:
        """Account up to `count` intervals of `interval_s` from `start_s` under the setpoints in
        force, as `advance` would one by one with nothing applied between them: a replay's
        shortcut through the long stretches in which a fixed schedule changes nothing.

        It stops before the first interval with a meter sample above `guard_watts` (there a
        guard acts, and the caller takes that interval itself), and accounts none while a
        setpoint change is pending ahead or a woken unit is still losing hash (those intervals
        differ in more than the phase). `count` of the result says how many it accounted."""
        start_k = self._sample(start_s, "start_s")
        per = self._sample(interval_s, "interval_s")
        if start_k != self._accounted_k:
            raise PlantError(f"advance: must continue from {self.accounted_s} s, not {start_s} s")
        if per < 1 or count < 0:
            raise PlantError(f"advance_steady: {count} intervals of {interval_s} s")
        setpoints = self._changes[-1]
        if len(self._changes) > 1 or setpoints.at_k > start_k or len(self._wake_at):
            count = 0
        loop = setpoints.site_watts
        may_exceed = bool(loop.max() > guard_watts)
        sums: list[FloatArray] = []
        done = 0
        while done < count:
            block = min(_STEADY_BLOCK, count - done)
            first_k = start_k + done * per
            phase = (first_k % self._period + np.arange(block * per)) % self._period
            samples = loop[phase].reshape(block, per)
            over = np.flatnonzero(samples.max(axis=1) > guard_watts) if may_exceed else None
            if over is not None and over.size:
                samples = samples[: int(over[0])]
            sums.append(samples.sum(axis=1))  # row by row, as `advance` sums one interval's
            done += len(samples)
            if over is not None and over.size:
                break
        dt = self.meter_interval_s
        energy_ws = (np.concatenate(sums) if sums else np.zeros(0)) * dt
        length_s = per * dt
        if done:
            self._close(start_k + done * per)
        return SteadyUse(
            interval_s=interval_s,
            count=done,
            energy_mwh=energy_ws / WATT_SECONDS_PER_MWH,
            mean_site_watts=energy_ws / length_s,
            asic_energy_mwh=setpoints.asic_watts * length_s / WATT_SECONDS_PER_MWH,
            hash_ths_s=setpoints.ths_on * length_s,
            gpu_full_node_s=((self._nodes - setpoints.capped - setpoints.paused) * length_s).astype(
                np.float64, copy=False
            ),
            gpu_capped_node_s=(setpoints.capped * length_s).astype(np.float64, copy=False),
            gpu_paused_node_s=(setpoints.paused * length_s).astype(np.float64, copy=False),
            gpu_work_gpu_s=setpoints.work_gpus * length_s,
        )

    def _sample(self, moment_s: float, name: str) -> int:
        k = round(moment_s / self.meter_interval_s)
        if abs(k * self.meter_interval_s - moment_s) > 1e-6 * self.meter_interval_s:
            raise PlantError(f"{name}: {moment_s} s is not on the {self.meter_interval_s} s grid")
        return k

    @staticmethod
    def _checked(
        values: IntArray,
        upper: IntArray,
        name: str,
        groups: tuple[AsicGroup, ...] | tuple[GpuGroup, ...],
    ) -> IntArray:
        array = np.asarray(values)
        if array.shape != (len(groups),) or array.dtype.kind not in "iu":
            raise PlantError(f"{name}: expected {len(groups)} integers, got {array!r}")
        outside = (array < 0) | (array > upper)
        if outside.any():
            index = int(np.argmax(outside))
            raise PlantError(
                f"{name}[{groups[index].name}]: {int(array[index])} is outside 0..{upper[index]}"
            )
        return array.astype(np.int64)  # a copy: the caller may reuse its array

    def _setpoints(
        self, at_k: int, units: IntArray, level: IntArray, capped: IntArray, paused: IntArray
    ) -> _Setpoints:
        asic_watts = float(units @ self._asic_watts)
        full = self._nodes - capped - paused
        weights = np.zeros(len(self._loops))
        weights[self._first_row] += self._scale * full
        weights[self._first_row + level] += self._scale * capped
        site = weights @ self._loops + (asic_watts + self._host_watts + paused @ self._idle_watts)
        site.flags.writeable = False  # `meter` hands out views of it
        rows = np.arange(len(level))
        work = self._gpus_per_node * (
            full * self._throughput[rows, 0] + capped * self._throughput[rows, level]
        )
        return _Setpoints(
            at_k, units, level, capped, paused, site, asic_watts, float(units @ self._ths), work
        )

    def _tiled(self, setpoints: _Setpoints) -> FloatArray:
        """The setpoints' loop repeated to cover `_TILED_S` past any phase, made once for the
        setpoints in force (a loop shorter than an interval wraps in every one)."""
        if self._tiles is None or self._tiles[0] is not setpoints:
            repeats = -(-round(_TILED_S / self.meter_interval_s) // self._period) + 1
            tiled = np.tile(setpoints.site_watts, repeats)
            tiled.flags.writeable = False
            self._tiles = (setpoints, tiled)
        return self._tiles[1]

    def _segments(self, start_k: int, end_k: int) -> list[tuple[_Setpoints, int, int]]:
        """The setpoints in force over [start_k, end_k), as (setpoints, from, to) pieces."""
        pieces = []
        for index, setpoints in enumerate(self._changes):
            until = self._changes[index + 1].at_k if index + 1 < len(self._changes) else end_k
            lo, hi = max(setpoints.at_k, start_k), min(until, end_k)
            if hi > lo:
                pieces.append((setpoints, lo, hi))
        return pieces

    def _sleep_waking(self, slept: IntArray, at_k: int) -> None:
        """Put to sleep at `at_k` up to `slept` units per group from those still waking,
        latest first: each leaves its cohort as a cohort of its own that stops at `at_k`."""
        at_s = at_k * self.meter_interval_s
        left = slept.copy()
        for row in range(len(self._wake_at) - 1, -1, -1):
            waking = np.where(self._wake_until[row] > at_s, self._wake_units[row], 0)
            taken = np.minimum(left, waking)
            if not taken.any():
                continue
            self._wake_units[row] -= taken
            left -= taken
            self._wake_at = np.append(self._wake_at, self._wake_at[row])
            self._wake_until = np.vstack((self._wake_until, np.full(len(left), at_s)))
            self._wake_units = np.vstack((self._wake_units, taken))

    def _waking_ths_s(self, start_s: float, end_s: float) -> float:
        """TH/s-seconds not hashed in [start_s, end_s) by units still waking."""
        if not len(self._wake_at):
            return 0.0
        woke_s = (self._wake_at * self.meter_interval_s)[:, None]
        overlap = np.minimum(self._wake_until, end_s) - np.maximum(woke_s, start_s)
        return float(np.sum(np.clip(overlap, 0.0, None) * self._wake_units * self._ths))

    def _close(self, end_k: int) -> None:
        """Forget what lies before `end_k`: only setpoints and cohorts still in force remain."""
        if len(self._changes) > 1:
            keep = max(i for i, s in enumerate(self._changes) if s.at_k <= end_k)
            self._changes = self._changes[keep:]
        self._accounted_k = end_k
        self._metered = None
        if not len(self._wake_at):
            return
        end_s = end_k * self.meter_interval_s
        alive = ((self._wake_until > end_s) & (self._wake_units > 0)).any(axis=1)
        if not alive.all():
            self._wake_at = self._wake_at[alive]
            self._wake_until = self._wake_until[alive]
            self._wake_units = self._wake_units[alive]


def _same(values: object, applied: IntArray) -> bool:
    """Whether `values` are the setpoints `applied` (already checked), integers alike."""
    return (
        isinstance(values, np.ndarray)
        and values.dtype == applied.dtype
        and values.shape == applied.shape
        and values.tobytes() == applied.tobytes()
    )


def _group_loops(
    group: GpuGroup,
    loop: FloatArray,
    sizes: list[int],
    offsets: IntArray,
    per_meter: int,
) -> FloatArray:
    """One loop, at meter resolution, of the group's summed GPU draw (watts, before host and
    overhead) with all its nodes at each cap level: shape (cap levels, loop samples)."""
    columns = np.arange(group.gpus_per_node) % loop.shape[1]
    caps = np.array([c.watts_per_gpu for c in group.cap_levels])
    node = np.minimum(loop[:, columns][None, :, :], caps[:, None, None]).sum(axis=2)
    samples = loop.shape[0]
    summed = np.zeros((len(caps), samples))
    for nodes, offset in zip(sizes, offsets.tolist(), strict=True):
        summed += nodes * np.roll(node, -offset, axis=1)
    return np.asarray(summed.reshape(len(caps), -1, per_meter).mean(axis=2), dtype=np.float64)
