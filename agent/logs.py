"""Logging, configured once at start-up: structlog for our events, the standard library's
loggers (aiomqtt, paho) routed through the same pipeline.

On a terminal: a readable console. Otherwise (journald, a pipe): one JSON object per line.
Event names are `noun.verb`, the data is in fields. Secrets never reach a log call: the
settings keep the broker password as a `SecretStr`, and nothing logs the settings whole.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog


def configure(*, level: int = logging.INFO, stream: TextIO | None = None) -> None:
    out = stream or sys.stdout
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer(colors=False)
        if out.isatty()
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # paho logs every packet at DEBUG; its warnings and errors still come through.
    logging.getLogger("mqtt").setLevel(logging.WARNING)
