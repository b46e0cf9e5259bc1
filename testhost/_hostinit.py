"""The init process of a test host: prepares its private mount namespace, runs sshd, reaps.

The builder copies this file into the host's work directory with the path of its JSON config
baked in, and starts it inside the host's network namespace under
``unshare --mount --propagation private``. It

* bind-mounts the host's copies of /etc/passwd, /etc/group, /etc/shadow, /etc/sudoers.d and the
  systemctl/journalctl stand-ins over the real ones (only inside that mount namespace) and puts a
  fresh tmpfs on /run (sshd's privilege separation directory lives there);
* starts sshd and the boot-time start of the unit;
* is the child subreaper of everything in the host, like PID 1, so the double-forked unit
  supervisors are reaped even when the machine's PID 1 does not reap orphans;
* runs commands for the harness, as root inside the host, over a root-only unix socket;
* on SIGTERM kills every process in the host's network namespace, reaps them, and exits.

Debian's /usr/bin/python3 runs it; it uses the standard library only.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BAKED_CONFIG = ""

PR_SET_CHILD_SUBREAPER = 36
MS_BIND = 4096
SHUTDOWN_SECONDS = 3.0
REQUEST_READ_SECONDS = 5.0

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def become_subreaper() -> None:
    """Adopt orphaned descendants (the double-forked supervisors), as PID 1 would."""
    _check(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    """mount(2) through libc."""
    result = _libc.mount(
        source.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    _check(result, f"mount {source} on {target}")


def prepare_mounts(config: dict[str, Any]) -> None:
    """The host's private view of /run and /etc (only inside its mount namespace)."""
    mount("tmpfs", "/run", "tmpfs", 0, "mode=0755,size=16m")
    for path in config["run_dirs"]:
        Path(path).mkdir(mode=0o755, parents=True, exist_ok=True)
    bind_files(config["binds"], Path(config["overlays"]))


def bind_files(binds: list[list[str]], overlays: Path) -> None:
    """Bind each source (a file or a directory) over its target; a missing target (no systemd
    package installed) is first created in an overlay of its directory, so the real directory
    is never written."""
    overlaid: set[Path] = set()
    for source, target in binds:
        path = Path(target)
        if not path.exists():
            if path.parent not in overlaid:
                overlay(path.parent, overlays / str(len(overlaid)))
                overlaid.add(path.parent)
            if Path(source).is_dir():
                path.mkdir(mode=0o755)
            else:
                path.touch(mode=0o755)
        mount(source, target, None, MS_BIND, None)


def overlay(directory: Path, base: Path) -> None:
    """Make directory writable inside this mount namespace: an overlay with upper in base
    (on a tmpfs: an overlay's upper layer cannot live on an overlayfs, as in containers)."""
    upper, work = base / "upper", base / "work"
    upper.mkdir(parents=True)
    work.mkdir()
    options = f"lowerdir={directory},upperdir={upper},workdir={work}"
    mount("overlay", str(directory), "overlay", 0, options)


def netns_inode(pid: int | str) -> int | None:
    """The inode of a process's network namespace, or None if it is gone (or a zombie)."""
    try:
        return Path(f"/proc/{pid}/ns/net").stat().st_ino
    except OSError:
        return None


def processes_in_my_netns() -> list[int]:
    """Every live process in this host's network namespace except this one."""
    mine, me = netns_inode("self"), os.getpid()
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    return [pid for pid in pids if pid != me and netns_inode(pid) == mine]


def reap() -> None:
    """Collect every child that has exited (including adopted orphans)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def shutdown() -> None:
    """Kill everything in the host and reap it (bounded)."""
    deadline = time.monotonic() + SHUTDOWN_SECONDS
    while time.monotonic() < deadline:
        victims = processes_in_my_netns()
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        reap()
        if not victims:
            return
        time.sleep(0.01)


def run_request(conn: socket.socket) -> None:
    """Run one command for the harness (in a forked child) and send back its result."""
    conn.settimeout(REQUEST_READ_SECONDS)
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    request = json.loads(data)
    timeout = float(request.get("timeout", 30.0))
    try:
        done = subprocess.run(
            request["argv"],
            input=request.get("input"),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            start_new_session=True,
        )
        reply = {"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr}
    except subprocess.TimeoutExpired as exc:
        reply = {"rc": -9, "stdout": str(exc.stdout or ""), "stderr": f"timed out after {timeout}s"}
    except OSError as exc:
        reply = {"rc": 127, "stdout": "", "stderr": str(exc)}
    conn.settimeout(timeout + 5)
    conn.sendall(json.dumps(reply).encode() + b"\n")


def accept(listener: socket.socket) -> None:
    conn, _ = listener.accept()
    pid = os.fork()
    if pid:
        conn.close()
        return
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        listener.close()
        run_request(conn)
    except BaseException as exc:  # noqa: BLE001 - a child must never unwind into the loop
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps({"rc": 125, "stdout": "", "stderr": repr(exc)}).encode())
    finally:
        os._exit(0)


def serve(listener: socket.socket) -> None:
    """Accept harness requests and reap children until SIGTERM."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    stopping: list[int] = []
    signal.signal(signal.SIGCHLD, lambda _s, _f: None)
    signal.signal(signal.SIGTERM, lambda s, _f: stopping.append(s))
    signal.signal(signal.SIGINT, lambda s, _f: stopping.append(s))
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    while not stopping:
        for key, _ in selector.select(timeout=5.0):
            if key.fileobj is listener:
                accept(listener)
            else:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
        reap()


def spawn(argv: list[str], log: Path) -> int:
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    return proc.pid


def main() -> int:
    config = json.loads(Path(BAKED_CONFIG).read_text())
    become_subreaper()
    prepare_mounts(config)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock_path = Path(config["socket"])
    sock_path.unlink(missing_ok=True)
    listener.bind(str(sock_path))
    sock_path.chmod(0o600)
    listener.listen(16)
    log = Path(config["log"])
    sshd = spawn(config["sshd"], log)
    if config.get("boot"):
        spawn(config["boot"], log)
    Path(config["ready"]).write_text(json.dumps({"hostinit": os.getpid(), "sshd": sshd}))
    try:
        serve(listener)
    finally:
        shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
