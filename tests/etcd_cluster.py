"""A real etcd cluster on loopback for the tests: Debian's `etcd` binary, 3 members by default,
each on its own client and peer ports, with short election timings; members can be stopped,
killed and started again (with their data) to take quorum away and give it back."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.support import HANG, free_port, require_binary


class EtcdCluster:
    """`size` members under `workdir`; `start()` them, `close()` at the end."""

    def __init__(self, workdir: Path, size: int = 3) -> None:
        self.binary = require_binary("etcd")
        self.workdir = workdir
        self.names = [f"m{i}" for i in range(size)]
        self.client_ports = [free_port() for _ in self.names]
        self.peer_ports = [free_port() for _ in self.names]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * size

    @property
    def endpoints(self) -> list[str]:
        return [f"http://127.0.0.1:{p}" for p in self.client_ports]

    def _argv(self, i: int) -> list[str]:
        peers = ",".join(
            f"{n}=http://127.0.0.1:{p}" for n, p in zip(self.names, self.peer_ports, strict=True)
        )
        client, peer = (
            f"http://127.0.0.1:{self.client_ports[i]}",
            f"http://127.0.0.1:{self.peer_ports[i]}",
        )
        return [
            self.binary,
            f"--name={self.names[i]}",
            f"--data-dir={self.workdir / self.names[i]}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster={peers}",
            "--initial-cluster-token=autoheal-tests",
            "--initial-cluster-state=new",
            "--heartbeat-interval=50",
            "--election-timeout=500",
            "--logger=zap",
            "--log-level=error",
        ]

    def start(self, *members: int) -> None:
        """Start the members (all by default), then wait until the cluster has a leader."""
        for i in members or range(len(self.names)):
            if self.procs[i] is None:
                with (self.workdir / f"{self.names[i]}.log").open("ab") as log:
                    self.procs[i] = subprocess.Popen(
                        self._argv(i), stdout=log, stderr=subprocess.STDOUT
                    )
        self.wait_healthy()

    def stop(self, *members: int) -> None:
        for i in members:
            proc = self.procs[i]
            if proc is not None:
                proc.terminate()
                proc.wait(HANG)
                self.procs[i] = None

    def healthy(self, i: int) -> bool:
        """The member answers and sees a leader (etcd's /health)."""
        with contextlib.suppress(OSError, ValueError):
            url = f"{self.endpoints[i]}/health"
            with urllib.request.urlopen(url, timeout=1) as r:
                return bool(json.loads(r.read()).get("health") == "true")
        return False

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + HANG
        running = [i for i, p in enumerate(self.procs) if p is not None]
        while not all(self.healthy(i) for i in running):
            for i in running:
                proc = self.procs[i]
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"etcd {self.names[i]} ended: {self.log(i)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"etcd has no leader after {HANG:g}s: {self.log(0)}")
            time.sleep(0.1)

    def log(self, i: int) -> str:
        return (self.workdir / f"{self.names[i]}.log").read_text(errors="replace")[-2000:]

    def close(self) -> None:
        for i, proc in enumerate(self.procs):
            if proc is not None:
                proc.kill()
                proc.wait(HANG)
                self.procs[i] = None
