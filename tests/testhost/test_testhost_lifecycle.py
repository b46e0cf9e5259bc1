"""Building and tearing down test hosts: nothing left behind, hosts independent, parallel.
(How fast a host is built: bench/testhost_bench.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from testhost import BuildError, HostOptions, TestHost, alloc, procs
from testhost.host import destroy_index

pytestmark = pytest.mark.root  # every test here builds hosts

REPO = Path(__file__).resolve().parents[2]


def footprint(host: TestHost) -> dict[str, object]:
    """What a host owns on the machine, to check afterwards that all of it is gone."""
    status = host.unit_status()
    pids = [host.hostinit_pid, host.sshd_pid(), status.main_pid, status.supervisor_pid]
    return {
        "index": host.index,
        "netns": host.net.name,
        "veth": host.net.veth_root,
        "workdir": str(host.workdir),
        "pids": [p for p in pids if p],
    }


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in cmdline and procs.alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def assert_gone(fp: dict[str, object]) -> None:
    netns_list = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True
    ).stdout
    assert fp["netns"] not in netns_list.split()
    assert not Path(f"/run/netns/{fp['netns']}").exists()
    assert not Path(f"/sys/class/net/{fp['veth']}").exists()
    assert not Path(str(fp["workdir"])).exists()
    assert not (alloc.RUN_DIR / str(fp["index"])).exists()
    pids = fp["pids"]
    assert isinstance(pids, list)
    assert [p for p in pids if procs.alive(p)] == []
    assert processes_mentioning(str(fp["workdir"])) == []


def test_teardown_removes_everything():
    host = TestHost.build()
    host.ssh("sudo -n systemctl restart redis-server")  # leave sessions and a new supervisor
    fp = footprint(host)
    assert len(fp["pids"]) == 4  # type: ignore[arg-type]
    host.teardown()
    assert_gone(fp)
    host.teardown()  # twice is harmless


def test_teardown_after_faults_removes_everything():
    host = TestHost.build()
    host.sigstop()
    host.blackhole()
    host.slow_start(30)
    fp = footprint(host)
    host.teardown()
    assert_gone(fp)


def test_a_failed_test_still_tears_its_host_down(tmp_path):
    record = tmp_path / "footprint.json"
    test_file = tmp_path / "test_failing.py"
    test_file.write_text(
        textwrap.dedent(
            f"""
            import json
            from tests.testhost.test_testhost_lifecycle import footprint

            def test_fails(test_host):
                with open({str(record)!r}, "w") as f:
                    json.dump(footprint(test_host), f)
                raise RuntimeError("the test body failed")
            """
        )
    )
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", str(test_file), "-p", "testhost.pytest_plugin"),
            *("-p", "no:cacheprovider", "--rootdir", str(tmp_path), "-q"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the test body failed" in done.stdout
    assert_gone(json.loads(record.read_text()))


def test_a_build_that_fails_midway_tears_down_what_it_built(monkeypatch):
    seen: list[dict[str, object]] = []
    real_ready = TestHost._ready

    def never_ready(self: TestHost) -> bool:
        if real_ready(self):
            seen.append(footprint(self))
        return False

    monkeypatch.setattr(TestHost, "_ready", never_ready)
    with pytest.raises(BuildError, match=r"not ready after 1\.0s"):
        TestHost.build(HostOptions(ready_timeout=1.0))
    assert seen, "the host never got as far as running"
    assert len(seen[-1]["pids"]) == 4  # type: ignore[arg-type]
    assert_gone(seen[-1])


def test_two_hosts_are_independent(test_host_factory):
    a, b = test_host_factory(), test_host_factory(hostname="vm4")
    assert a.address != b.address
    assert a.net.name != b.net.name
    a.kill9()
    a.wait_state("failed")
    assert b.unit_state() == "active"
    assert b.ping()
    assert a.ssh("systemctl is-active redis-server").stdout == "failed\n"
    assert b.ssh("systemctl is-active redis-server").stdout == "active\n"
    # Each host's journal is its own: every line of b's is vm4's.
    journal = b.journal()
    assert any(" vm4 systemd[1]: " in line for line in journal)
    assert all(" vm4 " in line for line in journal), journal
    # Each host trusts only its own client key and presents its own host key.
    with_bs_key = [str(b.key_file) if arg == str(a.key_file) else arg for arg in a.ssh_argv("true")]
    crossed = subprocess.run(
        with_bs_key,
        capture_output=True,
        text=True,
        check=False,
    )
    assert crossed.returncode == 255
    assert a.known_hosts.read_text().split()[2] != b.known_hosts.read_text().split()[2]


BUILD_AND_WAIT = """
import sys, time
from testhost import TestHost
host = TestHost.build()
print(host.index, host.address, flush=True)
sys.stdin.readline()
host.teardown()
"""


def test_several_processes_build_hosts_at_once():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", BUILD_AND_WAIT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(4)
    ]
    try:
        assert all(w.stdout is not None for w in workers)
        lines = [w.stdout.readline().split() for w in workers]  # type: ignore[union-attr]
        assert len({index for index, _ in lines}) == 4
        assert all(len(line) == 2 for line in lines)
    finally:
        for w in workers:
            w.communicate("\n", timeout=60)
    assert [w.returncode for w in workers] == [0] * 4


def test_a_dead_owners_host_is_reclaimed():
    worker = subprocess.Popen(
        [sys.executable, "-c", BUILD_AND_WAIT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert worker.stdout is not None
    index = int(worker.stdout.readline().split()[0])
    host = TestHost.load(alloc.read_workdir(index)[0])  # type: ignore[index]
    fp = footprint(host)
    worker.send_signal(signal.SIGKILL)
    worker.communicate(timeout=10)
    assert index in alloc.collect_garbage(destroy_index)
    assert_gone(fp)


def _testhost_cli(command: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    """`python -m testhost COMMAND --dir WORKDIR`, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "testhost", command, "--dir", str(workdir)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
        check=False,
    )


def test_cli_up_leaves_a_host_running_and_down_removes_it():
    parent = Path(tempfile.mkdtemp(prefix="testhost-cli-"))
    parent.chmod(0o755)
    workdir = parent / "demo"
    up = _testhost_cli("up", workdir)
    assert up.returncode == 0, up.stderr
    described = json.loads(up.stdout)
    host = TestHost.load(workdir)
    fp = footprint(host)
    try:
        assert described["address"] == host.address
        assert described["target"]["ssh"]["known_hosts"] == str(host.known_hosts)
        assert host.ping()
        assert host.ssh("systemctl is-active redis-server").stdout == "active\n"
        assert alloc.owner_alive(host.index)  # the host's init owns it now
        assert host.index not in alloc.collect_garbage(destroy_index)
    finally:
        down = _testhost_cli("down", workdir)
    assert down.returncode == 0, down.stderr
    assert_gone(fp)
    parent.rmdir()


OVERLAY_PROBE = """
import json, sys
from pathlib import Path
from testhost import _hostinit
base = Path(sys.argv[1])
_hostinit.mount("tmpfs", str(base / "scratch"), "tmpfs", 0, "mode=0755")
binds = [[str(base / "src"), str(base / "dir" / name)] for name in ("missing", "present")]
_hostinit.bind_files(binds, base / "scratch" / "overlays")
print(json.dumps({p.name: p.read_text() for p in (base / "dir").iterdir()}))
"""


def test_a_missing_mount_target_is_made_in_an_overlay_seen_only_inside(tmp_path):
    """Without Debian's systemd package there is no /usr/bin/systemctl to bind over."""
    (tmp_path / "dir").mkdir()
    (tmp_path / "scratch").mkdir()
    (tmp_path / "src").write_text("stand-in\n")
    (tmp_path / "dir" / "present").write_text("real\n")
    done = subprocess.run(
        [
            *("unshare", "--mount", "--propagation", "private"),
            *(sys.executable, "-c", OVERLAY_PROBE, str(tmp_path)),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"missing": "stand-in\n", "present": "stand-in\n"}
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == ["present"]
    assert (tmp_path / "dir" / "present").read_text() == "real\n"
