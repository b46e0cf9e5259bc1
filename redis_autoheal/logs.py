"""Process logging for both services: one line per record, UTC timestamps, per-target context."""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import MutableMapping

LEVELS = ("debug", "info", "warning", "error")


class _UtcFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        del datefmt
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"


def setup_logging(level: str = "info") -> None:
    """Send log records of `level` and above to stderr, one line each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_UtcFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("asyncssh").setLevel(max(root.level, logging.WARNING))


class TargetLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger that prefixes each message with `target=NAME`."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:  # noqa: ANN401
        target = (self.extra or {}).get("target", "?")
        return f"target={target} {msg}", kwargs


def target_logger(logger: logging.Logger, target: str) -> TargetLogger:
    """`logger` with every message tagged with the target's name."""
    return TargetLogger(logger, {"target": target})
