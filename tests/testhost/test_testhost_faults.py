"""Faults injected into a test host, and what systemd (the stand-ins) and the network say after."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import time

import pytest

from testhost import TestHost
from tests.support import HANG

pytestmark = pytest.mark.root  # every test here uses a test host
SLOW = 5.0  # seconds a slow start stays activating


def ssh(host: TestHost, command: str) -> tuple[int, str, str]:
    done = host.ssh(command)
    return done.returncode, done.stdout, done.stderr


def test_kill9_leaves_the_unit_failed_with_result_signal(test_host):
    pid = test_host.kill9()
    assert test_host.wait_state("failed") == "failed"
    assert test_host.unit_status().result == "signal"
    assert test_host.redis_pid() is None
    assert ssh(test_host, "systemctl is-active redis-server") == (3, "failed\n", "")
    rc, out, _ = ssh(test_host, "sudo -n systemctl status redis-server")
    assert rc == 3
    assert out.startswith("\u00d7 redis-server.service - Advanced key-value store\n")
    assert "Active: failed (Result: signal) since" in out
    assert f"Main PID: {pid} (code=killed, signal=KILL)" in out
    assert (
        "systemd[1]: redis-server.service: Main process exited, code=killed, status=9/KILL" in out
    )
    assert "redis-server.service: Failed with result 'signal'." in out
    assert not test_host.ping(timeout=0.5)


def test_hard_recovery_restarts_a_failed_unit(test_host):
    test_host.kill9()
    test_host.wait_state("failed")
    assert ssh(test_host, "sudo -n systemctl restart redis-server") == (0, "", "")
    assert test_host.unit_state() == "active"
    assert test_host.ping()


def test_clean_stop_leaves_the_unit_inactive(test_host):
    assert test_host.stop().returncode == 0
    assert test_host.unit_state() == "inactive"
    assert ssh(test_host, "systemctl is-active redis-server") == (3, "inactive\n", "")
    systemd = [
        line.split("systemd[1]: ")[1] for line in test_host.journal() if "systemd[1]" in line
    ]
    # In order after the stop began; under load another process's line may land in between.
    after = systemd[systemd.index("Stopping redis-server.service - Advanced key-value store...") :]
    consumed = [line for line in after if "Consumed" in line]
    assert [line for line in after if "Deactivated" in line or line.startswith("Stopped")] == [
        "redis-server.service: Deactivated successfully.",
        "Stopped redis-server.service - Advanced key-value store.",
    ]
    assert after.index("Stopped redis-server.service - Advanced key-value store.") < after.index(
        consumed[0]
    )
    assert re.fullmatch(r"redis-server\.service: Consumed \d+(ms|\.\d+s|s) CPU time\.", consumed[0])
    assert any("Redis is now ready to exit, bye bye..." in line for line in test_host.journal())
    assert test_host.invocations() == []  # the harness's own calls are not recorded


def test_sigterm_from_outside_is_a_clean_exit(test_host):
    test_host.terminate()
    assert test_host.wait_state("inactive") == "inactive"
    assert test_host.unit_status().result == "success"


def test_sigstop_hangs_redis_while_the_unit_stays_active_and_reload_does_not_help(test_host):
    test_host.sigstop()
    started = time.monotonic()
    assert not test_host.ping(timeout=0.5)
    assert time.monotonic() - started >= 0.45  # a timeout, not a refusal
    assert ssh(test_host, "systemctl is-active redis-server") == (0, "active\n", "")
    assert ssh(test_host, "sudo -n systemctl reload redis-server") == (0, "", "")
    assert test_host.unit_state() == "active"
    assert not test_host.ping(timeout=0.5)  # Redis ignores SIGHUP: still hung
    # Restart sends SIGTERM then SIGCONT, so the stopped process can die.
    assert ssh(test_host, "sudo -n systemctl restart redis-server") == (0, "", "")
    assert test_host.ping()


@contextlib.contextmanager
def _starting(host):
    """`sudo -n systemctl start` over SSH, running, and the unit seen activating."""
    with subprocess.Popen(
        host.ssh_argv("sudo -n systemctl start redis-server"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        host.wait_state("activating", timeout=HANG)
        yield proc


def test_slow_start_stays_activating_and_start_blocks_meanwhile(test_host):
    test_host.stop()
    # Long enough for the checks below to run while it lasts, on a loaded machine too.
    test_host.slow_start(SLOW)
    started = time.monotonic()
    with _starting(test_host) as proc:
        assert ssh(test_host, "systemctl is-active redis-server") == (3, "activating\n", "")
        assert not test_host.ping(timeout=0.2)
        assert proc.poll() is None
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert time.monotonic() - started >= SLOW
    assert test_host.unit_state() == "active"
    assert test_host.ping()


def test_a_stop_cancels_a_slow_start(test_host):
    test_host.stop()
    test_host.slow_start(30)
    with _starting(test_host) as proc:
        assert ssh(test_host, "sudo -n systemctl stop redis-server") == (0, "", "")
        _, err = proc.communicate(timeout=30)
    assert (proc.returncode, err) == (1, "Job for redis-server.service canceled.\n")
    assert test_host.unit_state() == "inactive"


def test_start_fails_leaves_the_unit_failed_with_result_exit_code(test_host):
    test_host.start_fails()
    rc, out, err = ssh(test_host, "sudo -n systemctl restart redis-server")
    assert (rc, out) == (1, "")
    assert err == (
        "Job for redis-server.service failed because the control process exited with error code.\n"
        'See "systemctl status redis-server.service" and '
        '"journalctl -xeu redis-server.service" for details.\n'
    )
    assert test_host.unit_state() == "failed"
    assert test_host.unit_status().result == "exit-code"
    log = "\n".join(test_host.journal())
    assert "*** FATAL CONFIG FILE ERROR" in log
    assert "Main process exited, code=exited, status=1/FAILURE" in log
    assert "Failed to start redis-server.service - Advanced key-value store." in log
    test_host.start_fails(False)
    assert ssh(test_host, "sudo -n systemctl start redis-server")[0] == 0
    assert test_host.ping()


def test_six_quick_starts_hit_the_start_limit(test_host):
    codes = [ssh(test_host, "sudo -n systemctl restart redis-server")[0] for _ in range(6)]
    assert codes == [0, 0, 0, 0, 0, 1]
    status = test_host.unit_status()
    assert (status.active, status.result) == ("failed", "start-limit-hit")
    journal = test_host.journal()
    assert sum("Start request repeated too quickly." in line for line in journal) == 1
    rc, _, err = ssh(test_host, "sudo -n systemctl start redis-server")
    assert rc == 1
    assert err.startswith("Job for redis-server.service failed.\n")
    assert test_host.max_starts_in_window(10.0) == 7
    assert [c.result for c in test_host.invocations()][-2:] == ["start-limit-hit"] * 2
    test_host.reset_failed()
    assert ssh(test_host, "sudo -n systemctl start redis-server")[0] == 0


@pytest.mark.parametrize("test_host", [{"start_limit_interval": 3.0}], indirect=True)
def test_the_start_limit_window_passes(test_host):
    window_opened = time.monotonic()
    # Restart until one is refused: the 6th, or a later one on a machine so slow that early
    # starts left the 3 s window before the burst of 5 was used up.
    codes: list[int] = []
    while len(codes) < 20 and 1 not in codes:
        codes.append(test_host.restart().returncode)
    assert codes[-1] == 1, codes
    assert len(codes) >= 6, codes  # the burst of 5 is allowed
    assert test_host.unit_status().result == "start-limit-hit"
    # The window opened at a counted start of this test, and is 3 s long: wait for the clock
    # to pass its end (bounded by the window), then a start is allowed again.
    window_begin = test_host.unit_status().limit_begin
    assert window_begin > window_opened
    while time.monotonic() <= window_begin + 3.0:
        time.sleep(0.05)
    assert test_host.start().returncode == 0
    assert test_host.unit_state() == "active"


def test_link_down_makes_the_host_unreachable(test_host):
    test_host.link_down()
    done = subprocess.run(
        test_host.ssh_argv("true", connect_timeout=2), capture_output=True, text=True, check=False
    )
    assert done.returncode == 255
    assert "No route to host" in done.stderr or "timed out" in done.stderr
    assert not test_host.ping(timeout=1)
    test_host.link_up()
    assert test_host.ping()
    assert ssh(test_host, "systemctl is-active redis-server")[0] == 0


def test_blackhole_makes_connects_time_out(test_host):
    test_host.blackhole()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        socket.create_connection((test_host.address, test_host.ssh_port), timeout=1.0)
    assert time.monotonic() - started >= 0.9
    done = subprocess.run(
        test_host.ssh_argv("true", connect_timeout=1), capture_output=True, text=True, check=False
    )
    assert done.returncode == 255
    assert "Connection timed out" in done.stderr
    test_host.unblackhole()
    assert test_host.ping()


def test_change_host_key_makes_ssh_refuse_the_host(test_host):
    test_host.change_host_key()
    rc, _, err = ssh(test_host, "true")
    assert rc == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in err
    assert "Host key verification failed." in err


@pytest.mark.parametrize("test_host", [{"redis_running": False}], indirect=True)
def test_a_host_can_start_with_redis_inactive(test_host):
    assert test_host.unit_state() == "inactive"
    assert not test_host.ping(timeout=0.5)
    assert ssh(test_host, "sudo -n systemctl start redis-server") == (0, "", "")
    assert test_host.ping()


@pytest.mark.parametrize("test_host", [{"password": "s3cret", "rdb": True}], indirect=True)
def test_password_and_rdb_options(test_host):
    assert test_host.ping()
    assert test_host.password_file is not None
    assert test_host.password_file.read_text() == "s3cret\n"
    with socket.create_connection((test_host.address, test_host.redis_port), timeout=2) as sock:
        sock.sendall(b"PING\r\n")
        assert sock.recv(100).startswith(b"-NOAUTH")
    assert "save 900 1" in (test_host.workdir / "redis" / "redis.conf").read_text()
