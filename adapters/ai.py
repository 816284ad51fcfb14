"""An inference cluster's load shape from recorded requests and measured energy.

No public trace gives an inference node's power, so it is made from two real records: the
arrivals and generated tokens of Azure's LLM conversation service over an hour (Patel et al.,
"Splitwise", ISCA 2024) and the ML.ENERGY benchmark's GPU power at each output throughput as a
server's batch grows (ML.ENERGY Benchmark, NeurIPS 2025). The requests' tokens per second, scaled
so that the busiest second fills `peak_utilisation` of what one GPU serves at its largest
measured batch, are turned into watts along the measured curve (linear between measurements;
from `idle_watts` at no load to the smallest batch's power). Every GPU of a node carries the
same share of the node's traffic, so the node's draw follows the service's load: an inference
hall swings with demand rather than with training steps and checkpoints.
"""

from __future__ import annotations

import csv
import gzip
from datetime import datetime
from pathlib import Path

import numpy as np

from gridpilot.adapters.recorded import GpuTrace, RecordedDataError

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
TASK = "lm-arena-chat"
GPU = "H100"
# An H100 allocated but serving nothing draws about 80-130 W (docs/domain.md).
IDLE_WATTS = 100.0


def read_power_curve(
    path: Path, *, model: str = MODEL, task: str = TASK, gpu: str = GPU
) -> tuple[np.ndarray, np.ndarray]:
    """(output tokens per second, watts) per GPU for one model, task and GPU with one GPU per
    server, sorted by throughput."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [
                r
                for r in csv.DictReader(handle)
                if r["model_id"] == model
                and r["task"] == task
                and r["gpu_model"] == gpu
                and r["num_gpus"] == "1"
            ]
    except (OSError, KeyError) as error:
        raise RecordedDataError(path, f"cannot read the energy table: {error}") from error
    if not rows:
        raise RecordedDataError(path, f"no rows for {model}, {task}, {gpu} on one GPU")
    pairs = sorted(
        (float(r["output_throughput_tokens_per_sec"]), float(r["avg_power_watts"])) for r in rows
    )
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def read_requests(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(seconds since the first request, generated tokens) of each request, in order."""
    try:
        with gzip.open(path, "rt", newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        moments = [datetime.fromisoformat(r["TIMESTAMP"][:26]) for r in rows]
        tokens = np.array([float(r["GeneratedTokens"]) for r in rows])
    except (OSError, KeyError, ValueError, EOFError) as error:
        raise RecordedDataError(path, f"cannot read the request trace: {error}") from error
    if not rows:
        raise RecordedDataError(path, "no requests")
    seconds = np.array([(m - moments[0]).total_seconds() for m in moments])
    order = np.argsort(seconds, kind="stable")
    return seconds[order], tokens[order]


def read_inference_trace(
    requests_path: Path,
    curve_path: Path,
    *,
    gpus: int = 8,
    interval_s: float = 0.1,
    peak_utilisation: float = 0.9,
    idle_watts: float = IDLE_WATTS,
) -> GpuTrace:
    """A node's per-GPU power through the recorded hour (see the module docstring). A request's
    tokens are spread over the seconds it takes to generate them at the measured throughput's
    per-sequence rate; `peak_utilisation` sets how full the busiest second is."""
    seconds, tokens = read_requests(requests_path)
    throughput, watts = read_power_curve(curve_path)
    length = int(np.ceil(seconds[-1])) + 60
    per_second = np.zeros(length)
    # A sequence decodes at about the smallest batch's per-sequence rate: spread its tokens.
    rate = throughput[0] / 8.0
    for start, count in zip(seconds.tolist(), tokens.tolist(), strict=True):
        span = max(1, int(np.ceil(count / rate)))
        first = int(start)
        last = min(length, first + span)
        per_second[first:last] += count / span
    scale = peak_utilisation * throughput[-1] / max(float(np.percentile(per_second, 99.5)), 1e-9)
    served = np.minimum(per_second * scale, throughput[-1])
    curve_x = np.concatenate(([0.0], throughput))
    curve_y = np.concatenate(([idle_watts], watts))
    gpu_watts = np.interp(served, curve_x, curve_y)
    samples = np.repeat(gpu_watts, round(1.0 / interval_s))
    return GpuTrace(interval_s, np.repeat(samples[:, None], gpus, axis=1))
