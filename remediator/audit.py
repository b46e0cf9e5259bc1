"""The audit log: JSON lines, each event on disk (written, flushed, fsync'd) before its action.

Fail closed, as Vault's audit devices do: `await writer.write(event)` returns only once the
event is durable, and raises `AuditWriteError` otherwise, so the caller does not act. A write
that fails half-way is truncated back off the file, so a retried event is never duplicated;
back to the size found under the lock just before that write, so what another process appended
in between stays.

Python's logging is not used: its handlers swallow write errors (`handleError`), never fsync,
and would make every event its own write. Here concurrent writers are group-committed: events
queued while one batch is being written go out together in the next one, with one fsync, which
keeps a burst of webhooks cheap. Each caller still learns whether its own events made it.

Rotation is by size, done by the one flushing thread between two writes, so no event can fall
between files: when the next write would take the live file past `max_bytes`, the live file is
renamed aside (`FILE.rotating`), backups shift up (`FILE.1.gz` -> `FILE.2.gz` ...), the oldest
beyond `backup_count` is removed, and the set-aside file is gzip'd to `FILE.1.gz` through a
temporary file and a rename, with the live file's mode whatever the umask. A crash part-way
leaves `FILE.rotating`, which the next open finishes compressing, so nothing is lost or written
twice. An advisory lock (`FILE.lock`) serialises writers in other processes (the `breaker reset`
command) with this one; if the live file is moved or removed from outside, it is reopened at its
path before the next write.

An event that must not be lost with the space that was missing when it was due (the terminal
event of a recovery the audit log cut short) is `defer`red: kept in memory, written ahead of the
next batch, and retried every `OVERDUE_RETRY_SECONDS` until it is on disk or the writer closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gzip
import json
import logging
import os
import shutil
import stat
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from remediator.errors import AuditWriteError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from pathlib import Path

    from redis_autoheal.config import Audit

log = logging.getLogger(__name__)

RiskLevel = Literal["none", "low", "moderate", "high"]
FILE_MODE = 0o640
OVERDUE_RETRY_SECONDS = 5.0
OVERDUE_MAX = 10_000  # beyond this the oldest overdue events are dropped, and said so
GZIP_LEVEL = 6  # gzip's own default; gzip.open's 9 is several times slower for little gain


@dataclass(frozen=True)
class Actor:
    """Who an event is attributed to: a person of the operator API, or the remediator."""

    id: str
    email: str | None
    role: str

    def as_json(self) -> dict[str, str | None]:
        return {"id": self.id, "email": self.email, "role": self.role}


AUTOHEAL = Actor(id="redis-autoheal", email=None, role="system")


def utc_timestamp(now: datetime | None = None) -> str:
    """The runbook's timestamp form: `2025-10-10T14:30:00Z`."""
    moment = now or datetime.now(UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def audit_event(  # noqa: PLR0913 -- the runbook's fields, each named at the call site
    event_type: str,
    *,
    service: str | None,
    operation: str,
    user: Actor = AUTOHEAL,
    source_ip: str | None = None,
    success: bool | None,
    duration_seconds: float | None = None,
    exit_code: int | None = None,
    command_validated: bool = True,
    risk_level: RiskLevel = "none",
    ssh_key_used: bool = False,
    **extra: Any,  # noqa: ANN401 -- any JSON value
) -> dict[str, Any]:
    """One event in the runbook's format, its own fields first and `extra` after them.

    `success` is None on an event written before its action, whose outcome is not known yet.
    """
    event: dict[str, Any] = {
        "timestamp": utc_timestamp(),
        "event_type": event_type,
        "service": service,
        "operation": operation,
        "user": user.as_json(),
        "source_ip": source_ip,
        "result": {
            "success": success,
            "duration_seconds": None if duration_seconds is None else round(duration_seconds, 3),
            "exit_code": exit_code,
        },
        "security": {
            "command_validated": command_validated,
            "risk_level": risk_level,
            "ssh_key_used": ssh_key_used,
        },
    }
    event.update(extra)
    return event


def encode(event: Mapping[str, Any]) -> bytes:
    """One JSON line. The default separators keep the runbook's `grep '"success": false'`."""
    return (json.dumps(event, ensure_ascii=True, allow_nan=False) + "\n").encode()


def backup_paths(settings: Audit) -> list[Path]:
    """The backup files that may exist, newest first."""
    suffix = ".gz" if settings.compress == "gzip" else ""
    path = settings.path
    return [path.with_name(f"{path.name}.{i}{suffix}") for i in range(1, settings.backup_count + 1)]


def read_events(settings: Audit) -> list[dict[str, Any]]:
    """Every event in the backups and the live file, oldest first (for reviews and tests)."""
    events: list[dict[str, Any]] = []
    for path in [*reversed(backup_paths(settings)), settings.path]:
        if not path.exists():
            continue
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            events.extend(json.loads(line) for line in f if line.strip())
    return events


def _why(error: OSError, named: Path) -> str:
    """The reason, after the file it concerns if that is another than the one already named."""
    if error.filename is None or str(error.filename) == str(named):
        return str(error.strerror)
    return f"{error.filename}: {error.strerror}"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _File:
    """The live file, used by one thread at a time under the writer's locks."""

    def __init__(self, settings: Audit) -> None:
        self.settings = settings
        self.path = settings.path
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None
        self.size = 0

    @property
    def _rotating(self) -> Path:
        return self.path.with_name(self.path.name + ".rotating")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the advisory lock that every process writing this log takes."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        except OSError as e:
            raise AuditWriteError(f"cannot open {lock_path}: {e.strerror}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as e:  # ENOLCK: an NFS mount without a lock daemon
                raise AuditWriteError(f"cannot lock {lock_path}: {e.strerror}") from None
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def ensure_open(self) -> None:
        """Open the live file, or reopen it if it was moved, removed or replaced."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            st = None
        except OSError as e:
            self.close()
            raise AuditWriteError(f"cannot stat {self.path}: {e.strerror}") from None
        if self._fd is not None and st is not None and (st.st_dev, st.st_ino) == self._identity:
            # Under the lock: what another process (`breaker reset`) appended since our last
            # write counts, both for rotation and as the point a failed write is cut back to.
            self.size = st.st_size
            return
        self.close()
        if self._rotating.exists():
            self._finish_rotation()
        created = st is None
        try:
            fd = os.open(
                self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE
            )
        except OSError as e:
            raise AuditWriteError(f"cannot open {self.path}: {e.strerror}") from None
        try:
            opened = os.fstat(fd)
            if created:
                _fsync_dir(self.path.parent)  # the new name itself must survive a crash
        except OSError as e:
            os.close(fd)
            raise AuditWriteError(f"cannot open {self.path}: {e.strerror}") from None
        self._fd = fd
        self._identity = (opened.st_dev, opened.st_ino)
        self.size = opened.st_size

    def append(self, data: bytes) -> None:
        """Write `data` and fsync it; on failure cut the file back to where it was."""
        assert self._fd is not None
        fd = self._fd
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self.size)  # a retried event must not appear twice
            self.close()
            raise AuditWriteError(f"cannot write {self.path}: {e.strerror}") from None
        self.size += len(data)

    def rotate(self) -> None:
        """Move the live file to the first backup slot; see the module docstring."""
        self.close()
        s = self.settings
        try:
            if s.backup_count == 0:
                self.path.unlink(missing_ok=True)
                return
            backups = backup_paths(s)
            backups[-1].unlink(missing_ok=True)
            for older, newer in zip(reversed(backups[1:]), reversed(backups[:-1]), strict=True):
                if newer.exists():
                    newer.rename(older)
            if s.compress == "gzip":
                self.path.rename(self._rotating)
                _fsync_dir(self.path.parent)
                self._finish_rotation()
            else:
                self.path.rename(backups[0])
                _fsync_dir(self.path.parent)
        except OSError as e:
            raise AuditWriteError(f"cannot rotate {self.path}: {_why(e, self.path)}") from None

    def _finish_rotation(self) -> None:
        """Compress `FILE.rotating` into `FILE.1.gz`, atomically, then remove it."""
        target = backup_paths(self.settings)[0]
        tmp = target.with_name(target.name + ".tmp")
        try:
            with self._rotating.open("rb") as src:
                # The backup is as private as the live file was, whatever the umask.
                mode = stat.S_IMODE(os.fstat(src.fileno()).st_mode)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
                with open(fd, "wb") as raw:  # noqa: PTH123 -- an fd, not a path
                    os.fchmod(
                        fd, mode
                    )  # O_CREAT's mode lost the umask's bits; an old tmp kept its own
                    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=GZIP_LEVEL) as gz:
                        shutil.copyfileobj(src, gz, 1 << 20)
                    raw.flush()
                    os.fsync(fd)
            tmp.rename(target)
            self._rotating.unlink()
            _fsync_dir(self.path.parent)
        except OSError as e:
            why = _why(e, self._rotating)
            raise AuditWriteError(f"cannot compress {self._rotating}: {why}") from None

    def close(self) -> None:
        fd, self._fd = self._fd, None
        self._identity = None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def _observe(future: asyncio.Future[None]) -> None:
    """Mark a write's outcome as seen, for a caller that was cancelled while it waited."""
    if not future.cancelled():
        future.exception()


class AuditWriter:
    """Writes audit events durably, group-committing concurrent writers; see the module doc."""

    def __init__(self, settings: Audit, on_error: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self._on_error = on_error or (lambda: None)
        self._file = _File(settings)
        self._thread_lock = threading.Lock()
        self._pending: list[tuple[bytes, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._overdue: list[bytes] = []
        self._retry: asyncio.Task[None] | None = None

    @property
    def path(self) -> Path:
        return self.settings.path

    def open(self) -> None:
        """Create the directory and open the file now, so a bad path stops start-up."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise AuditWriteError(f"cannot create {self.path.parent}: {e.strerror}") from None
        with self._thread_lock, self._file.locked():
            self._file.ensure_open()

    async def write(self, *events: Mapping[str, Any]) -> None:
        """Return once every one of `events` is on disk; raise AuditWriteError otherwise."""
        data = b"".join(encode(e) for e in events)
        future = asyncio.get_running_loop().create_future()
        future.add_done_callback(_observe)
        self._pending.append((data, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="audit-flush")
        # Shielded: a caller cancelled mid-write must not lose track of a durable event's fate;
        # the flusher settles the future either way.
        await asyncio.shield(future)

    def defer(self, *events: Mapping[str, Any]) -> None:
        """Keep events that could not be written now; see the module docstring."""
        self._overdue.extend(encode(e) for e in events)
        if len(self._overdue) > OVERDUE_MAX:
            log.error("audit: %d overdue events dropped", len(self._overdue) - OVERDUE_MAX)
            del self._overdue[:-OVERDUE_MAX]
        if self._retry is None or self._retry.done():
            self._retry = asyncio.create_task(self._retry_overdue(), name="audit-overdue")

    @property
    def overdue(self) -> int:
        """How many deferred events still wait for the disk."""
        return len(self._overdue)

    async def _retry_overdue(self) -> None:
        while self._overdue:
            await asyncio.sleep(OVERDUE_RETRY_SECONDS)
            with contextlib.suppress(AuditWriteError):
                await self.write()

    async def _flush(self) -> None:
        """Write batch after batch; whatever fails, each writer learns its fate and the next
        batch is still written (a writer left waiting would hold its target busy for ever)."""
        while self._pending:
            batch, self._pending = self._pending, []
            overdue = len(self._overdue)
            chunks = [*self._overdue, *(data for data, _ in batch)]
            try:
                committed, error = await asyncio.to_thread(self._write_chunks, chunks)
            except Exception as e:  # no thread to write with (a loop shutting down): none written
                log.exception("audit write not attempted")
                committed, error = 0, AuditWriteError(f"cannot write {self.path}: {e!r}")
            del self._overdue[: min(committed, overdue)]
            for i, (_, future) in enumerate(batch, start=overdue):
                if future.done():
                    continue
                if i < committed:
                    future.set_result(None)
                else:
                    self._on_error()
                    assert error is not None
                    future.set_exception(error)

    def write_sync(self, *events: Mapping[str, Any]) -> None:
        """The blocking form, for a command-line tool with no event loop."""
        committed, error = self._write_chunks([b"".join(encode(e) for e in events)])
        if not committed:
            self._on_error()
            assert error is not None
            raise error

    def _write_chunks(self, chunks: list[bytes]) -> tuple[int, AuditWriteError | None]:
        """Append each chunk in order; return how many are durable and the first error."""
        f = self._file
        committed = 0
        try:
            with self._thread_lock, f.locked():
                f.ensure_open()
                while committed < len(chunks):
                    # As many whole chunks as fit before the size limit go out in one write.
                    room = self.settings.max_bytes - f.size
                    take, size = 0, 0
                    for chunk in chunks[committed:]:
                        if take and size + len(chunk) > room:
                            break
                        take, size = take + 1, size + len(chunk)
                    if f.size and size > room:
                        f.rotate()
                        f.ensure_open()
                        continue
                    f.append(b"".join(chunks[committed : committed + take]))
                    committed += take
        except AuditWriteError as e:
            return committed, e
        except Exception as e:  # unforeseen: it fails this write, never the writer
            log.exception("audit write failed")
            with self._thread_lock:
                f.close()  # the next write reopens it and reads its size again
            return committed, AuditWriteError(f"cannot write {self.path}: {e!r}")
        return committed, None

    async def close(self) -> None:
        """Finish the writes in flight and try the overdue ones once more, then close the file."""
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
        if self._overdue:
            with contextlib.suppress(AuditWriteError):
                await self.write()
            if self._overdue:
                log.error("audit: %d overdue events never written", len(self._overdue))
        if self._flusher is not None:
            with contextlib.suppress(Exception):
                await self._flusher
        with self._thread_lock:
            self._file.close()
