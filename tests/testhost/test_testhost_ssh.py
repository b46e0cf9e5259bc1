"""The test host over a real ssh connection as autobot: real sshd, real sudo, the runbook's
sudoers file, and the systemctl/journalctl stand-ins answering with systemd's output."""

from __future__ import annotations

import re
from pathlib import Path

import asyncssh
import pytest

from testhost import SUDOERS, TestHost
from testhost.files import FENCED, FENCED_STATE, SUDOERS_FENCED

pytestmark = pytest.mark.root  # every test here uses a test host

JOURNAL_LINE = re.compile(
    r"[A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d vm3 (systemd\[1\]|redis-server\[\d+\]): .*"
)
REFUSED = "sudo: a password is required"


def ssh(host: TestHost, command: str) -> tuple[int, str, str]:
    done = host.ssh(command)
    return done.returncode, done.stdout, done.stderr


def test_login_is_autobot_with_the_generated_key(test_host):
    assert oct(test_host.key_file.stat().st_mode & 0o777) == "0o600"
    rc, out, err = ssh(test_host, "id -un; echo $HOME")
    assert rc == 0, err
    assert out == f"autobot\n{test_host.workdir}/home/autobot\n"


def test_is_active_and_status_work_without_sudo(test_host):
    assert ssh(test_host, "systemctl is-active redis-server") == (0, "active\n", "")
    rc, out, _ = ssh(test_host, "systemctl status redis-server")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0] == "● redis-server.service - Advanced key-value store"
    assert re.search(r"Active: active \(running\) since \w{3} \d{4}-\d\d-\d\d [\d:]{8} \w+; ", out)
    assert f"Main PID: {test_host.redis_pid()} (redis-server)" in out


def test_status_through_sudo_shows_the_units_log(test_host):
    rc, out, err = ssh(test_host, "sudo -n systemctl status redis-server")
    assert rc == 0, err
    log = out.split("\n\n", 1)[1].splitlines()
    assert all(JOURNAL_LINE.fullmatch(line) for line in log)
    assert any(
        line.endswith("Started redis-server.service - Advanced key-value store.") for line in log
    )


def test_each_control_command_works_through_sudo_with_systemds_exit_codes(test_host):
    pid = test_host.redis_pid()
    assert ssh(test_host, "sudo -n systemctl start redis-server") == (0, "", "")
    assert test_host.redis_pid() == pid  # starting an active unit is a no-op
    assert ssh(test_host, "sudo -n systemctl reload redis-server") == (0, "", "")
    assert test_host.redis_pid() == pid
    assert ssh(test_host, "sudo -n systemctl restart redis-server") == (0, "", "")
    assert test_host.redis_pid() not in (None, pid)
    assert test_host.ping()
    assert ssh(test_host, "sudo -n systemctl stop redis-server") == (0, "", "")
    assert not test_host.ping()
    assert ssh(test_host, "systemctl is-active redis-server") == (3, "inactive\n", "")
    rc, out, _ = ssh(test_host, "systemctl status redis-server")
    assert rc == 3
    assert "Active: inactive (dead) since" in out
    assert ssh(test_host, "sudo -n systemctl reload redis-server") == (
        1,
        "",
        "redis-server.service is not active, cannot reload.\n",
    )
    assert ssh(test_host, "sudo -n systemctl start redis-server") == (0, "", "")
    assert test_host.ping()


def test_every_control_call_is_recorded(test_host):
    for verb in ("reload", "restart", "stop", "start"):
        assert ssh(test_host, f"sudo -n systemctl {verb} redis-server")[0] == 0
    calls = test_host.invocations()
    assert [c.verb for c in calls] == ["reload", "restart", "stop", "start"]
    assert {(c.uid, c.sudo_user, c.exit_code, c.unit) for c in calls} == {
        (0, "autobot", 0, "redis-server.service")
    }
    assert all(c.end_ts is not None and c.end_ts >= c.ts for c in calls)


def test_journalctl_through_sudo_prints_the_last_lines(test_host):
    for command in (
        "sudo -n journalctl -u redis-server -n 5",
        "sudo -n journalctl -u redis-server -n 5 --no-pager",
    ):
        rc, out, err = ssh(test_host, command)
        assert rc == 0, err
        lines = out.splitlines()
        assert len(lines) == 5
        assert all(JOURNAL_LINE.fullmatch(line) for line in lines)
    rc, out, _ = ssh(test_host, "sudo -n journalctl -u redis-server -n 1000")
    assert "redis-server[" in out
    assert "Ready to accept connections" in out
    assert out.index("Ready to accept connections") < out.index("Started redis-server.service")


def test_journalctl_refuses_bad_arguments_and_other_units_have_no_entries(test_host):
    rc, _, err = ssh(test_host, "sudo -n journalctl -u redis-server --bogus")
    assert (rc, err) == (1, "journalctl: unrecognized option '--bogus'\n")
    rc, out, _ = ssh(test_host, "sudo -n journalctl -u redis-server -n 5 _PID=99999999")
    assert (rc, out) == (0, "-- No entries --\n")


def test_journalctl_without_sudo_sees_nothing(test_host):
    rc, _, err = ssh(test_host, "journalctl -u redis-server -n 5")
    assert rc == 1
    assert err.endswith("No journal files were opened due to insufficient permissions.\n")


def test_control_without_sudo_is_denied_like_systemd_denies_it(test_host):
    rc, out, err = ssh(test_host, "systemctl restart redis-server")
    assert (rc, out) == (4, "")
    assert err == (
        "Failed to restart redis-server.service: Access denied\n"
        "See system logs and 'systemctl status redis-server.service' for details.\n"
    )
    assert test_host.invocations() == []


@pytest.mark.parametrize(
    "command",
    [
        "sudo -n systemctl start other-unit",
        "sudo -n systemctl is-active redis-server",  # not in the runbook's sudoers
        "sudo -n systemctl kill redis-server",
        "sudo -n journalctl -n 5",
        "sudo -n journalctl -u other-unit -n 5",
        "sudo -n cat /etc/shadow",
        "sudo -n /bin/sh -c id",
    ],
)
def test_sudo_refuses_what_the_runbook_does_not_allow(test_host, command):
    rc, out, err = ssh(test_host, command)
    assert (rc, out) == (1, "")
    assert REFUSED in err


def test_sudo_lists_exactly_the_runbooks_rules(test_host):
    rc, out, _ = ssh(test_host, "sudo -n -l")
    assert rc == 0
    rules = [line.strip() for line in out.splitlines() if "NOPASSWD" in line]
    expected = [
        line.split("NOPASSWD", 1)[0].replace("autobot ALL=", "")
        + "NOPASSWD"
        + line.split("NOPASSWD", 1)[1]
        for line in SUDOERS.splitlines()
        if line.startswith("autobot ")
    ]
    assert rules == expected


def test_the_hosts_etc_is_private_and_the_real_one_untouched(test_host):
    done = test_host.run(["cat", "/etc/sudoers.d/autobot-redis"])
    assert done.stdout == SUDOERS
    assert test_host.run(["visudo", "-c"]).returncode == 0
    assert test_host.run(["stat", "-c", "%a %U", "/etc/sudoers.d/autobot-redis"]).stdout == (
        "440 root\n"
    )
    assert test_host.run(["getent", "shadow", "autobot"]).stdout.startswith("autobot:*:")
    assert not Path("/etc/sudoers.d/autobot-redis").exists()
    assert "autobot:" not in Path("/etc/passwd").read_text()


@pytest.mark.parametrize("test_host", [{"fenced": True}], indirect=True)
def test_with_fenced_the_wrapper_and_its_sudoers_line_are_installed(test_host):
    """The README's fenced wrapper and sudoers line: a fence below the highest seen is refused
    (77) and runs nothing; its state and the wrapper are the host's, not the machine's."""
    done = test_host.run(["cat", "/etc/sudoers.d/autobot-redis"])
    assert done.stdout == SUDOERS + SUDOERS_FENCED
    assert test_host.run(["visudo", "-c"]).returncode == 0
    assert ssh(test_host, f"sudo -n {FENCED} 5 restart redis-server") == (0, "", "")
    rc, out, err = ssh(test_host, f"sudo -n {FENCED} 3 reload redis-server")
    assert (rc, out) == (77, "")
    assert "refused: fence 3 is below 5" in err
    assert ssh(test_host, f"sudo -n {FENCED} 5 reload redis-server") == (0, "", "")
    for other in (f"{FENCED} 6 restart redis-cache", f"{FENCED} x restart redis-server"):
        rc, _, err = ssh(test_host, f"sudo -n {other}")
        assert rc == 1
        assert REFUSED in err
    assert [i.verb for i in test_host.invocations()] == ["restart", "reload"]
    assert not Path(FENCED).exists()
    assert not Path(FENCED_STATE).exists()


def test_unknown_units_behave_like_systemd_252(test_host):
    assert test_host.unitctl("is-active", "nope").stdout == "inactive\n"
    assert test_host.unitctl("is-active", "nope").returncode == 3
    done = test_host.unitctl("start", "other-unit")
    assert (done.returncode, done.stderr) == (
        5,
        "Failed to start other-unit.service: Unit other-unit.service not found.\n",
    )
    done = test_host.unitctl("status", "nope")
    assert (done.returncode, done.stderr) == (4, "Unit nope.service could not be found.\n")


async def test_asyncssh_accepts_the_fixtures_known_hosts_and_key(test_host):
    async with asyncssh.connect(
        test_host.address,
        port=test_host.ssh_port,
        username=test_host.user,
        client_keys=[str(test_host.key_file)],
        known_hosts=str(test_host.known_hosts),
        config=None,
    ) as conn:
        result = await conn.run("systemctl is-active redis-server", check=False)
    assert (result.exit_status, result.stdout) == (0, "active\n")
