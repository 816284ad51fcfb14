"""Unit economics of miners and GPUs: pure formulas with their sources."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import numpy.typing as npt

# A hashprice, or a series of them (the breakeven of each, by the same arithmetic).
Hashprice = TypeVar("Hashprice", float, npt.NDArray[np.float64])

SECONDS_PER_DAY = 86_400.0
SECONDS_PER_HOUR = 3_600.0
WATT_SECONDS_PER_MWH = 3.6e9


def breakeven_usd_per_mwh(
    hashprice_usd_per_th_day: Hashprice,
    joules_per_th: float,
    *,
    pool_fee: float = 0.0,
    overhead_factor: float = 1.0,
) -> Hashprice:
    """Power price above which a miner loses money: `hashprice * 1e6 / (24 * J/TH)`.

    The formula is the industry's (see docs/domain.md: at 0.05 $/TH/day an S21 at 17.5 J/TH breaks
    even near 119 $/MWh). With `pool_fee` and `overhead_factor` (cooling, transformers) it is the
    breakeven at the site meter, which is what a curtailment decision compares against.
    """
    if joules_per_th <= 0:
        raise ValueError("joules_per_th must be positive")
    return (
        hashprice_usd_per_th_day * (1.0 - pool_fee) * 1e6 / (24.0 * joules_per_th * overhead_factor)
    )


def gpu_value_usd_per_mwh(usd_per_gpu_hour: float, node_watts: float, gpus_per_node: int) -> float:
    """Contract revenue per MWh a node draws at full power (about 1,600 $/MWh at 2 $/GPU-hour)."""
    return usd_per_gpu_hour * gpus_per_node / (node_watts / 1e6)
