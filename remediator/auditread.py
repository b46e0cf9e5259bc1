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

from remediator.audit import backup_paths
from remediator.errors import AuditReadError

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


RESUME_TAIL_BYTES = 8 * 1024 * 1024  # how far back unfinished recoveries are looked for


@dataclass(frozen=True)
class Unfinished:
    """A recovery or manual operation that started and was never seen through: no terminal
    event (`ended` False: the process was killed), or one saying `interrupted` (a shutdown
    cut it); and no later start-up has re-checked its target since."""

    id: str
    service: str
    started: dict[str, Any]  # its `started` event
    ended: bool


def _tail(settings: Audit, tail_bytes: int) -> list[dict[str, Any]]:
    """The events of the live file's last `tail_bytes`, and of the file before it (the
    set-aside or newest backup, at most `max_bytes`) if the live file holds less than that."""
    live = settings.path
    size = live.stat().st_size if live.exists() else 0
    older = [p for p in log_files(settings) if p != live]
    events = []
    if size < tail_bytes and older:
        with _open(older[-1]) as f:
            try:
                events = [e for e in map(_event, f) if e is not None]
            except (OSError, EOFError, zlib.error) as e:
                raise AuditReadError(f"cannot read {older[-1]}: {e}") from None
    return events + latest_events(live, tail_bytes)


def _key(event: dict[str, Any]) -> str | None:
    """The id a started or finished recovery or operation event carries, else None."""
    if event.get("phase") not in ("started", "finished"):
        return None
    field_name = {"auto_recovery": "recovery_id", "service_operation": "operation_id"}
    name = field_name.get(str(event.get("event_type")))
    value = event.get(name) if name else None
    return value if isinstance(value, str) and value else None


def unfinished(settings: Audit, tail_bytes: int = RESUME_TAIL_BYTES) -> list[Unfinished]:
    """The recoveries and operations of the log's tail (see `_tail`) left unfinished, oldest
    first. Only those whose `started` event lies in the tail are found."""
    open_: dict[str, Unfinished] = {}
    for event in _tail(settings, tail_bytes):
        resumed = event.get("operation") == "resume" and event.get("event_type") == "auto_recovery"
        if resumed:  # a start-up closed and re-checked these already
            for rid in event.get("resumed_ids") or ():
                open_.pop(str(rid), None)
            continue
        key = _key(event)
        if key is None:
            continue
        if event["phase"] == "started":
            open_[key] = Unfinished(key, str(event.get("service")), event, ended=False)
        elif key in open_:
            if event.get("outcome") == "interrupted":
                open_[key] = Unfinished(key, open_[key].service, open_[key].started, ended=True)
            else:
                del open_[key]
    return list(open_.values())
