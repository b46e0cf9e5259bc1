"""Process helpers for the harness: liveness with pid-reuse detection, netns membership, kills."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from testhost._standin import pid_alive, proc_stat


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (tells a reused pid apart)."""
    fields = proc_stat(pid)
    return None if fields is None else int(fields[19])


def alive(pid: int, started: int | None = None) -> bool:
    """Whether pid is a live, non-zombie process (and, if given, the one that started then)."""
    return pid_alive(pid) and (started is None or start_time(pid) == started)


def command_name(pid: int) -> str | None:
    """The process's name (/proc/PID/comm), or None if it is gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def identity(pid: int) -> str:
    """'pid starttime': an owner record that survives pid reuse."""
    return f"{pid} {start_time(pid)}"


def identity_alive(record: str) -> bool:
    """Whether the process an identity() record names is still running."""
    try:
        pid_text, started_text = record.split()
        return alive(int(pid_text), int(started_text))
    except ValueError:
        return False


def netns_id(path: str | Path) -> tuple[int, int] | None:
    """(device, inode) of a network namespace file, or None."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def pids_in_netns(ns_path: Path) -> list[int]:
    """Live processes whose network namespace is the one bound at ns_path."""
    target = netns_id(ns_path)
    if target is None:
        return []
    found = [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and netns_id(entry / "ns" / "net") == target
    ]
    return [pid for pid in found if pid != os.getpid() and alive(pid)]


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    """Send a signal, ignoring a process that is already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait (bounded) until none of pids is alive; returns those still alive."""
    deadline = time.monotonic() + timeout
    remaining = [p for p in pids if alive(p)]
    while remaining and time.monotonic() < deadline:
        time.sleep(0.01)
        remaining = [p for p in remaining if alive(p)]
    return remaining


def kill_netns(ns_path: Path, timeout: float) -> list[int]:
    """SIGKILL every process in a network namespace until none is left (bounded)."""
    deadline = time.monotonic() + timeout
    remaining = pids_in_netns(ns_path)
    while remaining and time.monotonic() < deadline:
        for pid in remaining:
            kill(pid)
        wait_gone(remaining, 0.2)
        remaining = pids_in_netns(ns_path)
    return remaining
