"""Reading the audit log back: every event since a time (reviews), or the latest few (health).

The live file and its backups (`FILE.1.gz` newest ... `FILE.N.gz` oldest, or plain files with
`compress: none`) are read oldest first, streaming, so a review of ten 100 MB backups holds one
line at a time. A line that is not a JSON object (a torn last line of a crashed writer, a
hand-edited file) is counted and skipped, never fatal; a file that cannot be opened or
decompressed is an AuditReadError naming it. A set-aside `FILE.rotating` (a rotation cut short
by a crash, finished by the next writer) is read in its place, between the backups and the live
file.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

from redis_autoheal.errors import AuditReadError
from remediator.audit import backup_paths

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from redis_autoheal.config import Audit

TAIL_BYTES = 4 * 1024 * 1024  # how far back from the end the latest events are looked for


def parse_timestamp(value: object) -> datetime | None:
    """An event's `timestamp` (`2025-10-10T14:30:00Z`) as an aware datetime, or None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class ReadStats:
    """What a read went through: the files, the events, and the lines that were not events."""

    files: list[str] = field(default_factory=list)
    events: int = 0
    bad_lines: int = 0


def log_files(settings: Audit) -> list[Path]:
    """The files holding events, oldest first; those that do not exist are left out."""
    rotating = settings.path.with_name(settings.path.name + ".rotating")
    candidates = [*reversed(backup_paths(settings)), rotating, settings.path]
    return [p for p in candidates if p.exists()]


def _open(path: Path) -> IO[str]:
    try:
        if path.name.endswith(".gz"):
            return gzip.open(path, "rt", encoding="utf-8", errors="replace")
        return path.open(encoding="utf-8", errors="replace")
    except OSError as e:
        raise AuditReadError(f"cannot read {path}: {e.strerror}") from None


def _event(line: str) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def iter_events(settings: Audit, stats: ReadStats | None = None) -> Iterator[dict[str, Any]]:
    """Every event of the backups and the live file, oldest first; see the module docstring."""
    stats = stats if stats is not None else ReadStats()
    for path in log_files(settings):
        stats.files.append(str(path))
        with _open(path) as f:
            try:
                for line in f:
                    event = _event(line)
                    if event is None:
                        stats.bad_lines += bool(line.strip())
                        continue
                    stats.events += 1
                    yield event
            except (OSError, EOFError, zlib.error) as e:  # a damaged gzip file
                raise AuditReadError(f"cannot read {path}: {e}") from None


def latest_events(path: Path, tail_bytes: int = TAIL_BYTES) -> list[dict[str, Any]]:
    """The events in the last `tail_bytes` of the live file, oldest first ([] if none)."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - tail_bytes)
            f.seek(start)
            data = f.read(size - start)
    except FileNotFoundError:
        return []
    except OSError as e:
        raise AuditReadError(f"cannot read {path}: {e.strerror}") from None
    lines = data.decode("utf-8", "replace").splitlines()
    if start > 0 and lines:
        lines = lines[1:]  # the first line was cut by the seek
    return [e for e in map(_event, lines) if e is not None]
