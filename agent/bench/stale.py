"""The stale-feed trial of `gridpilot bench reliability`: each input feed stopped in turn under
the running agent, with the real Prometheus scraping it and evaluating the shipped alerts.

The agent runs as its own process on the guard bench's synthetic site with short ages
(`STALE_AFTER_S`); a feeder publishes the meter, the real-time price and the hashprice four
times a second and a day-ahead forecast every two seconds. One feed at a time is stopped, until
its alert has fired, and then fed again. Measured from the instant the feed turned stale (its
last message plus its age), for the meter, price and hashprice: the mode topic saying `safe`
with that feed (goal: within two housekeeping ticks, 2 s); for every feed: its alert firing in
Prometheus (`GridpilotSignalStale{signal=...}`, the forecast's `GridpilotForecastStale`; each
rule waits its `for`, 30 s, before it fires). From the feed's return: the mode `normal` again
and the alert no longer firing. A stale forecast must not make the agent safe (it plans on its
own forecast): any safe mode while only the forecast is stopped is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt

from gridpilot.adapters.broker import LocalBroker, free_port
from gridpilot.adapters.mqtt import publish_acked
from gridpilot.agent.bench.agent_process import PREFIX, Watcher, connect, forecast, start_agent
from gridpilot.agent.bench.prometheus import LocalPrometheus

FEEDS = ("meter", "price", "hashprice", "forecast")
STALE_AFTER_S = {"meter": 3.0, "price": 4.0, "hashprice": 4.0, "forecast": 4.0}
SAFE_FEEDS = frozenset({"meter", "price", "hashprice"})  # the ones that make the agent safe
FEED_EVERY_S = 0.25
FORECAST_EVERY_S = 2.0
ALERT_TIMEOUT_S = 120.0  # the rules' 30 s `for`, scrapes and evaluations, on a loaded machine


@dataclass(frozen=True, slots=True)
class StaleFeed:
    """One feed stopped and fed again; seconds, None where it does not apply."""

    feed: str
    stale_after_s: float
    safe_after_s: float | None  # from stale to the mode topic saying safe with this feed
    alert_after_s: float  # from stale to its alert firing in Prometheus
    normal_after_s: float | None  # from its return to the mode topic saying normal
    alert_cleared_s: float  # from its return to its alert no longer firing
    safe_while_stale: bool  # the mode went safe (for the forecast: it must not)


def stale_site(site: str, metrics_port: int) -> str:
    """The bench site with the trial's short ages and a metrics port Prometheus can be told."""
    if site.count("metrics_port = 0\n") != 1:
        raise RuntimeError("the bench site no longer sets metrics_port = 0 once")
    ages = "".join(f"{feed}_stale_after_s = {s}\n" for feed, s in STALE_AFTER_S.items())
    return site.replace("metrics_port = 0\n", f"metrics_port = {metrics_port}\n" + ages)


class _Feeder:
    """Publishes every feed not stopped, and remembers when each was last published. Its
    publishes are adapters.mqtt's cancellation-safe ones: the task is cancelled at the end,
    and aiomqtt's own wait on Python 3.11 can drop that cancellation and run on for ever."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.stopped: set[str] = set()
        self.last: dict[str, float] = {}

    async def run(self) -> None:
        next_forecast = 0.0
        while True:
            for feed, topic, payload in (
                ("meter", "meter/main", b'{"watts": 0}'),
                ("price", "price/realtime", b'{"usd_per_mwh": 10.0}'),
                ("hashprice", "hashprice", b'{"usd_per_th_day": 0.06}'),
            ):
                if feed not in self.stopped:
                    await publish_acked(self.client, f"{PREFIX}/{topic}", payload)
                    self.last[feed] = time.monotonic()
            if "forecast" not in self.stopped and time.monotonic() >= next_forecast:
                payload = forecast(datetime.now(UTC), 30.0)
                await publish_acked(self.client, f"{PREFIX}/price/forecast", payload)
                self.last["forecast"] = time.monotonic()
                next_forecast = time.monotonic() + FORECAST_EVERY_S
            await asyncio.sleep(FEED_EVERY_S)


async def stale_feeds(
    broker: LocalBroker, site: str, folder: Path, feeds: tuple[str, ...]
) -> list[StaleFeed]:
    """Each of `feeds` stopped in turn under the agent on `site` (the bench site's text)."""
    if not feeds:
        return []
    metrics_port = free_port()
    config = folder / "stale.toml"
    config.write_text(stale_site(site, metrics_port))
    results: list[StaleFeed] = []
    with LocalPrometheus(folder, metrics_port) as prometheus:
        agent = start_agent(config, folder)
        try:
            client = await connect(broker, "gridpilot-rel-feeds")
            try:
                async with Watcher(client) as watcher:
                    feeder = _Feeder(client)
                    feeding = asyncio.create_task(feeder.run())
                    try:
                        await _until_watched(watcher, prometheus)
                        for feed in feeds:  # in turn, not at once: each alone
                            stopped = await _one(feed, feeder, watcher, prometheus)
                            results.append(stopped)
                    finally:
                        feeding.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await feeding
            finally:
                await client.__aexit__(None, None, None)
        finally:
            agent.terminate()
            agent.wait(timeout=30)
    return results


async def _until_watched(watcher: Watcher, prometheus: LocalPrometheus) -> None:
    """Until the agent is in normal mode and Prometheus has every feed's age from it."""
    await watcher.until(
        lambda: bool(watcher.modes) and watcher.modes[-1][1]["mode"] == "normal", 120
    )

    def scraped() -> bool:
        ages = prometheus.values('gridpilot_signal_age_seconds{job="gridpilot"}')
        return {labels["signal"] for labels, _ in ages} >= set(FEEDS)

    await _until(scraped, 60)


async def _one(
    feed: str, feeder: _Feeder, watcher: Watcher, prometheus: LocalPrometheus
) -> StaleFeed:
    after_s = STALE_AFTER_S[feed]
    feeder.stopped.add(feed)
    await asyncio.sleep(FEED_EVERY_S * 2)  # a publish under way has finished
    last = feeder.last[feed]
    stale_at = last + after_s
    alert = "GridpilotForecastStale" if feed == "forecast" else "GridpilotSignalStale"

    def firing() -> bool:
        return any(labels.get("signal") == feed for labels in prometheus.firing(alert))

    def safe_with_feed() -> float | None:
        return _first_mode(watcher, last, lambda m: m["mode"] == "safe" and feed in m["stale"])

    safe_after_s = None
    if feed in SAFE_FEEDS:
        await watcher.until(lambda: safe_with_feed() is not None, after_s + 30)
        seen = safe_with_feed()
        assert seen is not None
        safe_after_s = seen - stale_at
    alerted = await _until(firing, after_s + ALERT_TIMEOUT_S)
    safe_while_stale = _first_mode(watcher, last, lambda m: m["mode"] == "safe") is not None
    feeder.stopped.discard(feed)
    back = time.monotonic()

    def normal() -> float | None:
        return _first_mode(watcher, back, lambda m: m["mode"] == "normal")

    normal_after_s = None
    if feed in SAFE_FEEDS:
        await watcher.until(lambda: normal() is not None, 60)
        seen = normal()
        assert seen is not None
        normal_after_s = seen - back
    cleared = await _until(lambda: not firing(), 60)
    return StaleFeed(
        feed=feed,
        stale_after_s=after_s,
        safe_after_s=safe_after_s,
        alert_after_s=alerted - stale_at,
        normal_after_s=normal_after_s,
        alert_cleared_s=cleared - back,
        safe_while_stale=safe_while_stale,
    )


def _first_mode(
    watcher: Watcher, since: float, matches: Callable[[dict[str, Any]], bool]
) -> float | None:
    """When the first mode published after `since` that `matches` arrived."""
    return next((at for at, mode in watcher.modes if at >= since and matches(mode)), None)


async def _until(condition: Callable[[], bool], timeout_s: float) -> float:
    """Poll `condition` (blocking: in a thread) every 0.2 s; when it first held."""
    async with asyncio.timeout(timeout_s):
        while not await asyncio.to_thread(condition):
            await asyncio.sleep(0.2)
    return time.monotonic()
