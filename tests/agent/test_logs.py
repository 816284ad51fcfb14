"""Logging: JSON lines off a terminal, a console on one, stdlib loggers through the same
pipeline, and no secret in any line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from pydantic import SecretStr

from gridpilot.adapters.broker import LocalBroker
from gridpilot.agent import logs
from tests.integration.harness import PREFIX, feed_market, observing, running, site_settings


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_off_a_terminal_for_ours_and_the_libraries() -> None:
    """Off a terminal every line is one JSON object with the event, level, logger and time,
    whether it came from structlog or from a library's stdlib logger."""
    stream = io.StringIO()
    logs.configure(stream=stream)
    structlog.get_logger("gridpilot.test").info("plan.made", plan="plan-1", changed=3)
    logging.getLogger("mqtt").warning("broker said %s", "no")
    logging.getLogger("mqtt").info("packet detail")  # below the level set for paho
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["plan.made", "broker said no"]
    assert lines[0]["plan"] == "plan-1"
    assert lines[0]["level"] == "info"
    assert lines[1]["logger"] == "mqtt"
    assert all(line["timestamp"].endswith("Z") for line in lines)


@pytest.mark.usefixtures("restore_logging")
def test_console_on_a_terminal() -> None:
    """On a terminal the lines are for people: not JSON, the event name first."""
    stream = _Terminal()
    logs.configure(stream=stream)
    structlog.get_logger("gridpilot.test").warning("mode.safe", stale=["meter"])
    text = stream.getvalue()
    assert "mode.safe" in text
    assert "stale" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


@pytest.mark.usefixtures("restore_logging")
def test_the_broker_password_never_reaches_the_log(
    tmp_path: Path, broker_for_logs: LocalBroker
) -> None:
    """A whole run with a broker password (start, plans, rejects, stop) never logs it."""
    secret = "hunter2-not-for-logs"  # noqa: S105  # a fake, to look for in the log
    stream = io.StringIO()
    logs.configure(stream=stream, level=logging.DEBUG)
    settings = site_settings(tmp_path, broker_for_logs)
    mqtt = settings.mqtt.model_copy(update={"username": "agent", "password": SecretStr(secret)})
    settings = settings.model_copy(update={"mqtt": mqtt})
    assert secret not in repr(settings)

    async def scenario() -> None:
        async with observing(broker_for_logs) as observer, running(settings) as daemon:
            await feed_market(observer)
            await observer.publish(f"{PREFIX}/meter/main", b'{"watts": "x"}')
            await observer.publish(f"{PREFIX}/meter/main", b'{"watts": 1e5}')
            await observer.wait_for(lambda: '"plan.made"' in stream.getvalue())
            assert daemon.cycle.plans_made >= 1

    asyncio.run(scenario())
    text = stream.getvalue()
    assert '"plan.made"' in text
    assert '"input.rejected"' in text
    assert secret not in text


@pytest.fixture
def broker_for_logs() -> Iterator[LocalBroker]:
    with LocalBroker() as broker:
        yield broker
