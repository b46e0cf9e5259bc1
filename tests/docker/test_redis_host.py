"""docker/redis-host: the runbook's sudoers verbatim, the systemd stand-in installed from
testhost/, and configs that Debian's own sshd, sudo and redis-server accept."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from testhost import _standin, files
from tests.dashboards.dashboard_json import REPO
from tests.support import HANG, require_binary

HOST = REPO / "docker" / "redis-host"
SCRIPTS = [
    HOST / "entrypoint.sh",
    HOST / "install-standin.sh",
    REPO / "docker" / "gen-secrets.sh",
    REPO / "docker" / "secrets-init.sh",
]


def test_sudoers_is_the_runbooks_verbatim():
    sudoers = (HOST / "sudoers").read_text(encoding="utf-8")
    assert sudoers == files.SUDOERS, "the test hosts and the container must grant the same"
    # The README gives users the runbook's rules, verbatim: the same lines.
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```\n(autobot ALL=.*?)```", text, re.DOTALL)
    assert block is not None
    rules = [line for line in sudoers.splitlines() if not line.startswith("#")]
    assert rules == block.group(1).splitlines()


def test_sudoers_parses():
    visudo = require_binary("visudo")
    done = subprocess.run(
        [visudo, "--check", "--strict", "--file", str(HOST / "sudoers")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shell_scripts_parse(script):
    assert script.read_text(encoding="utf-8").startswith("#!/bin/sh\n")
    subprocess.run(["sh", "-n", str(script)], check=True)


def test_unit_json_is_what_the_standin_reads():
    config = _standin.UnitConfig.load(HOST / "unit.json")
    assert config.unit == "redis-server"
    assert config.redis_password is None, "unit.json is world-readable"
    assert config.exec_start[-2:] == ["/usr/bin/redis-server", "/etc/redis/redis.conf"]
    assert config.hostname == "redis-host"


# root: the stand-in's journalctl, like systemd's, shows the journal only to root (and adm).
@pytest.mark.root
def test_standin_installs_as_systemctl_and_journalctl(tmp_path):
    """install-standin.sh bakes the state directory in; the tools answer like systemd's."""
    state, root = tmp_path / "state", tmp_path / "root"
    subprocess.run(
        [
            "sh",
            str(HOST / "install-standin.sh"),
            str(REPO / "testhost" / "_standin.py"),
            str(state),
            str(root),
        ],
        check=True,
    )
    state.mkdir()  # in the image, the script makes it under ROOT (here, root/<state>)
    (state / "unit.json").write_text((HOST / "unit.json").read_text())
    systemctl = root / "usr/bin/systemctl"
    assert systemctl.stat().st_mode & 0o777 == 0o755
    assert (root / "usr/local/sbin/unitctl").stat().st_mode & 0o777 == 0o700
    assert f"BAKED_STATE_DIR = '{state}'" in systemctl.read_text()
    done = subprocess.run(
        [str(systemctl), "is-active", "redis-server"], capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stdout) == (3, "inactive\n")
    done = subprocess.run(
        [str(root / "usr/bin/journalctl"), "-u", "redis-server", "-n", "5", "--no-pager"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.root
def test_sshd_accepts_the_config(tmp_path):
    """`sshd -t` in a mount namespace of its own: it wants /run/sshd, which this machine's
    /run need not have, and the test must not create it there."""
    sshd = require_binary("sshd")
    unshare = require_binary("unshare")
    key = tmp_path / "host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    text = (HOST / "sshd_config").read_text(encoding="utf-8")
    text = text.replace("/etc/ssh/ssh_host_ed25519_key", str(key))
    config = tmp_path / "sshd_config"
    config.write_text(text)
    script = 'mount -t tmpfs tmpfs /run && mkdir -m 0755 /run/sshd && exec "$0" -t -f "$1"'
    done = subprocess.run(
        [unshare, "--mount", "--propagation", "private", "sh", "-c", script, sshd, str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "conf", [HOST / "redis.conf", REPO / "docker/redis/redis.conf"], ids=["redis-host", "redis"]
)
def test_redis_accepts_the_config(tmp_path, conf):
    """Debian 12's redis-server (the container's) starts with the config, on a unix socket."""
    server = require_binary("redis-server")
    cli = require_binary("redis-cli")
    auth = tmp_path / "auth.conf"
    auth.write_text("requirepass secret\n")
    text = conf.read_text(encoding="utf-8")
    text = re.sub(r"^include .*$", f"include {auth}", text, flags=re.MULTILINE)
    text = re.sub(r"^(pidfile|dir|logfile) .*$", "", text, flags=re.MULTILINE)
    sock = tmp_path / "redis.sock"
    text += f"\nport 0\nunixsocket {sock}\ndir {tmp_path}\nlogfile {tmp_path / 'log'}\n"
    (tmp_path / "redis.conf").write_text(text)
    proc = subprocess.Popen([server, str(tmp_path / "redis.conf")])
    try:
        deadline = time.monotonic() + HANG
        while not sock.exists():
            assert proc.poll() is None, (tmp_path / "log").read_text()
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        base = [cli, "-s", str(sock), "--no-auth-warning", "-a", "secret"]
        got = subprocess.run(
            [*base, "--json", "CONFIG", "GET", "maxmemory-policy"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert json.loads(got) == {"maxmemory-policy": "allkeys-lru"}
        subprocess.run([*base, "SHUTDOWN", "NOSAVE"], capture_output=True, check=False)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_dockerfile_installs_what_the_entrypoint_uses():
    dockerfile = (HOST / "Dockerfile").read_text(encoding="utf-8")
    entrypoint = (HOST / "entrypoint.sh").read_text(encoding="utf-8")
    for path in ("/usr/local/share/redis-host/unit.json", "/usr/local/sbin/unitctl"):
        assert path in entrypoint
    assert "/usr/local/share/redis-host/unit.json" in dockerfile
    state = re.search(r"^state=(\S+)$", entrypoint, re.MULTILINE)
    assert state is not None
    assert f"install-standin.sh /tmp/standin/_standin.py {state.group(1)}" in dockerfile
    assert "/etc/sudoers.d/autobot-redis" in dockerfile
    assert Path("/etc/redis/auth.conf").name in (HOST / "redis.conf").read_text()
