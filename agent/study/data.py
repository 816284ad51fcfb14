"""What a study's scenarios read, from the bundled files, once per worker process.

A year's prices, day-ahead and ancillary prices, grid files, Bitcoin data, load shapes and CO2
intensity are the same for every scenario of that year and hub: `year_data` reads them the first
time a worker needs them and keeps them for the worker's life (a process pool's or a Dask
worker's), so a batch of scenarios pays for reading once.
"""

from __future__ import annotations

import gzip
from datetime import datetime, time, timedelta
from functools import cache, lru_cache

from gridpilot.adapters.ai import read_inference_trace
from gridpilot.adapters.grid import (
    read_ancillary_prices,
    read_co2_intensity,
    read_cp_intervals,
    read_grid_events,
    read_system_load,
    read_transmission_rates,
)
from gridpilot.adapters.recorded import (
    CENTRAL,
    read_bitcoin_daily,
    read_day_ahead_prices,
    read_fee_share,
    read_gpu_trace,
    read_realtime_prices,
)
from gridpilot.agent.bundled import (
    BUNDLED_BTC,
    BUNDLED_CO2,
    BUNDLED_CP_INTERVALS,
    BUNDLED_DAY_AHEAD,
    BUNDLED_FEES,
    BUNDLED_GRID_EVENTS,
    BUNDLED_LOAD,
    BUNDLED_PRICES,
    BUNDLED_PRICES_2023,
    BUNDLED_RATES,
    BUNDLED_TRACE,
    bundled,
)
from gridpilot.agent.replay.period import ReplayData
from gridpilot.agent.replay.programs import GridData
from gridpilot.agent.study.scenario import YearData

# The years whose real-time prices are bundled; day-ahead and ancillary prices only for 2024.
PRICES = {2023: BUNDLED_PRICES_2023, 2024: BUNDLED_PRICES}
DAY_AHEAD_YEARS = frozenset({2024})
REQUESTS = bundled("data/azure_llm_inference_trace_conv_2023-11-16.csv.gz")
POWER_CURVE = bundled("data/mlenergy_llm_inference_energy_per_request.csv")


@cache
def price_hubs(year: int) -> tuple[str, ...]:
    """The hubs (settlement points) in the bundled real-time prices of `year`: the columns
    after the two time columns of the file's header."""
    with gzip.open(PRICES[year], "rt") as prices:
        header = prices.readline().strip().split(",")
    return tuple(name for name in header[2:] if name)


@lru_cache(maxsize=4)
def year_data(year: int, hub: str) -> YearData:
    """Everything the scenarios of `year` at `hub` share (see the module docstring)."""
    if year not in PRICES:
        years = ", ".join(str(y) for y in sorted(PRICES))
        raise ValueError(f"no bundled real-time prices for {year}; the study has {years}")
    ahead = year in DAY_AHEAD_YEARS
    grid = GridData(
        load=read_system_load(BUNDLED_LOAD),
        cp=read_cp_intervals(BUNDLED_CP_INTERVALS),
        rates=read_transmission_rates(BUNDLED_RATES),
        ancillary=read_ancillary_prices(BUNDLED_DAY_AHEAD) if ahead else None,
        events=read_grid_events(BUNDLED_GRID_EVENTS),
    )
    data = ReplayData(
        prices=read_realtime_prices(PRICES[year], hub),
        hashprices=read_bitcoin_daily(BUNDLED_BTC),
        trace=read_gpu_trace(BUNDLED_TRACE),
        day_ahead=read_day_ahead_prices(BUNDLED_DAY_AHEAD, hub) if ahead else None,
        fee_share=read_fee_share(BUNDLED_FEES),
        grid=grid,
    )
    start = datetime.combine(datetime(year, 1, 1).date(), time(0), CENTRAL)
    hours = round(
        (datetime.combine(datetime(year + 1, 1, 1).date(), time(0), CENTRAL) - start)
        / timedelta(hours=1)
    )
    co2 = read_co2_intensity(BUNDLED_CO2).hours_from(start, hours)
    return YearData(
        replay=data,
        co2_kg_per_mwh=co2,
        traces={
            "training": data.trace,
            "inference": read_inference_trace(REQUESTS, POWER_CURVE),
        },
    )
