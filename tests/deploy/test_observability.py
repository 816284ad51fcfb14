"""The shipped Prometheus config, alert rules and Grafana dashboard, against a real Prometheus
that scrapes a running agent on loopback."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gridpilot.adapters.broker import LocalBroker, free_port
from gridpilot.agent.daemon.clock import SystemClock
from gridpilot.agent.daemon.daemon import Daemon
from tests.integration.harness import (
    PREFIX,
    RESERVE_SITE_TOML,
    Observer,
    observing,
    running,
    site_settings,
)

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "gridpilot.json"


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed; `make test` installs it (Debian: prometheus)")
    return found


@dataclass
class Site:
    """A running agent, the broker it talks to and a Prometheus scraping it."""

    daemon: Daemon
    metrics_port: int
    prometheus_port: int

    def query(self, expr: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.prometheus_port}/api/v1/query?" + urllib.parse.urlencode(
            {"query": expr}
        )
        with urllib.request.urlopen(url, timeout=10) as answer:  # loopback
            result: dict[str, Any] = json.loads(answer.read())
        return result

    def get(self, path: str) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.prometheus_port}{path}"
        with urllib.request.urlopen(url, timeout=10) as answer:  # loopback
            result: dict[str, Any] = json.loads(answer.read())
        return result


def _prometheus_config(folder: Path, metrics_port: int) -> Path:
    """The shipped config with the agent's test port, a 1 s scrape and the shipped rules."""
    text = PROMETHEUS_CONFIG.read_text()
    text = text.replace('"127.0.0.1:9108"', f'"127.0.0.1:{metrics_port}"')
    text = text.replace("scrape_interval: 15s", "scrape_interval: 1s")
    text = text.replace("evaluation_interval: 15s", "evaluation_interval: 1s")
    text = text.replace("  - alerts.yml", f"  - {ALERTS}")
    assert f"127.0.0.1:{metrics_port}" in text
    path = folder / "prometheus.yml"
    path.write_text(text)
    return path


async def _drive(daemon: Daemon, broker: LocalBroker) -> None:
    """What a site sends in its first minutes: a forecast twice (two plans), prices, a
    hashprice, meter readings once over the cap, a grid event and one bad payload; and of the
    grid programs, ERCOT's load and frequency, a 4CP alert, day-ahead ancillary prices, an
    RRS award and a deployment, met and recalled."""
    async with observing(broker) as site:
        now = daemon.clock.now()
        forecast = {
            "issued": now.isoformat(),
            "start": now.replace(minute=0, second=0, microsecond=0).isoformat(),
            "step_s": 3600,
            "usd_per_mwh": [30.0] * 12 + [250.0] * 2 + [30.0] * 10,
        }
        await site.publish(f"{PREFIX}/hashprice", json.dumps({"usd_per_th_day": 0.05}))
        await site.publish(f"{PREFIX}/price/realtime", json.dumps({"usd_per_mwh": 32.0}))
        await site.publish(f"{PREFIX}/meter/main", json.dumps({"watts": 200e3}))
        await site.publish(f"{PREFIX}/price/forecast", json.dumps(forecast))
        await site.wait_for(lambda: daemon.cycle.plans_made >= 1, 30)
        await site.publish(f"{PREFIX}/meter/main", json.dumps({"watts": 265e3}))
        await site.wait_for(lambda: daemon.guard.actions >= 1, 10)
        await site.publish(f"{PREFIX}/meter/main", b"{broken")
        event = {
            "id": "eea-1",
            "start": (now + timedelta(hours=2)).isoformat(),
            "end": (now + timedelta(hours=3)).isoformat(),
            "max_site_watts": 120e3,
        }
        await site.publish(f"{PREFIX}/grid/event", json.dumps(event))
        await site.wait_for(lambda: daemon.cycle.plans_made >= 2, 30)
        await _drive_programs(daemon, site)


async def _drive_programs(daemon: Daemon, site: Observer) -> None:
    """The grid programs' inputs, once each, and an RRS deployment carried out, met (no meter
    reading in its half second: judged on the commands) and recalled."""
    now = daemon.clock.now()
    hour = now.replace(minute=0, second=0, microsecond=0)
    span = {"start": hour.isoformat(), "end": (hour + timedelta(hours=2)).isoformat()}
    await site.publish(f"{PREFIX}/grid/load", json.dumps({"ts": now.isoformat(), "mw": 61e3}))
    await site.publish(f"{PREFIX}/grid/frequency", json.dumps({"hz": 60.01}))
    await site.publish(f"{PREFIX}/grid/cp_alert", json.dumps({**span, "chance": 0.2}))
    prices = {"start": hour.isoformat(), "step_s": 3600, "product": "RRS", "usd_per_mw_h": [5.0]}
    await site.publish(f"{PREFIX}/as/prices", json.dumps(prices))
    award = {**span, "product": "RRS", "mw": 0.03, "usd_per_mw_h": 5.0}
    plans = daemon.cycle.plans_made
    await site.publish(f"{PREFIX}/as/award", json.dumps(award))
    # Deployed only once a plan holds the award's miners awake: before it, the guard's earlier
    # shed may have every qualified miner asleep, and the deployment is (rightly) short.
    await site.wait_for(
        lambda: (
            daemon.state.programs.awards_version >= 1
            and daemon.cycle.plans_made > plans
            and daemon.reserves.obligations.available_mw("RRS") >= 0.03
        ),
        30,
    )
    deploy = {"id": "observability-1", "product": "RRS", "mw": 0.02}
    await site.publish(f"{PREFIX}/as/deploy", json.dumps(deploy))
    deployments = "gridpilot_reserve_deployments_total"
    registry = daemon.metrics.registry
    await site.wait_for(lambda: bool(registry.get_sample_value(deployments, {"product": "RRS"})))
    await asyncio.sleep(1.0)  # past RRS's half second: judged, and met
    failures = [
        registry.get_sample_value(
            "gridpilot_reserve_failures_total", {"product": "RRS", "reason": reason}
        )
        for reason in ("short", "late", "meter")
    ]
    assert failures == [0.0, 0.0, 0.0]
    await site.publish(f"{PREFIX}/as/recall", json.dumps({"id": "observability-1"}))
    await site.wait_for(lambda: not daemon.state.programs.holds, 10)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    prometheus = _binary("prometheus")
    folder = Path(tempfile.mkdtemp(prefix="gridpilot-observability-"))
    metrics_port, prometheus_port = free_port(), free_port()
    ready = threading.Event()
    stop = threading.Event()
    holder: dict[str, Any] = {}

    async def serve() -> None:
        with LocalBroker() as broker:
            settings = site_settings(
                folder, broker, site_toml=RESERVE_SITE_TOML, metrics_port=metrics_port
            )
            # On the system clock, not a named instant: Prometheus stamps its scrapes and
            # judges the agent's timestamps (the last plan's) by the wall. `make test-dates`
            # runs this under faketime at the named instants instead.
            async with running(settings, clock=SystemClock()) as daemon:
                holder["daemon"] = daemon
                await _drive(daemon, broker)
                ready.set()
                while not stop.is_set():
                    await daemon.link.publish(f"{PREFIX}/meter/main", b"200000", retain=False)
                    await asyncio.sleep(0.5)

    def thread_main() -> None:
        try:
            asyncio.run(serve())
        except BaseException as error:  # surfaced to the test below
            holder["error"] = error
            ready.set()

    agent = threading.Thread(target=thread_main, name="agent", daemon=True)
    agent.start()
    assert ready.wait(90), "the agent did not come up"
    if "error" in holder:
        raise holder["error"]
    with (folder / "prometheus.log").open("wb") as log:
        server = subprocess.Popen(  # noqa: S603  # the distribution's binary, our config
            [
                prometheus,
                f"--config.file={_prometheus_config(folder, metrics_port)}",
                f"--storage.tsdb.path={folder / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        site = Site(holder["daemon"], metrics_port, prometheus_port)
        deadline = time.monotonic() + 60
        # Wait for enough scrapes that rates over a minute have at least two samples.
        while time.monotonic() < deadline:
            try:
                samples = site.query('count_over_time(up{job="gridpilot"}[1m])')
                if (
                    samples["data"]["result"]
                    and float(samples["data"]["result"][0]["value"][1]) >= 5
                ):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError((folder / "prometheus.log").read_text()[-2000:])
        yield site
    finally:
        server.terminate()
        server.wait(timeout=30)
        stop.set()
        agent.join(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


def _dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            # Grafana's own variable: with a 1 s scrape it would be a few seconds; a minute
            # holds enough samples here.
            expr = target["expr"].replace("$__rate_interval", "1m")
            queries.append((panel["title"], expr))
    return queries


def test_every_dashboard_query_returns_data(site: Site) -> None:
    """Each query of each panel of the shipped dashboard returns at least one series from a
    Prometheus that has scraped the running agent."""
    queries = _dashboard_queries()
    assert len(queries) >= 25
    empty = []
    for title, expr in queries:
        answer = site.query(expr)
        assert answer["status"] == "success", (title, expr, answer)
        if not answer["data"]["result"]:
            empty.append((title, expr))
    assert empty == []


def test_every_alert_rule_evaluates_on_the_agents_series(site: Site) -> None:
    """Prometheus loaded every shipped rule and evaluates each without error, and every agent
    metric an alert names exists in what was scraped."""
    deadline = time.monotonic() + 20
    while True:
        groups = site.get("/api/v1/rules")["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        if rules and all(rule.get("lastEvaluation", "").startswith("2") for rule in rules):
            break
        assert time.monotonic() < deadline, rules
        time.sleep(0.5)
    assert len(rules) == ALERTS.read_text().count("- alert:")
    assert [r["name"] for r in rules if r["health"] != "ok"] == []
    names = set(re.findall(r"\bgridpilot_[a-z_]+", ALERTS.read_text()))
    for name in sorted(names):
        assert site.query(name)["data"]["result"], f"{name} is named by an alert but not exported"
    # A healthy agent trips none of them but the one about its own brief over-limit reading.
    firing = {rule["name"] for rule in rules if rule["state"] == "firing"}
    assert firing <= {"GridpilotOverLimit"}


def test_promtool_finds_nothing_to_lint_in_the_agents_metrics(site: Site) -> None:
    """`promtool check metrics` on the agent's live /metrics output is clean."""
    promtool = _binary("promtool")
    with urllib.request.urlopen(  # loopback
        f"http://127.0.0.1:{site.metrics_port}/metrics", timeout=10
    ) as answer:
        exposition = answer.read()
    families = {
        line.split()[2] for line in exposition.decode().splitlines() if line.startswith("# TYPE")
    }
    assert len(families) >= 30
    result = subprocess.run(  # noqa: S603
        [promtool, "check", "metrics"], input=exposition, capture_output=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == b""


def test_shipped_prometheus_files_pass_promtool() -> None:
    """The shipped config and rules are valid, and the rules' unit tests pass."""
    promtool = _binary("promtool")
    for args in (
        ["check", "config", str(PROMETHEUS_CONFIG)],
        ["check", "rules", str(ALERTS)],
        ["test", "rules", str(DEPLOY / "prometheus" / "alerts.test.yml")],
    ):
        result = subprocess.run(  # noqa: S603
            [promtool, *args], capture_output=True, check=False, timeout=60
        )
        assert result.returncode == 0, (args, result.stdout, result.stderr)
