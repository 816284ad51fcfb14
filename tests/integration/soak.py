"""The agent's resident memory after an hour of simulated site traffic.

`python -m tests.integration.soak [--meters 100] [--hours 1] [--speed 20]` (or `make soak`)
starts a private Mosquitto and `gridpilot run --time-scale SPEED` on the reference site, then
publishes what a site would at SPEED times real time: every meter once a simulated second, the
real-time price every five simulated minutes, the hashprice hourly. The agent plans every five
simulated minutes throughout. At the end it reads the agent's resident set (VmRSS) and its peak
(VmHWM) from /proc, and the messages it handled from its own metrics, and prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiomqtt

from gridpilot.adapters.broker import LocalBroker, free_port
from gridpilot.adapters.mqtt import NO_DELAY
from gridpilot.agent.bench.agent_process import resident_mb

REFERENCE_SITE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "reference-site.toml"
SITE = "west-texas"


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return str(answer.read().decode())


async def _traffic(
    broker: LocalBroker, meters: int, hours: float, speed: float
) -> tuple[int, float]:
    """Publish the site's inputs for `hours` of simulated time; returns (messages, wall s)."""
    prefix = f"gridpilot/{SITE}"
    sent = 0
    async with aiomqtt.Client(
        broker.host, broker.port, identifier="soak-site", socket_options=(NO_DELAY,)
    ) as client:
        client.pending_calls_threshold = 10_000_000
        started = time.monotonic()
        simulated_s = int(hours * 3_600)
        for second in range(simulated_s):
            if second % 3_600 == 0:
                await client.publish(f"{prefix}/hashprice", b'{"usd_per_th_day": 0.05}')
                sent += 1
            if second % 300 == 0:
                price = 25.0 + 40.0 * ((second // 300) % 7 == 3)  # a spike now and then
                await client.publish(f"{prefix}/price/realtime", json.dumps({"usd_per_mwh": price}))
                sent += 1
            # 100 meters sharing 77 MW between them.
            for meter in range(meters):
                await client.publish(f"{prefix}/meter/m{meter:03d}", str(77e6 / meters).encode())
            sent += meters
            lag = started + (second + 1) / speed - time.monotonic()
            if lag > 0:
                await asyncio.sleep(lag)
        return sent, time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.integration.soak")
    parser.add_argument("--meters", type=int, default=100)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--speed", type=float, default=20.0)
    args = parser.parse_args(argv)
    metrics_port = free_port()
    with tempfile.TemporaryDirectory(prefix="gridpilot-soak-") as folder, LocalBroker() as broker:
        meters = ", ".join(f'"m{m:03d}"' for m in range(args.meters))
        config = Path(folder) / "site.toml"
        config.write_text(
            REFERENCE_SITE.read_text()
            + f"\n[mqtt]\nport = {broker.port}\n\n[agent]\nmeters = [{meters}]\n"
            + f'ledger_path = "{folder}/ledger.sqlite3"\nmetrics_port = {metrics_port}\n'
        )
        with (Path(folder) / "agent.log").open("wb") as log:
            agent = subprocess.Popen(  # noqa: S603  # this interpreter, our own module
                [
                    sys.executable,
                    "-m",
                    "gridpilot",
                    "run",
                    "--config",
                    str(config),
                    "--time-scale",
                    str(args.speed),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={k: v for k, v in os.environ.items() if not k.startswith("GRIDPILOT_")},
            )
        try:
            time.sleep(3.0)  # imports and the broker connection
            start_mb, _ = resident_mb(agent.pid)
            sent, wall_s = asyncio.run(_traffic(broker, args.meters, args.hours, args.speed))
            time.sleep(1.0)
            end_mb, peak_mb = resident_mb(agent.pid)
            metrics = _scrape(metrics_port)
        finally:
            agent.terminate()
            agent.wait(timeout=30)
        log_text = (Path(folder) / "agent.log").read_text()
    plans = sum(
        float(v) for v in re.findall(r"^gridpilot_plans_total\{[^}]*\} (\S+)$", metrics, re.M)
    )
    result = {
        "meters": args.meters,
        "simulated_hours": args.hours,
        "speed": args.speed,
        "messages_sent": sent,
        "wall_s": round(wall_s, 1),
        "plans": plans,
        "safe_mode_entries": log_text.count('"mode.safe"'),
        "rss_start_mb": round(start_mb, 1),
        "rss_end_mb": round(end_mb, 1),
        "rss_peak_mb": round(peak_mb, 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
