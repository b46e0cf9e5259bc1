"""Reading the audit log back as typed events (remediator.events): every event since a time
(reviews), the latest few (health), and what the last run left unfinished (resume).

Files are read oldest first and streamed (backups, a set-aside `FILE.rotating`, the live
file). A line that is not a JSON object (a torn last line, a hand edit) is counted and skipped;
a file that cannot be opened or decompressed is an AuditReadError naming it.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING

from remediator.audit import backup_paths
from remediator.errors import AuditReadError
from remediator.events import AutoRecovery, Event, ServiceOperation, from_json

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


def _event(line: str) -> Event | None:
    if not line.strip():
        return None
    try:
        data = json.loads(line)
    except ValueError:
        return None
    return from_json(data) if isinstance(data, dict) else None


def iter_events(settings: Audit, stats: ReadStats | None = None) -> Iterator[Event]:
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


def latest_events(path: Path, tail_bytes: int = TAIL_BYTES) -> list[Event]:
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
    started: Started  # its `started` event
    ended: bool


Started = AutoRecovery | ServiceOperation


def _tail(settings: Audit, tail_bytes: int) -> list[Event]:
    """The events of the live file's last `tail_bytes`, and of the file before it (the
    set-aside or newest backup, at most `max_bytes`) if the live file holds less than that."""
    live = settings.path
    size = live.stat().st_size if live.exists() else 0
    older = [p for p in log_files(settings) if p != live]
    events: list[Event] = []
    if size < tail_bytes and older:
        with _open(older[-1]) as f:
            try:
                events = [e for e in map(_event, f) if e is not None]
            except (OSError, EOFError, zlib.error) as e:
                raise AuditReadError(f"cannot read {older[-1]}: {e}") from None
    return events + latest_events(live, tail_bytes)


def _key(event: Event) -> str | None:
    """The id a started or finished recovery or operation event carries, else None."""
    if isinstance(event, AutoRecovery) and event.phase in ("started", "finished"):
        return event.recovery_id or None
    if isinstance(event, ServiceOperation) and event.phase in ("started", "finished"):
        return event.operation_id or None
    return None


def unfinished(settings: Audit, tail_bytes: int = RESUME_TAIL_BYTES) -> list[Unfinished]:
    """The recoveries and operations of the log's tail (see `_tail`) left unfinished, oldest
    first. Only those whose `started` event lies in the tail are found."""
    open_: dict[str, Unfinished] = {}
    for event in _tail(settings, tail_bytes):
        if isinstance(event, AutoRecovery) and event.operation == "resume":
            for rid in event.resumed_ids or ():  # a start-up closed and re-checked these already
                open_.pop(rid, None)
            continue
        key = _key(event)
        if key is None:
            continue
        assert isinstance(event, AutoRecovery | ServiceOperation)
        if event.phase == "started":
            open_[key] = Unfinished(key, str(event.service), event, ended=False)
        elif key in open_:
            if event.outcome == "interrupted":
                open_[key] = Unfinished(key, open_[key].service, open_[key].started, ended=True)
            else:
                del open_[key]
    return list(open_.values())
