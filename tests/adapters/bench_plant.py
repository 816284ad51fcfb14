"""How long a year of the reference site takes on the simulated plant (not a test).

Run: `.venv/bin/python -m tests.adapters.bench_plant [site cap in MW, default 78.4]`.

Replays 2024's HB_WEST real-time prices (35,136 quarter hours) through the plant with the
reference site (95 ASIC groups of 200 units, GPU groups of 1,500/700/300 nodes of 8 H100): each
interval a per-model price threshold sets the ASICs, expensive hours cap or pause GPUs, and a
guard reads the meter, sheds miners from the first sample over the site cap and reads it again,
then the interval is accounted. Only the interval loop is timed.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

from gridpilot.adapters.plant import SimulatedPlant
from gridpilot.adapters.recorded import read_gpu_trace, read_realtime_prices
from gridpilot.optimizer.problem import AsicGroup, CapLevel, GpuGroup
from gridpilot.optimizer.schedule import IntArray

DATA = Path(__file__).resolve().parents[2] / "deploy" / "data"
HASHPRICE_USD_PER_TH_DAY = 0.05
LEVELS = tuple(
    CapLevel(w, t)
    for w, t in (
        (700, 1.0),
        (600, 0.985),
        (500, 0.96),
        (420, 0.93),
        (350, 0.91),
        (300, 0.895),
        (250, 0.88),
        (200, 0.80),
    )
)


def reference_site() -> tuple[tuple[AsicGroup, ...], tuple[GpuGroup, ...]]:
    models = (
        ("s19jpro", 40, 3_050.0, 100.0),
        ("s19xp", 30, 3_010.0, 140.0),
        ("s21", 25, 3_500.0, 200.0),
    )
    asics = tuple(
        AsicGroup(f"{name}-{i:02d}", name, 200, watts, ths, 1.05, wake_loss_s=600.0)
        for name, count, watts, ths in models
        for i in range(1, count + 1)
    )
    gpus = tuple(
        GpuGroup(name, name, nodes, 8, LEVELS, 100.0, 1_500.0, 1.25)
        for name, nodes in (("firm", 1_500), ("flex", 700), ("interruptible", 300))
    )
    return asics, gpus


def main(cap_watts: float) -> None:
    asics, gpus = reference_site()
    prices = read_realtime_prices(DATA / "ercot_rtm_spp_2024_hubs_15min.csv.gz", "HB_WEST")
    trace = read_gpu_trace(DATA / "h100x8_llama3-8b_train_ckpt100_per_gpu_100ms.csv.gz")
    built = time.perf_counter()
    plant = SimulatedPlant(asics, gpus, trace, seed=0)
    build_s = time.perf_counter() - built

    units = np.array([g.units for g in asics], dtype=np.int64)
    breakeven = np.array([HASHPRICE_USD_PER_TH_DAY * 1e6 / (24 * g.joules_per_th) for g in asics])
    shed_order = np.argsort(-np.array([g.joules_per_th for g in asics]))  # least efficient first
    unit_watts = np.array([g.watts_per_unit * g.overhead_factor for g in asics])
    step = prices.interval_s
    sheds = 0
    energy_mwh = over_s = hash_ths_s = peak_watts = 0.0
    started = time.perf_counter()
    for i, price in enumerate(prices.usd_per_mwh.tolist()):
        start, end = i * step, (i + 1) * step
        on: IntArray = np.where(price < breakeven, units, 0)
        level = np.array([0, 3 if price > 1_000 else 0, 0], dtype=np.int64)
        capped = np.array([0, 700 if price > 1_000 else 0, 0], dtype=np.int64)
        paused = np.array([0, 0, 300 if price > 2_000 else 0], dtype=np.int64)
        plant.apply(on, level, capped, paused, at_s=start)
        samples = plant.meter(start, end)
        while (over := np.flatnonzero(samples > cap_watts)).size and on.any():
            first = int(over[0])
            excess = float(samples[first:].max()) - cap_watts
            for g in shed_order:
                take = min(int(on[g]), math.ceil(excess / unit_watts[g]))
                on[g] -= take
                excess -= take * unit_watts[g]
                if excess <= 0:
                    break
            plant.apply(on, level, capped, paused, at_s=start + first * plant.meter_interval_s)
            samples = plant.meter(start, end)
            sheds += 1
        use = plant.advance(start, end, cap_watts=cap_watts)
        energy_mwh += use.energy_mwh
        over_s += use.over_cap_s
        hash_ths_s += use.hash_ths_s
        peak_watts = max(peak_watts, use.max_site_watts)
    run_s = time.perf_counter() - started
    print(
        f"{len(prices.usd_per_mwh)} intervals of {step:.0f} s at 1 s meter resolution:"
        f" build {build_s:.2f} s, run {run_s:.2f} s ({run_s / len(prices.usd_per_mwh) * 1e6:.0f}"
        f" us/interval); {energy_mwh:,.0f} MWh, {hash_ths_s / 86_400:,.0f} TH/s-days,"
        f" peak {peak_watts / 1e6:.2f} MW, {sheds} guard sheds, {over_s:.0f} s over the"
        f" {cap_watts / 1e6:.1f} MW cap"
    )


if __name__ == "__main__":
    main(float(sys.argv[1]) * 1e6 if len(sys.argv) > 1 else 80e6 - 1.6e6)
