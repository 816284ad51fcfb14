"""A private Prometheus for the reliability bench: the distribution's server on a loopback
port, running the shipped config (`gridpilot/prometheus/prometheus.yml`) and the shipped alert
rules (`alerts.yml`) as they are, but for the agent's metrics port, and a scrape and rule
evaluation every second instead of every 15 (the rules' `for` durations are kept)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from gridpilot.adapters.broker import free_port

SHIPPED_TARGET = '"127.0.0.1:9108"'


class PrometheusError(RuntimeError):
    """Prometheus is missing, did not start, or did not answer."""


def find_prometheus() -> Path:
    for candidate in (shutil.which("prometheus"), "/usr/bin/prometheus"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise PrometheusError(
        "prometheus is not installed; `make reliability` installs it"
        " (Debian: apt-get install prometheus)"
    )


def bench_config(folder: Path, metrics_port: int) -> Path:
    """The shipped prometheus.yml, scraping the agent on `metrics_port` every second, with the
    shipped rules (copied beside it, unchanged) evaluated every second."""
    shipped = resources.files("gridpilot") / "prometheus"
    text = (shipped / "prometheus.yml").read_text()
    for old, new in (
        (SHIPPED_TARGET, f'"127.0.0.1:{metrics_port}"'),
        ("scrape_interval: 15s", "scrape_interval: 1s"),
        ("evaluation_interval: 15s", "evaluation_interval: 1s"),
    ):
        if text.count(old) != 1:
            raise PrometheusError(f"the shipped prometheus.yml no longer has {old!r} once")
        text = text.replace(old, new)
    (folder / "alerts.yml").write_text((shipped / "alerts.yml").read_text())
    path = folder / "prometheus.yml"
    path.write_text(text)
    return path


class LocalPrometheus:
    """`with LocalPrometheus(folder, metrics_port) as prometheus:` a server scraping the agent
    at `127.0.0.1:metrics_port`, ready to answer on `prometheus.port`; stopped on exit."""

    def __init__(self, folder: Path, metrics_port: int) -> None:
        self.folder = folder
        self.metrics_port = metrics_port
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        binary = find_prometheus()
        config = bench_config(self.folder, self.metrics_port)
        with (self.folder / "prometheus.log").open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603  # the distribution's binary
                [
                    str(binary),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.folder / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        try:
            self._until_ready(timeout_s=60.0)
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            process.wait(timeout=30)

    def _until_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise PrometheusError(f"prometheus exited: {self.log()[-2000:]}")
            try:
                with urllib.request.urlopen(  # loopback
                    f"http://127.0.0.1:{self.port}/-/ready", timeout=2
                ) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise PrometheusError(f"prometheus not ready in {timeout_s:.0f} s: {self.log()[-2000:]}")

    def log(self) -> str:
        path = self.folder / "prometheus.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def get(self, path: str, **query: str) -> Any:
        """The `data` of an API answer (`/api/v1/...`)."""
        url = f"http://127.0.0.1:{self.port}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310  # loopback
                body: dict[str, Any] = json.loads(answer.read())
        except (OSError, ValueError) as error:
            raise PrometheusError(f"{url}: {error}") from error
        return body["data"]

    def firing(self, alertname: str) -> list[dict[str, str]]:
        """The labels of each `alertname` alert firing now."""
        alerts = self.get("/api/v1/alerts")["alerts"]
        return [
            a["labels"]
            for a in alerts
            if a["labels"].get("alertname") == alertname and a["state"] == "firing"
        ]

    def values(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """An instant query's series, each with its labels and value."""
        result = self.get("/api/v1/query", query=expr)["result"]
        return [(r["metric"], float(r["value"][1])) for r in result]
