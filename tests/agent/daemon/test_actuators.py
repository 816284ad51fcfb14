"""Actuators chosen per group from the site file, routed together, reported by check-config."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from gridpilot.adapters.actuation import (
    Actuator,
    AsicCommand,
    Command,
    GpuCommand,
    ManagedActuator,
    MqttActuator,
    Outcome,
    RecordingActuator,
)
from gridpilot.adapters.gpus import Nvml
from gridpilot.adapters.miners import MinerGroup
from gridpilot.agent.cli import main
from gridpilot.agent.daemon.actuators import actuator_kinds, build_actuator, describe
from gridpilot.agent.settings import ConfigError, Settings, load_settings
from tests.adapters.test_gpus import FakeNvml
from tests.integration.harness import SITE_TOML

DEVICES_TOML = (
    SITE_TOML.replace(
        'units_per_group = 10\nwake_loss_s = 600\n\n[[asic_groups]]\nname = "new"',
        'units_per_group = 10\nwake_loss_s = 600\nactuator = "pyasic"\n'
        'miners = ["10.0.1.1-10.0.1.40"]\n\n[[asic_groups]]\nname = "new"',
    )
    + """
[[gpu_groups]]
name = "local"
nodes = 1
gpus_per_node = 2
cap_levels = [{ watts_per_gpu = 700, throughput = 1.0 }, { watts_per_gpu = 400, throughput = 0.9 }]
idle_watts_per_gpu = 100
host_watts_per_node = 500
contract = "batch"
actuator = "nvml"
gpus = [0, 1]

[[gpu_groups]]
name = "slurm"
nodes = 4
gpus_per_node = 8
cap_levels = [{ watts_per_gpu = 700, throughput = 1.0 }]
idle_watts_per_gpu = 100
host_watts_per_node = 500
contract = "batch"
actuator = "command"
pause_command = ["scontrol", "suspend", "{group}"]
resume_command = ["scontrol", "resume", "{group}"]
"""
)


def _settings(tmp_path: Path, text: str = DEVICES_TOML) -> Settings:
    path = tmp_path / "site.toml"
    path.write_text(text)
    return load_settings(path)


class Miners(RecordingActuator):
    def __init__(self, groups: dict[str, MinerGroup]) -> None:
        super().__init__()
        self.groups = groups

    async def apply(self, commands: Sequence[Command]) -> list[Outcome]:
        await super().apply(commands)
        return [Outcome(c.group, True, units_on=0) for c in commands]

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


def _two_gpus() -> Nvml:
    return FakeNvml(2)


def test_each_group_goes_to_its_actuator(tmp_path: Path) -> None:
    """Miner containers with addresses go to the miners' actuator with their own ten addresses,
    NVML and job groups to theirs, everything else to MQTT; outcomes keep the commands' order."""
    settings = _settings(tmp_path)
    published: list[str] = []

    async def publish(topic: str, payload: bytes) -> bool:
        published.append(topic)
        return True

    mqtt = MqttActuator(publish, asic_topic="a/{group}", gpu_topic="g/{group}")
    made: list[Miners] = []

    def miners(groups: dict[str, MinerGroup], _settings: Settings) -> Miners:
        made.append(Miners(groups))
        return made[-1]

    router = build_actuator(settings, mqtt, miners=miners, nvml=_two_gpus)
    [fleet] = made
    assert sorted(fleet.groups) == ["old-01", "old-02", "old-03", "old-04"]
    assert fleet.groups["old-02"].addresses[0] == "10.0.1.11"
    assert len(fleet.groups["old-04"].addresses) == 10
    assert fleet.groups["old-04"].watts_per_unit == 3000
    commands: list[Command] = [
        AsicCommand("new-01", 5, 3500.0, "price", "p"),
        AsicCommand("old-03", 0, 3000.0, "price", "p"),
        GpuCommand("local", 400.0, 1, 0, "price", "p"),
    ]

    async def scenario() -> list[Outcome]:
        await router.start()
        try:
            return await router.apply(commands)
        finally:
            await router.close()

    outcomes = asyncio.run(scenario())
    assert [o.group for o in outcomes] == ["new-01", "old-03", "local"]
    assert all(o.ok for o in outcomes), outcomes
    assert outcomes[1].units_on == 0
    assert published == ["a/new-01"]
    assert [c.group for c in fleet.applied] == ["old-03"]
    assert len(router.actuators()) == 4


def test_check_config_says_what_drives_each_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """check-config lists, per entry, the gateway topic, the miners' addresses, the local GPUs
    or the job commands."""
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(2))  # whatever this host has
    _settings(tmp_path)
    assert main(["check-config", str(tmp_path / "site.toml")]) == 0
    out = capsys.readouterr().out
    assert "pyasic, 40 miners 10.0.1.1 .. 10.0.1.40" in out
    assert "NVML on this host, GPUs 0, 1" in out
    assert "commands: pause scontrol suspend {group}" in out
    assert "MQTT to a gateway, gridpilot/testsite/cmd/asic/{group}" in out
    assert len(describe(_settings(tmp_path), ("a", "g"))) == 5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('"10.0.1.1-10.0.1.40"', '"10.0.1.1-10.0.1.39"'), "40 miners but 39 addresses"),
        (('"10.0.1.1-10.0.1.40"', '"10.0.1.40-10.0.1.1"'), "ends before it starts"),
        (('"10.0.1.1-10.0.1.40"', '"miner-7"'), "not an IP address"),
        (('"10.0.1.1-10.0.1.40"', '"10.0.1.1-10.0.1.39", "10.0.1.1"'), "listed twice"),
        (("gpus = [0, 1]", "gpus = []"), "needs `gpus`"),
        (('resume_command = ["scontrol", "resume", "{group}"]', ""), "needs `pause_command`"),
    ],
)
def test_device_settings_are_checked(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    """Addresses must match the miners one to one; NVML needs GPUs; jobs need both commands."""
    assert change[0] in DEVICES_TOML
    with pytest.raises(ConfigError, match=message):
        _settings(tmp_path, DEVICES_TOML.replace(*change))


def test_miner_addresses_only_with_pyasic(tmp_path: Path) -> None:
    """Addresses given to a gateway-driven entry are a mistake, said as such."""
    text = DEVICES_TOML.replace('actuator = "pyasic"\n', "")
    with pytest.raises(ConfigError, match="only used with actuator = 'pyasic'"):
        _settings(tmp_path, text)


def test_devices_are_wrapped_by_kind_and_nothing_is_loaded_at_build(tmp_path: Path) -> None:
    """Building the router wraps the pyasic and NVML actuators, each with its kind and groups,
    and imports no device library: NVML that cannot even be imported does not fail the build."""
    wrapped: list[tuple[str, tuple[str, ...]]] = []

    def supervise(actuator: ManagedActuator, kind: str, groups: tuple[str, ...]) -> Actuator:
        wrapped.append((kind, groups))
        return actuator

    def no_binding() -> Nvml:
        raise ModuleNotFoundError("No module named 'pynvml'")

    mqtt = MqttActuator(_never, asic_topic="a/{group}", gpu_topic="g/{group}")
    build_actuator(_settings(tmp_path), mqtt, supervise=supervise, nvml=no_binding)
    assert wrapped == [
        ("pyasic", ("old-01", "old-02", "old-03", "old-04")),
        ("nvml", ("local",)),
    ]
    kinds = actuator_kinds(_settings(tmp_path))
    assert kinds["old-02"] == "pyasic"
    assert kinds["new-01"] == "mqtt"
    assert (kinds["local"], kinds["slurm"], kinds["h100"]) == ("nvml", "command", "mqtt")


async def _never(topic: str, payload: bytes) -> bool:
    return False


def _working_jobs(text: str) -> str:
    """The site with job commands this host can run (the interpreter itself)."""
    return text.replace('"scontrol"', repr(sys.executable).replace("'", '"'))


def test_check_config_warns_of_an_nvml_entry_without_pynvml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without nvidia-ml-py importable, check-config still exits 0 with the summary on stdout,
    and ends with a warning on stderr naming the entry, the reason and the install command."""
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    _settings(tmp_path, _working_jobs(DEVICES_TOML))
    assert main(["check-config", str(tmp_path / "site.toml")]) == 0
    captured = capsys.readouterr()
    assert "NVML on this host, GPUs 0, 1" in captured.out
    assert "WARNING" not in captured.out
    lines = captured.err.splitlines()
    assert lines[0] == (
        "gridpilot: WARNING: 1 site-file entry cannot drive its devices from this host:"
    )
    assert lines[1].startswith("  local (actuator nvml): nvidia-ml-py (pynvml) cannot be imported")
    assert lines[2] == (
        "    fix: install the devices extra into the agent's venv: pip install 'gridpilot[devices]'"
    )
    assert "pyasic and NVML entries are down (gridpilot_device_up 0" in captured.err


def test_check_config_names_gpus_the_host_lacks_and_missing_programs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a host with one GPU, the entry listing GPUs 0 and 1 is named with what the host has;
    a job command whose program is absent is named too."""
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(1))
    _settings(tmp_path, DEVICES_TOML.replace('"scontrol"', '"no-such-scontrol"'))
    assert main(["check-config", str(tmp_path / "site.toml")]) == 0
    err = capsys.readouterr().err
    assert "2 site-file entries cannot drive their devices" in err
    assert "  local (actuator nvml): this host has GPU 0: local lists GPU 1\n" in err
    assert "  slurm (actuator command): no-such-scontrol is not an executable" in err


def test_check_config_is_quiet_where_every_device_can_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With NVML, its GPUs, pyasic and the job programs all present, stderr stays empty."""
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(2))
    _settings(tmp_path, _working_jobs(DEVICES_TOML))
    assert main(["check-config", str(tmp_path / "site.toml")]) == 0
    assert capsys.readouterr().err == ""
