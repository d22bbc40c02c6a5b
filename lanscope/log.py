"""Logging setup: text or JSON lines, level from config or -v."""

from __future__ import annotations

import json
import logging
import sys
import time

from lanscope.config import LoggingConfig


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        stage = getattr(record, "stage", None)
        if stage:
            entry["stage"] = stage
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class _StageFilter(logging.Filter):
    """Give every record a ``stage`` attribute so the text format can show it."""

    def filter(self, record: logging.LogRecord) -> bool:
        stage = getattr(record, "stage", "")
        record.stage = stage
        record.stage_tag = f" stage={stage}" if stage else ""
        return True


def setup_logging(config: LoggingConfig, verbose: int = 0) -> None:
    level = logging.DEBUG if verbose >= 2 else logging.INFO if verbose == 1 else None
    if level is None:
        level = getattr(logging, config.level.upper())
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_StageFilter())
    if config.format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)-7s %(name)s%(stage_tag)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # nats-py logs every reconnect attempt at error level; keep it readable.
    logging.getLogger("nats").setLevel(max(level, logging.WARNING))
