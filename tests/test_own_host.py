"""The README's "Run it on your hosts", done as a user does it, against the test host.

On the monitoring side the README's paths are written for real (/etc/redis-autoheal,
/var/lib and /var/log/redis-autoheal, /opt/redis-autoheal, /usr/local/bin) but inside a private
mount namespace whose /etc, /var, /opt and /usr/local are overlays on a tmpfs, so this machine
is untouched. Where the test cannot do what the README says, it does the nearest thing:
- `pip install` into /opt/redis-autoheal: a /opt/redis-autoheal/bin/redis-autoheal that runs
  this checkout (no network here);
- systemd: each unit's ExecStart, read from the installed unit file, run as its User= with its
  UMask=, after making its StateDirectory= and LogsDirectory= as systemd does;
- Alertmanager: one webhook as Alertmanager sends it, with the token init wrote;
- the unit drop-in (step 3 on the Redis host): the test host has no systemd to read it; its
  stand-in already runs the unit that way (tests/redis_autoheal/test_init.py checks the text).
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.support import HANG, free_port, install_steps

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from testhost.host import TestHost

REPO = Path(__file__).resolve().parents[1]
UNITS = ("redis-autoheal-exporter.service", "redis-autoheal-remediator.service")
SERVICE_USER = "redis-autoheal"
AUDIT_LOG = "/var/log/redis-autoheal/redis_service_management.log"

pytestmark = pytest.mark.root

# /etc, /var, /opt and /usr/local made writable for this namespace only, and the directories
# in $SEARCHABLE searchable by others (a Python under /root here: the service user runs it).
HOLDER = """
mount -t tmpfs tmpfs "$OVERLAY"
for d in /etc /var /opt /usr/local $SEARCHABLE; do
  o="$OVERLAY/$d"
  mkdir -p "$o/upper" "$o/work"
  mount -t overlay overlay -o "lowerdir=$d,upperdir=$o/upper,workdir=$o/work" "$d"
done
for d in $SEARCHABLE; do chmod o+x "$d"; done
touch "$READY"
exec sleep 86400
"""


def unsearchable(path: Path) -> list[str]:
    """The directories above `path` that others may not search (o+x)."""
    return [str(d) for d in Path(path).resolve().parents if not d.stat().st_mode & 0o001]


class PrivateRoot:
    """A mount namespace with its own writable /etc, /var, /opt and /usr/local."""

    def __init__(self, tmp: Path) -> None:
        (tmp / "overlay").mkdir()
        ready = tmp / "ready"
        env = {
            **os.environ,
            "OVERLAY": str(tmp / "overlay"),
            "READY": str(ready),
            "SEARCHABLE": " ".join(unsearchable(Path(sys.executable))),
        }
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "bash", "-euc", HOLDER],
            env=env,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + HANG
        while not ready.exists():
            if self.holder.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the private mount namespace did not come up ({self.holder.poll()})")
            time.sleep(0.01)
        self.enter = ["nsenter", f"--mount=/proc/{self.holder.pid}/ns/mnt", "--"]
        self.env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/root"}

    def run(
        self, argv: Sequence[str], stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.enter, *argv],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=HANG,
            check=False,
        )

    def must(self, argv: Sequence[str], stdin: str | None = None) -> str:
        done = self.run(argv, stdin)
        assert done.returncode == 0, f"{shlex.join(argv)}: {done.stderr}"
        return done.stdout

    def spawn(self, argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            return subprocess.Popen(
                [*self.enter, *argv],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait(timeout=HANG)


@pytest.fixture
def private_root(tmp_path: Path) -> Iterator[PrivateRoot]:
    root = PrivateRoot(tmp_path)
    yield root
    root.close()


@pytest.fixture
def services() -> Iterator[list[subprocess.Popen[bytes]]]:
    running: list[subprocess.Popen[bytes]] = []
    yield running
    for proc in running:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in running:
        try:
            proc.wait(timeout=HANG)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def install(root: PrivateRoot, tmp_path: Path) -> None:
    """README step 1, with this checkout standing in for the venv pip would build."""
    program = tmp_path / "redis-autoheal"
    program.write_text(
        f'#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m redis_autoheal.cli "$@"\n'
    )
    root.must(
        ["install", "-D", "-m", "755", str(program), "/opt/redis-autoheal/bin/redis-autoheal"]
    )
    root.must(["ln", "-s", "/opt/redis-autoheal/bin/redis-autoheal", "/usr/local/bin/"])
    packaging = REPO / "packaging" / "systemd"
    sysusers = packaging / "redis-autoheal.sysusers.conf"
    root.must(["install", "-D", "-m", "644", str(sysusers), "/etc/sysusers.d/redis-autoheal.conf"])
    root.must(["systemd-sysusers"])
    for unit in UNITS:
        root.must(["install", "-m", "644", str(packaging / unit), "/etc/systemd/system/"])


def unit_directives(root: PrivateRoot, unit: str) -> dict[str, str]:
    text = root.must(["cat", f"/etc/systemd/system/{unit}"])
    found: dict[str, str] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, value)
    return found


def start(root: PrivateRoot, unit: str, log: Path) -> subprocess.Popen[bytes]:
    """What systemd does for the unit: its directories (made, or given to User= with all they
    hold, as systemd does when their owner differs), then ExecStart as User= with UMask=."""
    d = unit_directives(root, unit)
    user, group = d["User"], d["Group"]
    for kind, base in (("StateDirectory", "/var/lib"), ("LogsDirectory", "/var/log")):
        if kind in d:
            path = f"{base}/{d[kind]}"
            root.must(["install", "-d", "-m", d.get(f"{kind}Mode", "0755"), path])
            root.must(["chown", "-R", f"{user}:{group}", path])
    argv = shlex.split(d["ExecStart"])
    as_user = ["setpriv", f"--reuid={user}", f"--regid={group}", "--init-groups", "--"]
    with_umask = ["sh", "-c", f'umask {d["UMask"]} && exec "$@"', "sh"]
    return root.spawn([*as_user, *with_umask, *argv], log)


def http(url: str, body: dict[str, Any] | None = None, token: str | None = None) -> tuple[int, str]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=HANG) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_for(what: str, predicate: Callable[[], bool], logs: Sequence[Path] = ()) -> None:
    deadline = time.monotonic() + HANG
    while not predicate():
        if time.monotonic() > deadline:
            tails = "\n".join(f"{p.name}: {p.read_text()[-3000:]}" for p in logs if p.exists())
            pytest.fail(f"{what}: not after {HANG:g}s, a hang\n{tails}")
        time.sleep(0.05)


def answers(url: str) -> bool:
    try:
        return http(url)[0] == 200
    except OSError:
        return False


def alertmanager_notification(target: str) -> dict[str, Any]:
    """A version 4 webhook as Alertmanager sends it for RedisServiceFailed on `target`."""
    labels = {
        "alertname": "RedisServiceFailed",
        "instance": target,
        "remediate": "true",
        "severity": "critical",
    }
    return {
        "version": "4",
        "groupKey": '{}/{remediate="true"}:{alertname="RedisServiceFailed"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "redis-autoheal",
        "groupLabels": {"alertname": "RedisServiceFailed"},
        "commonLabels": labels,
        "commonAnnotations": {"summary": f"{target}: redis-server failed"},
        "externalURL": "http://alertmanager.local:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": f"{target}: redis-server failed"},
                "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.local:9090/graph",
                "fingerprint": "0f3c1e5a7b9d2c4e",
            }
        ],
    }


def audit_events(root: PrivateRoot) -> list[dict[str, Any]]:
    done = root.run(["cat", AUDIT_LOG])
    return [json.loads(line) for line in done.stdout.splitlines()] if done.returncode == 0 else []


def host_fingerprint(host: TestHost) -> str:
    pub = host.layout.host_key.with_suffix(".pub")
    out = subprocess.run(
        ["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True
    )
    return out.stdout.split()[1]


def test_the_readme_path_heals_a_kill_9(tmp_path, test_host, private_root, services):
    root = private_root
    install(root, tmp_path)

    # Step 2: init, as a script does it (the fingerprint read on the host, as the README says).
    exporter, remediator = free_port(), free_port()
    printed = root.must(
        [
            *("redis-autoheal", "init", "--target", f"vm3={test_host.address}"),
            *("--user", "user-123:admin:admin@autobot.local"),
            *("--exporter-listen", f"127.0.0.1:{exporter}"),
            *("--remediator-listen", f"127.0.0.1:{remediator}"),
            *("--accept-host-key", host_fingerprint(test_host)),
        ]
    )
    assert "(secrets owned by redis-autoheal)" in printed

    # Step 3, on the Redis host as root: only init's key and sudoers file from now on.
    test_host.run(["rm", "/etc/sudoers.d/autobot-redis"])
    test_host.layout.authorized_keys.write_text("")
    steps = install_steps(printed)
    for number in (1, 2):
        ran = test_host.run(["bash", "-euc", steps[number]])
        assert ran.returncode == 0, ran.stderr

    # Step 4: check, then start both services from their units.
    checked = root.must(["redis-autoheal", "check-config"])
    assert checked == "/etc/redis-autoheal/config.yml: OK: 1 target(s): vm3\n"
    logs = [tmp_path / f"{unit}.log" for unit in UNITS]
    services.extend(start(root, unit, log) for unit, log in zip(UNITS, logs, strict=True))
    for port in (exporter, remediator):
        wait_for(
            f"a service on {port}",
            functools.partial(answers, f"http://127.0.0.1:{port}/healthz"),
            logs,
        )

    # The exporter, as redis-autoheal, reaches the host with init's key and known_hosts.
    status, body = http(f"http://127.0.0.1:{exporter}/probe?target=vm3&module=systemd")
    assert status == 200
    assert "redis_ssh_up 1.0" in body
    assert 'redis_systemd_unit_state{state="active",unit="redis-server"} 1.0' in body

    # kill -9, and the webhook Alertmanager sends for RedisServiceFailed.
    killed_at = time.time()
    test_host.kill9()
    test_host.wait_state("failed", timeout=HANG)
    token = root.must(["cat", "/etc/redis-autoheal/webhook.token"]).strip()
    status, body = http(
        f"http://127.0.0.1:{remediator}/webhook", alertmanager_notification("vm3"), token
    )
    assert status == 200, body
    assert json.loads(body)["alerts"][0]["disposition"] == "recovery_started"

    def healed() -> bool:
        restarts = [i for i in test_host.invocations(["restart"]) if i.ts > killed_at]
        return (
            bool(restarts)
            and restarts[-1].sudo_user == "autobot"
            and restarts[-1].exit_code == 0
            and test_host.unit_state() == "active"
            and test_host.ping()
        )

    wait_for("the remediator's restart of redis-server", healed, logs)
    # The remediator's decision, in the audit log. (Its "verified" event waits out the hard
    # level's stable_seconds, 60 s by default: the heal itself is what healed() saw.)
    wait_for(
        "the hard recovery in the audit log",
        lambda: any(
            e["event_type"] == "auto_recovery"
            and e["service"] == "vm3"
            and e.get("phase") == "decided"
            and e.get("recovery_level") == "hard"
            and e.get("command") == "sudo -n systemctl restart redis-server"
            for e in audit_events(root)
        ),
        logs,
    )
    # Written by the service user, with the unit's UMask.
    listing = root.must(["stat", "-c", "%U %a", AUDIT_LOG]).split()
    assert listing == [SERVICE_USER, "600"]
