"""The `redis-autoheal` command as a user meets it, run as a process: every error is one line
on stderr naming the flag (or the config key) at fault, with no traceback; a reader that goes
away (`| head`) ends it quietly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.remediator.configs import write_config
from tests.support import HANG, missing

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("redis-autoheal")


def run(*argv: str, stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    """The installed console script, importing this checkout."""
    if not SCRIPT.exists():
        missing(f"{SCRIPT} is not installed: run scripts/setup.sh")
    return subprocess.run(
        [str(SCRIPT), *argv],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=HANG,
        check=False,
    )


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The process's only line on stderr (and nothing on stdout)."""
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config that loads, with the remediator's files; its target has no Redis behind it."""
    return write_config(tmp_path, {"targets": [{"name": "redis"}]}).source


SUMMARY = "redis-autoheal audit summary: error: argument"


@pytest.mark.parametrize(
    ("argv", "status", "line"),
    [
        ((), 2, "redis-autoheal: error: the following arguments are required: COMMAND"),
        (("frobnicate",), 2, "redis-autoheal: error: argument COMMAND: invalid choice: 'frob"),
        (("check-config", "--service", "x"), 2, "redis-autoheal check-config: error: argument "),
        (("check-config", "--bogus"), 2, "redis-autoheal: error: unrecognized arguments: --bogus"),
        (
            ("exporter", "--listen", "localhost"),
            2,
            "redis-autoheal exporter: error: argument --listen: must be HOST:PORT, got 'local",
        ),
        (
            ("remediator", "--listen", "127.0.0.1:0"),
            2,
            "redis-autoheal remediator: error: argument --listen: port must be 1-65535, got 0",
        ),
        (("breaker", "frob"), 2, "redis-autoheal breaker: error: argument action: invalid"),
        (("audit",), 2, "redis-autoheal audit: error: the following arguments are required"),
        (("audit", "summary", "--since", "5y"), 2, f"{SUMMARY} --since: must be like 24h, 7d"),
        (
            ("audit", "summary", "--timezone", "Mars/Olympus"),
            2,
            f"{SUMMARY} --timezone: unknown time zone 'Mars/Olympus'",
        ),
        (
            ("audit", "summary", "--business-hours", "9-5"),
            2,
            f"{SUMMARY} --business-hours: business hours must be HH:MM-HH:MM, got '9-5'",
        ),
        (
            ("audit", "summary", "--business-days", "weekdays"),
            2,
            f"{SUMMARY} --business-days: business days must be like mon-fri",
        ),
        (("audit", "summary", "--log-level", "loud"), 2, f"{SUMMARY} --log-level: invalid"),
        # health is a Nagios check: a usage error is UNKNOWN (3), not CRITICAL (2)
        (("health", "--config"), 3, "redis-autoheal health: error: argument --config: expected"),
        (("health", "--bogus"), 3, "redis-autoheal: error: unrecognized arguments: --bogus"),
    ],
)
def test_a_bad_flag_is_one_line_naming_it(argv: tuple[str, ...], status: int, line: str) -> None:
    done = run(*argv)
    assert (done.returncode, one_line(done)[: len(line)]) == (status, line)


@pytest.mark.parametrize(
    "argv",
    [
        ("check-config",),
        ("exporter",),
        ("remediator",),
        ("breaker", "status"),
        ("audit", "summary"),
    ],
)
def test_a_missing_config_is_one_line(argv: tuple[str, ...], tmp_path: Path) -> None:
    missing_file = tmp_path / "nowhere.yml"
    done = run(*argv, "--config", str(missing_file))
    assert (done.returncode, one_line(done)) == (
        1,
        f"redis-autoheal: error: cannot read config file {missing_file}: No such file or directory",
    )


def test_an_unknown_target_is_blamed_on_target(config: Path) -> None:
    done = run("breaker", "reset", "--config", str(config), "--target", "nosuch")
    assert (done.returncode, one_line(done)) == (
        1,
        f"redis-autoheal: error: --target: no target 'nosuch' in {config} (known: redis)",
    )


@pytest.mark.parametrize("argv", [("audit", "summary"), ("--help",), ("health",)])
def test_a_closed_stdout_ends_quietly(argv: tuple[str, ...], config: Path) -> None:
    """As `... | head` when head has gone: no traceback, no second error; the status of a tool
    that SIGPIPE ended (128 + 13), or 0 for --help."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        extra = () if argv == ("--help",) else ("--config", str(config))
        done = run(*argv, *extra, stdout=write_end)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (0 if argv == ("--help",) else 141, "")
