"""Process logging for both services: one line per record, UTC timestamps, per-target context."""

from __future__ import annotations

import logging
import sys
import time
import unicodedata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import MutableMapping

LEVELS = ("debug", "info", "warning", "error")
FIELD_LIMIT = 256  # characters of a request path or header kept in a log line or audit event
# Characters that could end a log line, hide or reorder text, or not encode: C0/C1 controls,
# format characters (bidi overrides), lone surrogates (bytes that were not UTF-8), line and
# paragraph separators. A backslash is escaped too, so that an escape cannot be forged.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def printable(text: str, limit: int = FIELD_LIMIT) -> str:
    """`text` from a request, fit for one log line or audit field.

    Unsafe characters are written as Python escapes (`\\r`, `\\x1b`, `\\u2028`), and the result is
    cut at `limit` characters with a marker saying how many more there were:
    `/api/services/redis\\r\\nFAKE...[+7745 chars]`.
    """
    shown: list[str] = []
    size = 0
    for i, char in enumerate(text):
        unsafe = char == "\\" or unicodedata.category(char) in _UNSAFE_CATEGORIES
        piece = ascii(char)[1:-1] if unsafe else char
        if size + len(piece) > limit:
            return "".join(shown) + f"...[+{len(text) - i} chars]"
        shown.append(piece)
        size += len(piece)
    return "".join(shown)


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
