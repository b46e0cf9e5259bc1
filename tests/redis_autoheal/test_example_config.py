"""examples/config.yml says how to make it check: its `$` lines, run as it says, make
`redis-autoheal check-config` pass on it (and without them it fails). The lines write to /etc
and ~, so they run in a private mount namespace over a throwaway copy of /etc."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import HANG, require_root

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "config.yml"

pytestmark = pytest.mark.root

# /etc made writable for this namespace only: an overlay whose changes live on a tmpfs.
PRIVATE_ETC = """
mount -t tmpfs tmpfs "$OVERLAY"
mkdir "$OVERLAY/upper" "$OVERLAY/work"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$OVERLAY/upper,workdir=$OVERLAY/work" /etc
"""


def example_steps() -> list[str]:
    prefix = "#   $ "
    return [
        line.removeprefix(prefix)
        for line in EXAMPLE.read_text().splitlines()
        if line.startswith(prefix)
    ]


def run_privately(tmp_path: Path, script: str) -> subprocess.CompletedProcess[str]:
    """`script` in bash, as root, with its own /etc and HOME, and `redis-autoheal` on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    wrapper = bin_dir / "redis-autoheal"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m redis_autoheal.cli "$@"\n')
    wrapper.chmod(0o755)
    (tmp_path / "home").mkdir(exist_ok=True)
    (tmp_path / "overlay").mkdir(exist_ok=True)
    env = {
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "HOME": str(tmp_path / "home"),
        "OVERLAY": str(tmp_path / "overlay"),
        "PYTHONPATH": str(REPO),
    }
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--", "bash", "-euc", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG,
        check=False,
    )


def test_the_example_checks_after_its_own_steps(tmp_path):
    require_root()
    steps = example_steps()
    assert steps[-1] == "redis-autoheal check-config --config examples/config.yml"

    bare = run_privately(tmp_path, PRIVATE_ETC + steps[-1])
    assert bare.returncode == 1
    assert "autobot_key" in bare.stderr  # the file the first step makes

    done = run_privately(tmp_path, PRIVATE_ETC + "\n".join(steps))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{EXAMPLE}: OK: 1 target(s): redis\n"
    assert not Path("/etc/redis-autoheal/webhook.token").exists()  # the real /etc untouched
