"""The systemd units of packaging/systemd/: `systemd-analyze verify` finds nothing to say,
`systemd-analyze security --offline=true` rates each at the exposure the README states, their
command lines are ones the CLI takes, and they keep Debian's layout. None of this needs systemd
running as PID 1: verify reads the unit files inside a scratch root directory."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from redis_autoheal.cli import build_parser
from tests.support import require_binary

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "packaging" / "systemd"
NAMES = ("redis-autoheal-exporter.service", "redis-autoheal-remediator.service")
# The README's "Overall exposure" of both units; systemd-analyze rates 1.4 "OK".
EXPOSURE = 1.4
COMMAND = "/opt/redis-autoheal/bin/redis-autoheal"


def directives(name: str) -> dict[str, list[str]]:
    """Each directive of the unit file with its values, in order."""
    found: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def scratch_root(root: Path, name: str) -> None:
    """A root directory for `systemd-analyze verify --root`: this unit, systemd's own units
    (sysinit.target and the like), and an executable where each Exec line looks for its command."""
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system" / name).write_bytes((UNITS / name).read_bytes())
    # A copy (links kept as links): verify resolves links inside the root, and a link to
    # the real directory loops.
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    for key, values in directives(name).items():
        for value in values if key.startswith("Exec") else ():
            command = root / shlex.split(value)[0].lstrip("/")
            command.parent.mkdir(parents=True, exist_ok=True)
            command.write_text("#!/bin/sh\n")
            command.chmod(0o755)


@pytest.mark.parametrize("name", NAMES)
def test_verify_finds_nothing(name: str, tmp_path: Path) -> None:
    analyze = require_binary("systemd-analyze")
    scratch_root(tmp_path, name)
    done = subprocess.run(
        [analyze, "verify", f"--root={tmp_path}", name],
        capture_output=True,
        text=True,
        check=False,
    )
    # verify also exits 0 after a line it ignored ("Failed to parse ..., ignoring"): any
    # output is a finding.
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_verify_reports_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a misspelt value in a copy of the unit is reported."""
    analyze = require_binary("systemd-analyze")
    name = NAMES[1]
    scratch_root(tmp_path, name)
    unit = tmp_path / "etc/systemd/system" / name
    unit.write_text(unit.read_text().replace("ProtectSystem=strict", "ProtectSystem=stritc"))
    done = subprocess.run(
        [analyze, "verify", f"--root={tmp_path}", name],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "protect system value, ignoring: stritc" in done.stderr


@pytest.mark.parametrize("name", NAMES)
def test_security_exposure(name: str) -> None:
    analyze = require_binary("systemd-analyze")
    done = subprocess.run(
        [
            analyze,
            "security",
            "--offline=true",
            f"--threshold={round(EXPOSURE * 10)}",
            "--no-pager",
            str(UNITS / name),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    overall = re.search(r"Overall exposure level for \S+: (\d+\.\d) (\w+)", done.stdout)
    assert overall, done.stdout + done.stderr
    assert (float(overall[1]), overall[2], done.returncode) == (EXPOSURE, "OK", 0)


@pytest.mark.parametrize(
    ("name", "command"), list(zip(NAMES, ("exporter", "remediator"), strict=True))
)
def test_command_line_is_the_clis(name: str, command: str) -> None:
    (exec_start,) = directives(name)["ExecStart"]
    argv = shlex.split(exec_start)
    assert argv[0] == COMMAND
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.config) == (command, Path("/etc/redis-autoheal/config.yml"))


@pytest.mark.parametrize("name", NAMES)
def test_debian_layout_and_user(name: str) -> None:
    unit = directives(name)
    assert unit["User"] == unit["Group"] == ["redis-autoheal"]
    assert unit["ConfigurationDirectory"] == ["redis-autoheal"]  # /etc/redis-autoheal
    assert unit["ProtectSystem"] == ["strict"]  # /etc read-only: nothing lands there
    if name == NAMES[1]:  # the remediator keeps breakers and writes the audit log
        assert unit["StateDirectory"] == ["redis-autoheal"]  # /var/lib/redis-autoheal
        assert unit["LogsDirectory"] == ["redis-autoheal"]  # /var/log/redis-autoheal


def test_sysusers_creates_the_user() -> None:
    sysusers = require_binary("systemd-sysusers")
    done = subprocess.run(
        [sysusers, "--dry-run", str(UNITS / "redis-autoheal.sysusers.conf")],
        capture_output=True,
        text=True,
        check=False,
    )
    # It would create the user and group, or finds them there: either way no complaint.
    assert (done.returncode, "ignoring" in done.stderr) == (0, False), done.stderr
