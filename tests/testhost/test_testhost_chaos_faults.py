"""The faults added for the chaos campaign: host key restored, SSH cut mid-command, a full disk."""

from __future__ import annotations

import errno
import os
import subprocess

import pytest

from testhost import TestHost
from testhost.disk import SmallDisk
from tests.support import require_root


def ssh(host: TestHost, command: str) -> tuple[int, str, str]:
    done = host.ssh(command)
    return done.returncode, done.stdout, done.stderr


def test_restore_host_key_makes_ssh_accept_the_host_again(test_host):
    assert test_host.restore_host_key() is False  # never changed: nothing to restore
    test_host.change_host_key()
    test_host.change_host_key()  # a second change still restores the first key
    assert ssh(test_host, "true")[0] == 255
    assert test_host.restore_host_key() is True
    assert ssh(test_host, "true") == (0, "", "")


def test_dropped_ssh_connection_cuts_the_client_but_the_restart_completes(test_host):
    test_host.slow_start(1.5)
    before = test_host.redis_pid()
    client = subprocess.Popen(
        test_host.ssh_argv("sudo -n systemctl restart redis-server"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        test_host.wait_until(lambda: test_host.unit_state() == "activating", 15, "restart begun")
        cut = test_host.drop_ssh_connections()
        _, err = client.communicate(timeout=15)
    finally:
        client.kill()
        client.wait()
    assert cut
    assert client.returncode == 255  # the client saw its connection go
    assert "closed" in err or "reset" in err or "broken" in err.lower()
    # systemd's job runs on without its systemctl: Redis comes back, under a new pid.
    test_host.wait_state("active", timeout=15)
    assert test_host.ping()
    assert test_host.redis_pid() != before
    (restart,) = test_host.invocations(["restart"])
    assert restart.sudo_user == "autobot"
    assert test_host.sshd_listening()
    assert ssh(test_host, "systemctl is-active redis-server") == (0, "active\n", "")


@pytest.mark.root  # mounts a tmpfs
def test_small_disk_fills_and_frees(tmp_path):
    require_root()
    with SmallDisk(tmp_path / "disk", 1 << 20) as disk:
        log = disk.path / "audit.log"
        log.write_text("before\n")
        assert disk.fill() > 0
        fd = os.open(log, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, b"x" * 8192)  # fills what is left of the file's last page, if anything
            with pytest.raises(OSError, match="No space left on device") as caught:
                os.write(fd, b"x" * 8192)
        finally:
            os.close(fd)
        assert caught.value.errno == errno.ENOSPC
        disk.free()
        with log.open("a") as f:
            f.write("after\n")
        assert log.read_text().startswith("before\n")
        assert log.read_text().endswith("after\n")
    assert not (tmp_path / "disk" / "audit.log").exists()  # unmounted: the tmpfs is gone


def test_is_active_over_ssh_is_recorded_with_what_it_saw(test_host):
    assert test_host.queries() == []
    test_host.unitctl("is-active", test_host.unit)  # the console's look is not recorded
    assert ssh(test_host, "systemctl is-active redis-server") == (0, "active\n", "")
    test_host.kill9()
    test_host.wait_state("failed")
    assert ssh(test_host, "systemctl is-active redis-server")[1] == "failed\n"
    seen = test_host.queries()
    assert [(q.verb, q.unit, q.state, q.user) for q in seen] == [
        ("is-active", "redis-server.service", "active", "autobot"),
        ("is-active", "redis-server.service", "failed", "autobot"),
    ]
    assert seen[0].uid != 0
    assert seen[0].ts < seen[1].ts
