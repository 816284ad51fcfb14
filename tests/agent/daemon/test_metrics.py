"""The metrics table and prometheus_client's server for it."""

from __future__ import annotations

import asyncio
import platform
import threading
import typing
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from gridpilot.agent.daemon.metrics import SPECS, Metrics, serve_metrics


def test_every_declared_metric_is_built_from_one_row_of_its_declared_kind() -> None:
    """Each attribute `Metrics` declares comes from exactly one row of `SPECS`, built as the
    kind it is declared as, and no two rows export the same name."""
    declared = typing.get_type_hints(Metrics)
    assert sorted(declared) == sorted(s.attribute for s in SPECS)
    assert len({s.name for s in SPECS}) == len(SPECS)
    metrics = Metrics(CollectorRegistry())
    for spec in SPECS:
        built = getattr(metrics, spec.attribute)
        assert type(built) is declared[spec.attribute] is spec.kind, spec.attribute


def test_fixed_series_exist_from_the_start() -> None:
    """The mode, signal ages and curtailed power by class and reason are exported at zero
    before anything happens, and the build info names the version."""
    registry = CollectorRegistry()
    Metrics(registry, version="9.9")
    assert registry.get_sample_value("gridpilot_mode", {"mode": "safe"}) == 0
    assert registry.get_sample_value("gridpilot_signal_age_seconds", {"signal": "forecast"}) == 0
    held = {"load": "gpu", "reason": "override"}
    assert registry.get_sample_value("gridpilot_curtailed_power_watts", held) == 0
    info = {"version": "9.9", "python": platform.python_version()}
    assert registry.get_sample_value("gridpilot_build_info", info) == 1


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310  # a loopback URL
        body: bytes = answer.read()
    return body


def test_the_server_binds_a_free_port_serves_the_registry_and_stops() -> None:
    """With port 0 the server reports the port it bound, answers /metrics with the registry
    while the loop keeps running, and once cancelled refuses connections and leaves no
    thread behind."""
    metrics = Metrics(CollectorRegistry())
    metrics.site_power.set(123.0)

    async def scenario() -> int:
        bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(serve_metrics(metrics.registry, "127.0.0.1", 0, bound))
        port = await asyncio.wait_for(bound, 5)
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        ticking = asyncio.create_task(tick())
        assert [t for t in threading.enumerate() if "serve_forever" in t.name]
        body = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
        assert b"gridpilot_site_power_watts 123.0" in body
        assert ticks > 0  # the loop ran while the scrape was answered
        ticking.cancel()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return port

    port = asyncio.run(scenario())
    with pytest.raises(urllib.error.URLError):
        _get(f"http://127.0.0.1:{port}/metrics")
    assert not [t for t in threading.enumerate() if "serve_forever" in t.name]
