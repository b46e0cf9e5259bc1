"""The stand-ins' pure logic (no root needed): systemd's formats, messages and parsing rules."""

from __future__ import annotations

import re
from typing import Any

import pytest

from testhost import _standin as s
from testhost.files import SUDOERS, known_hosts_line


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "now"),
        (0.25, "250ms ago"),
        (5.9, "5s ago"),
        (65, "1min 5s ago"),
        (301, "5min ago"),
        (3700, "1h 1min ago"),
        (7 * 3600, "7h ago"),
        (26 * 3600, "1 day 2h ago"),
        (3 * 86400, "3 days ago"),
    ],
)
def test_relative_timestamps_read_like_systemds(seconds, text):
    assert s.format_relative(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.052, "52ms"), (1.234, "1.234s"), (2.0, "2s"), (63.5, "1min 3.5s")]
)
def test_cpu_time_reads_like_systemds(seconds, text):
    assert s.format_timespan(seconds) == text


def test_exit_descriptions_read_like_systemds():
    assert s.exit_text("exited", 1) == "code=exited, status=1/FAILURE"
    assert s.exit_text("exited", 0) == "code=exited, status=0/SUCCESS"
    assert s.exit_text("exited", 42) == "code=exited, status=42"
    assert s.exit_text("killed", 9) == "code=killed, status=9/KILL"
    assert s.exit_text("killed", 9, key="signal") == "code=killed, signal=KILL"


def test_unit_names_are_mangled_like_systemctl_does():
    assert s.mangle("redis-server") == "redis-server.service"
    assert s.mangle("redis-server.service") == "redis-server.service"
    assert s.mangle("ssh.socket") == "ssh.socket"


def test_job_failure_messages_are_systemd_252s():
    unit = object.__new__(s.Unit)
    unit.cfg = s.UnitConfig(**SAMPLE_CONFIG)
    assert s.job_failed(unit, "exit-code") == (
        "Job for redis-server.service failed because the control process exited with error code.\n"
        'See "systemctl status redis-server.service" and '
        '"journalctl -xeu redis-server.service" for details.'
    )
    # systemd 252's explanation table lacks "start-limit-hit": the generic message.
    assert s.job_failed(unit, "start-limit-hit").startswith(
        "Job for redis-server.service failed.\nSee "
    )


def test_start_limit_is_systemds_fixed_window():
    unit = object.__new__(s.Unit)
    unit.cfg = s.UnitConfig(**SAMPLE_CONFIG)
    st = s.UnitState()
    assert [unit.ratelimit_below(st) for _ in range(7)] == [True] * 5 + [False] * 2
    st.limit_begin -= 10.5  # the window has passed: a new one opens
    assert unit.ratelimit_below(st)
    assert st.limit_num == 1


@pytest.mark.parametrize(
    ("argv", "lines", "matches"),
    [
        (["-u", "redis-server", "-n", "50"], 50, []),
        (["-u", "redis-server", "-n50", "--no-pager"], 50, []),
        (["-u", "redis-server", "--lines=7"], 7, []),
        (["-u", "redis-server", "-n"], 10, []),
        (["-u", "redis-server", "-n", "all"], None, []),
        (["-u", "redis-server"], None, []),
        (["-eu", "redis-server"], 1000, []),
        (["-u", "redis-server", "-n", "_PID=1"], 10, [("_PID", "1")]),
    ],
)
def test_journalctl_lines_option_has_journalctls_optional_argument(argv, lines, matches):
    query = s.parse_journalctl(argv)
    assert query is not None
    assert (query.units, query.lines, query.matches) == (["redis-server.service"], lines, matches)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--bogus"], "journalctl: unrecognized option '--bogus'"),
        (["-z"], "journalctl: invalid option -- 'z'"),
        (["-u"], "journalctl: option requires an argument -- 'u'"),
        (["--unit"], "journalctl: option '--unit' requires an argument"),
        (["-nabc"], "Failed to parse --lines='abc'."),
        (["-n", "abc"], "Failed to add match 'abc': Invalid argument"),
        (["--no-pager=yes"], "journalctl: option '--no-pager' doesn't allow an argument"),
        (["-p", "loud"], "Unknown log level loud"),
    ],
)
def test_journalctl_refuses_bad_arguments_like_the_real_one(argv, message):
    with pytest.raises(s.UsageError) as caught:
        s.parse_journalctl(argv)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["frobnicate", "x"], "Unknown command verb 'frobnicate'."),
        (["start"], "Too few arguments."),
        (["--bogus", "status", "x"], "systemctl: unrecognized option '--bogus'"),
    ],
)
def test_systemctl_refuses_bad_arguments_like_the_real_one(argv, message):
    with pytest.raises(s.UsageError) as caught:
        s.parse_systemctl(argv)
    assert str(caught.value) == message


def test_systemctl_accepts_options_anywhere():
    ctl = s.parse_systemctl(["is-active", "--quiet", "redis-server", "--no-pager"])
    assert ctl is not None
    assert (ctl.verb, ctl.names, ctl.quiet) == ("is-active", ["redis-server"], True)


def test_journal_entries_print_in_short_format():
    entry = {"ts": 1764109801.5, "host": "vm3", "ident": "systemd", "pid": 1, "prio": 6}
    entry |= {"unit": "redis-server.service", "msg": "Started redis-server.service - X."}
    line = s.format_entry(entry, "short")
    assert re.fullmatch(r"[A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d vm3 systemd\[1\]: Started .*", line)
    assert s.format_entry(entry, "cat") == "Started redis-server.service - X."


def test_sudoers_grants_autobot_exactly_the_runbooks_commands():
    # The runbook's Sudo Permissions, as facts: five systemctl verbs and journalctl on the unit,
    # without a password, for autobot alone. (tests/dashboards/test_redis_host.py checks the
    # text against the runbook itself, verbatim.)
    rules = [line for line in SUDOERS.splitlines() if line and not line.startswith("#")]
    verbs = ["start", "stop", "restart", "reload", "status"]
    assert rules == [
        *(f"autobot ALL=(ALL) NOPASSWD: /bin/systemctl {verb} redis-server" for verb in verbs),
        "autobot ALL=(ALL) NOPASSWD: /bin/journalctl -u redis-server *",
    ]


def test_known_hosts_uses_brackets_only_off_port_22():
    key = "ssh-ed25519 AAAAC3Nza comment"
    assert known_hosts_line("198.18.1.2", 22, key) == "198.18.1.2 ssh-ed25519 AAAAC3Nza\n"
    assert known_hosts_line("198.18.1.2", 2222, key) == "[198.18.1.2]:2222 ssh-ed25519 AAAAC3Nza\n"


SAMPLE_CONFIG: dict[str, Any] = {
    "unit": "redis-server",
    "description": "Advanced key-value store",
    "fragment_path": "/lib/systemd/system/redis-server.service",
    "documentation": [],
    "aliases": ["redis"],
    "hostname": "vm3",
    "exec_start": ["/usr/bin/redis-server"],
    "fail_args": [],
    "redis_port": 6379,
    "redis_password": None,
    "redis_log_copy": "/dev/null",
    "timeout_start": 90.0,
    "timeout_stop": 90.0,
    "start_limit_interval": 10.0,
    "start_limit_burst": 5,
}
