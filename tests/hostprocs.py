"""What still runs on a test host: the commands the SSH runner started and should have killed."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from testhost import TestHost


def running_commands(host: TestHost, prefix: str, *, gone_within: float = 15.0) -> list[str]:
    """The command lines starting with `prefix` still running in the host's network namespace
    once none is left, or after `gone_within` seconds (a hang guard: a command nobody killed
    runs on)."""
    deadline = time.monotonic() + gone_within
    while True:
        pids = subprocess.run(
            ["ip", "netns", "pids", host.net.name], capture_output=True, text=True, check=True
        ).stdout.split()
        found = []
        for pid in pids:
            with contextlib.suppress(OSError):  # it ended meanwhile
                line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                if line.startswith(prefix):
                    found.append(line.strip())
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


async def still_running(host: TestHost, prefix: str, *, gone_within: float = 15.0) -> list[str]:
    """`running_commands` without blocking the event loop."""
    return await asyncio.to_thread(running_commands, host, prefix, gone_within=gone_within)
