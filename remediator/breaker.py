"""The per-target circuit breaker: latched open by too many recoveries or by a manual stop,
closed only by a person.

Every target's state is in one JSON file under `remediator.state_dir`, replaced atomically
under an advisory lock shared with the `breaker` command and re-read whenever it changed on
disk, so a reset from the command line is seen at once. A state that cannot be read keeps every
breaker open: refusing to act is the safe failure.

    {"version": 1, "targets": {"redis": {"open": true, "opened_at": 1760106600.0,
     "reason": "3 recoveries within 300s", "recoveries": [1760106400.0, ...]}}}
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from remediator.errors import BreakerStateError

if TYPE_CHECKING:
    from pathlib import Path

    from redis_autoheal.config import CircuitBreaker
    from remediator.events import Event

STATE_FILE = "circuit_breakers.json"
FORMAT_VERSION = 1
Clock = Callable[[], float]


@dataclass(frozen=True)
class BreakerState:
    """One target's breaker: open or not, since when and why, and its recent recoveries."""

    open: bool = False
    opened_at: float | None = None
    reason: str | None = None
    recoveries: tuple[float, ...] = field(default=())

    def as_json(self) -> dict[str, Any]:
        return {
            "open": self.open,
            "opened_at": self.opened_at,
            "reason": self.reason,
            "recoveries": list(self.recoveries),
        }


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BreakerStateError(f"{where}: must be a number, got {value!r}")
    return float(value)


def _parse_state(value: object, where: str) -> BreakerState:
    if not isinstance(value, dict):
        raise BreakerStateError(f"{where}: must be an object")
    is_open = value.get("open")
    if not isinstance(is_open, bool):
        raise BreakerStateError(f"{where}.open: must be true or false")
    opened_at = value.get("opened_at")
    reason = value.get("reason")
    recoveries = value.get("recoveries", [])
    if not isinstance(recoveries, list):
        raise BreakerStateError(f"{where}.recoveries: must be a list")
    if reason is not None and not isinstance(reason, str):
        raise BreakerStateError(f"{where}.reason: must be a string")
    return BreakerState(
        open=is_open,
        opened_at=None if opened_at is None else _number(opened_at, f"{where}.opened_at"),
        reason=reason,
        recoveries=tuple(_number(t, f"{where}.recoveries") for t in recoveries),
    )


def parse_states(text: str, source: Path) -> dict[str, BreakerState]:
    """The states in a state file's text; BreakerStateError naming the problem otherwise."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise BreakerStateError(f"{source}: not JSON: {e}") from None
    if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
        raise BreakerStateError(f"{source}: not a version {FORMAT_VERSION} breaker state file")
    targets = data.get("targets")
    if not isinstance(targets, dict):
        raise BreakerStateError(f"{source}: targets: must be an object")
    return {str(k): _parse_state(v, f"{source}: targets.{k}") for k, v in targets.items()}


class BreakerStore:
    """Every target's breaker, persisted under `state_dir`; see the module docstring."""

    def __init__(self, state_dir: Path, settings: CircuitBreaker, clock: Clock = time.time) -> None:
        self.path = state_dir / STATE_FILE
        self.settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, BreakerState] = {}
        self._cache_key: tuple[int, int, int, int] | None = None

    def check(self) -> None:
        """Make sure the state can be read and saved, so a bad state_dir stops start-up."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise BreakerStateError(f"cannot create {self.path.parent}: {e.strerror}") from None
        with self._locked():
            self._read()
            if not os.access(self.path.parent, os.W_OK):
                raise BreakerStateError(f"{self.path.parent} is not writable")

    def state(self, target: str) -> BreakerState:
        """The target's breaker as it is on disk now; BreakerStateError if unreadable."""
        with self._lock:
            return self._read().get(target, BreakerState())

    def is_open(self, target: str) -> bool:
        """True while the breaker is open, and whenever its state cannot be read."""
        try:
            return self.state(target).open
        except BreakerStateError:
            return True

    @property
    def commits_events(self) -> bool:
        """The audit events given to a change are committed with it (remediator.etcd.breaker),
        so its caller writes them to the log after it; here the caller writes them first."""
        return False

    def record_recovery(
        self,
        target: str,
        opened: Callable[[BreakerState], Event] | None = None,  # noqa: ARG002 -- see commits_events
    ) -> BreakerState:
        """Count one recovery now; open the breaker if that makes `max_recoveries` (`opened`:
        the audit event of that opening)."""
        now = self._clock()
        with self._locked():
            states = self._read()
            old = states.get(target, BreakerState())
            window = self.settings.window_seconds
            recent = (*tuple(t for t in old.recoveries if now - t < window), now)
            new = BreakerState(old.open, old.opened_at, old.reason, recent)
            if not old.open and len(recent) >= self.settings.max_recoveries:
                reason = f"{len(recent)} recoveries within {window:g}s"
                new = BreakerState(open=True, opened_at=now, reason=reason, recoveries=recent)
            self._save({**states, target: new})
            return new

    def trip(
        self,
        target: str,
        reason: str,
        event: Event | None = None,  # noqa: ARG002 -- see commits_events
    ) -> BreakerState:
        """Open the breaker now, whatever its count (a person stopped the service on purpose);
        return the state it had. An already open breaker keeps its original time and reason.
        `event`: the opening's audit event."""
        now = self._clock()
        with self._locked():
            states = self._read()
            old = states.get(target, BreakerState())
            if not old.open:
                new = BreakerState(
                    open=True, opened_at=now, reason=reason, recoveries=old.recoveries
                )
                self._save({**states, target: new})
            return old

    def reset(
        self,
        target: str,
        event: Event | None = None,  # noqa: ARG002 -- see commits_events
    ) -> BreakerState:
        """Close the breaker and forget its recoveries; return the state it had. `event`: the
        reset's audit event."""
        with self._locked():
            states = self._read()
            old = states.get(target, BreakerState())
            self._save({**states, target: BreakerState()})
            return old

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock_path = self.path.with_name(STATE_FILE + ".lock")
        with self._lock:
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as e:
                raise BreakerStateError(f"cannot open {lock_path}: {e.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)

    def _read(self) -> dict[str, BreakerState]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._cache, self._cache_key = {}, None
            return {}
        except OSError as e:
            raise BreakerStateError(f"cannot read {self.path}: {e.strerror}") from None
        key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        if key != self._cache_key:
            try:
                text = self.path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise BreakerStateError(f"cannot read {self.path}: {e}") from None
            self._cache, self._cache_key = parse_states(text, self.path), key
        return self._cache

    def _save(self, states: dict[str, BreakerState]) -> None:
        data = {
            "version": FORMAT_VERSION,
            "targets": {name: s.as_json() for name, s in sorted(states.items())},
        }
        tmp = self.path.with_name(f"{STATE_FILE}.{os.getpid()}.tmp")
        try:
            with tmp.open("w", encoding="utf-8") as f:
                json.dump(data, f, indent=2)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(self.path)
            dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise BreakerStateError(f"cannot save {self.path}: {e.strerror}") from None
        self._cache_key = None  # re-read on next use: the cache key must come from the new file
