"""The daemon's shared pieces for tests of one part alone: the small test site, a clock the
test sets, fresh metrics, and the commands part wired to a fake actuator."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from gridpilot.adapters.actuation import Actuator, MqttActuator
from gridpilot.agent.daemon.allowance import Allowance
from gridpilot.agent.daemon.commands import Commands
from gridpilot.agent.daemon.daemon import site_template
from gridpilot.agent.daemon.gauges import PlantGauges
from gridpilot.agent.daemon.ledger import Ledger
from gridpilot.agent.daemon.metrics import Metrics
from gridpilot.agent.daemon.mode import Mode
from gridpilot.agent.daemon.recorder import Recorder
from gridpilot.agent.daemon.setpoints import Setpoints
from gridpilot.agent.daemon.state import SiteState
from gridpilot.agent.daemon.triggers import Triggers
from gridpilot.agent.settings import Settings, load_settings
from gridpilot.optimizer.problem import Problem
from tests.agent.daemon.test_daemon_units import SetClock
from tests.integration.harness import SITE_TOML


def site_settings(tmp_path: Path, *, site_toml: str = SITE_TOML, **agent: Any) -> Settings:
    """The small test site (tests/integration/harness.py), or `site_toml`, `agent` overriding
    `[agent]`."""
    lines = [f"{key} = {json.dumps(value)}" for key, value in agent.items()]
    path = tmp_path / "site.toml"
    path.write_text(site_toml + "\n[agent]\n" + "\n".join(lines) + "\n")
    return load_settings(path)


class FakeLink:
    """The broker link's `publish`, recording what it is given; `refusing` answers False
    (not connected) for those topics."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []
        self.refusing: set[str] = set()

    async def publish(self, topic: str, payload: bytes) -> bool:
        if topic in self.refusing:
            return False
        self.published.append((topic, payload))
        return True

    def on(self, topic: str) -> list[bytes]:
        return [payload for t, payload in self.published if t == topic]


@dataclass
class Plant:
    """What the parts share, as `Daemon` builds it."""

    settings: Settings
    clock: SetClock
    site: Problem
    setpoints: Setpoints
    state: SiteState
    metrics: Metrics
    triggers: Triggers
    recorder: Recorder

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


def plant(settings: Settings, clock: SetClock, ledger: Ledger) -> Plant:
    site = site_template(settings, clock.now())
    return Plant(
        settings=settings,
        clock=clock,
        site=site,
        setpoints=Setpoints(site.asic_groups, site.gpu_groups),
        state=SiteState(started=clock.now(), interval_s=settings.agent.plan_interval_s),
        metrics=Metrics(CollectorRegistry()),
        triggers=Triggers(),
        recorder=Recorder(ledger),
    )


def gauges(p: Plant) -> PlantGauges:
    return PlantGauges(
        p.settings, site=p.site, setpoints=p.setpoints, state=p.state, metrics=p.metrics
    )


def allowance(p: Plant) -> Allowance:
    return Allowance(site=p.site, setpoints=p.setpoints, recorder=p.recorder, metrics=p.metrics)


def commands(
    p: Plant, actuator: Actuator, keeping: Allowance | None = None, mode: Mode | None = None
) -> Commands:
    """The commands part over `actuator`, with the allowance (`keeping`, or a new one), the
    gauges it keeps up and the agent's `mode` (normal unless given)."""
    return Commands(
        setpoints=p.setpoints,
        actuator=actuator,
        gateway=MqttActuator(FakeLink().publish, asic_topic="a/{group}", gpu_topic="g/{group}"),
        recorder=p.recorder,
        allowance=keeping or allowance(p),
        gauges=gauges(p),
        metrics=p.metrics,
        state=p.state,
        triggers=p.triggers,
        clock=p.clock,
        shadow=p.settings.agent.shadow,
        mode=mode or Mode(),
    )
