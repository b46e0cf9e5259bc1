"""What the units' sandbox takes away, the code must do without. Without systemd as PID 1 the
units cannot run here, but two of their settings are plain prctl(2) calls a process can make
on itself: NoNewPrivileges= and MemoryDenyWriteExecute= (PR_SET_MDWE, Linux 6.3). `health`
under both reaches all three layers of a test host (Redis, and SSH with its cryptography)."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from testhost.host import TestHost
from tests.remediator.configs import write_config
from tests.support import HANG, missing

REPO = Path(__file__).resolve().parents[2]
PR_SET_NO_NEW_PRIVS, PR_SET_MDWE, PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 38, 65, 66, 1

# Run by the child before it execs the CLI: the settings hold across execve.
SANDBOX = f"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for option in ({PR_SET_NO_NEW_PRIVS}, {PR_SET_MDWE}):
    if libc.prctl(option, 1, 0, 0, 0) != 0:
        sys.exit(f"prctl({{option}}): {{os.strerror(ctypes.get_errno())}}")
if libc.prctl({PR_GET_MDWE}, 0, 0, 0, 0) != {PR_MDWE_REFUSE_EXEC_GAIN}:
    sys.exit("PR_SET_MDWE did not hold")
os.execv(sys.executable, [sys.executable, "-m", "redis_autoheal.cli", *sys.argv[1:]])
"""


def mdwe_supported() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(PR_GET_MDWE, 0, 0, 0, 0) >= 0)


@pytest.mark.root
def test_health_runs_without_writable_executable_memory(
    test_host: TestHost, tmp_path: Path
) -> None:
    if not mdwe_supported():
        missing("needs Linux 6.3 or later for PR_SET_MDWE (MemoryDenyWriteExecute=)")
    config = write_config(tmp_path, {"targets": [test_host.target("redis")]})
    done = subprocess.run(
        [sys.executable, "-c", SANDBOX, "health", "--config", str(config.source), "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=HANG,
        check=False,
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr  # 1: a busy machine's PING
    layers = json.loads(done.stdout)[0]["layers"]
    assert [layers[k]["status"] for k in ("systemd", "performance")] == ["healthy", "healthy"]
    assert layers["connectivity"]["status"] in ("healthy", "warning")
