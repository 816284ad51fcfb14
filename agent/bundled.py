"""The files that ship inside the package: the example site and the recorded data that the
commands default to (provenance in `data/SOURCES.md`).

They are package data of the root package `gridpilot` (the `deploy/` folder of a checkout), found
through `importlib.resources`, so the defaults hold wherever gridpilot runs from: a checkout, an
editable install or an installed wheel.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def bundled(relative: str) -> Path:
    """The path of a bundled file, `relative` to the package root (e.g. `data/x.csv`)."""
    resource = files("gridpilot").joinpath(relative)
    if not isinstance(resource, Path):  # a zipped install; gridpilot is never shipped so
        raise RuntimeError(f"gridpilot's {relative} is not on the file system: {resource}")
    return resource


REFERENCE_SITE = bundled("examples/reference-site.toml")
BUNDLED_PRICES = bundled("data/ercot_rtm_spp_2024_hubs_15min.csv.gz")
BUNDLED_DAY_AHEAD = bundled("data/ercot_dam_rtm_hourly_hubs_AS_2024.csv.gz")
BUNDLED_FEES = bundled("data/blockchaincom_daily_miner_revenue_fees_2023-04-30_2024-04-28.csv")
BUNDLED_TRACE = bundled("data/h100x8_llama3-8b_train_ckpt100_per_gpu_100ms.csv.gz")
BUNDLED_BTC = bundled(
    "data/btc_daily_price_difficulty_hashrate_hashprice_2020-04-11_2025-04-07.csv"
)
# The grid programs: ERCOT's hourly system load, the 4CP intervals, the transmission rates and
# the recorded grid emergencies; the scarce year's prices and hourly CO2 intensity for studies.
BUNDLED_LOAD = bundled("data/ercot_system_load_hourly_2019_2024.csv.gz")
BUNDLED_CP_INTERVALS = bundled("data/ercot_4cp_intervals_2008_2024.csv")
BUNDLED_RATES = bundled("data/ercot_4cp_transmission_rates.csv")
BUNDLED_GRID_EVENTS = bundled("data/ercot_grid_events_2023_2024_partial.csv")
BUNDLED_PRICES_2023 = bundled("data/ercot_rtm_spp_2023_hubs_15min.csv.gz")
BUNDLED_CO2 = bundled("data/ercot_co2_intensity_hourly_2023_2024_derived.csv.gz")
