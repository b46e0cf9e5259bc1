"""One daemon of the stack: started in its own session, waited for, stopped, logged to a file."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from demo.loopback import get_status

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

POLL_SECONDS = 0.05
LOG_TAIL = 3000


class StackError(RuntimeError):
    """A part of the stack could not be started or did not become ready (says which, and why)."""


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `check` every 50 ms until it is true; StackError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise StackError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(POLL_SECONDS)


@dataclass
class Daemon:
    """A long-running process of the stack and the URL that says it is ready (200)."""

    name: str
    argv: list[str]
    log: Path
    ready_url: str
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-LOG_TAIL:]
        except OSError:
            return ""

    def start(self, timeout: float = 30.0) -> None:
        """Start it and wait until `ready_url` answers 200; StackError with its log if not."""
        with self.log.open("ab") as out:
            # Its own session: Ctrl-C in the terminal reaches the demo, which stops the stack in
            # order, rather than every process at once.
            self.proc = subprocess.Popen(  # noqa: S603 - argv built by the stack, absolute paths
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        wait_until(self._ready, timeout, f"{self.name} at {self.ready_url}")

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise StackError(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")
        try:
            return get_status(self.ready_url) == 200
        except OSError:
            return False

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM to its process group, SIGKILL after `timeout` seconds. Idempotent."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        # Signalled only while it is alive and not yet reaped: its pid (= its group, since it
        # leads its own session) is still ours.
        self._signal(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._signal(proc, signal.SIGKILL)
            proc.wait(timeout=timeout)

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
