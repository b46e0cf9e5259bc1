"""packaging/host/redis-autoheal-fenced, the host-side wrapper that refuses a remediator
replica's late action: run as a program, with its state directory and systemctl pointed at
this test's own (a script that records what it was asked)."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from tests.support import REPO

if TYPE_CHECKING:
    from pathlib import Path

SCRIPT = REPO / "packaging" / "host" / "redis-autoheal-fenced"


@pytest.fixture
def fenced(tmp_path: Path) -> Path:
    """The wrapper, with STATE_DIR and SYSTEMCTL in tmp_path."""
    systemctl = tmp_path / "systemctl"
    systemctl.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/calls\n')
    systemctl.chmod(0o755)
    source = SCRIPT.read_text()
    for name, value in (("STATE_DIR", tmp_path / "state"), ("SYSTEMCTL", systemctl)):
        line = next(x for x in source.splitlines() if x.startswith(f"{name} = "))
        source = source.replace(line, f'{name} = "{value}"')
    copy = tmp_path / "fenced"
    copy.write_text(source)
    return copy


def run(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, check=False
    )


def calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls"
    return path.read_text().splitlines() if path.exists() else []


def test_a_fence_below_the_highest_seen_is_refused_and_runs_nothing(
    fenced: Path, tmp_path: Path
) -> None:
    assert run(fenced, "7", "restart", "redis-server").returncode == 0
    assert run(fenced, "7", "start", "redis-server").returncode == 0  # the same claim's next step
    assert run(fenced, "9", "restart", "redis-server").returncode == 0  # the replica that took over
    late = run(fenced, "7", "restart", "redis-server")  # the paused one, continued
    assert late.returncode == 77
    assert "fence 7 is below 9" in late.stderr
    assert calls(tmp_path) == ["restart redis-server", "start redis-server", "restart redis-server"]
    assert (tmp_path / "state" / "redis-server.fence").read_text() == "9\n"


def test_fences_are_kept_per_unit(fenced: Path, tmp_path: Path) -> None:
    assert run(fenced, "9", "restart", "redis-server").returncode == 0
    assert run(fenced, "3", "restart", "redis-cache").returncode == 0
    assert calls(tmp_path) == ["restart redis-server", "restart redis-cache"]


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("7", "restart"),
        ("0", "restart", "redis-server"),
        ("-1", "restart", "redis-server"),
        ("7", "status", "redis-server"),
        ("7", "restart", "-redis"),
        ("7", "restart", "redis server"),
        ("7", "restart", "redis-server", "extra"),
        ("\u0667", "restart", "redis-server"),  # an Arabic-Indic 7
    ],
)
def test_anything_but_a_fence_an_action_and_a_unit_runs_nothing(
    fenced: Path, tmp_path: Path, args: tuple[str, ...]
) -> None:
    result = run(fenced, *args)
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert calls(tmp_path) == []
