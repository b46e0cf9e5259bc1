"""A real etcd cluster on loopback for the tests: Debian's `etcd` binary, 3 members by default,
each on its own client and peer ports, with short election timings; members can be stopped,
killed and started again (with their data) to take quorum away and give it back.

With `apart`, member 0 runs in a network namespace of its own (a test host index, so a crashed
run's namespace and member are reclaimed like a test host's) and can be cut off from its peers
while it keeps running and serving clients: a partition, not a member down."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

from testhost import alloc, netns
from testhost.host import destroy_index
from tests.support import HANG, free_port, require_binary

if TYPE_CHECKING:
    from pathlib import Path

# Frames sent to this MAC (locally administered, nobody's) are dropped by the other end of the
# veth: packets vanish, so connections time out as across a real partition.
NOBODY_MAC = "02:00:00:00:e7:cd"


class EtcdCluster:
    """`size` members under `workdir`; `start()` them, `close()` at the end. With `apart`,
    member 0 can be `cut()` off from the others and `rejoin()` them."""

    def __init__(self, workdir: Path, size: int = 3, *, apart: bool = False) -> None:
        self.binary = require_binary("etcd")
        self.workdir = workdir
        self.names = [f"m{i}" for i in range(size)]
        self.client_ports = [free_port() for _ in self.names]
        self.peer_ports = [free_port() for _ in self.names]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * size
        self.client_hosts = ["127.0.0.1"] * size
        self.peer_hosts = ["127.0.0.1"] * size
        self.net: netns.Net | None = None
        if apart:
            self._set_apart()

    def _set_apart(self) -> None:
        """Member 0 in its own namespace, on a veth pair: clients reach it at the namespace's
        address, peers talk over a second address on each side, so that dropping the second
        pair's packets cuts member 0 from its peers and from nothing else."""
        self.net = netns.Net(alloc.allocate(os.getpid(), reclaim=destroy_index))
        try:
            netns.create(self.net)
            # the link's /24 (198.18.N.0) holds them: .1 root side, .2 the namespace's
            root, apart = (self.net.root_address[:-1] + "3", self.net.address[:-1] + "4")
            netns.ip("addr", "add", f"{root}/24", "dev", self.net.veth_root)
            netns.ip("-n", self.net.name, "addr", "add", f"{apart}/24", "dev", self.net.veth_host)
        except BaseException:
            self._remove_net()
            raise
        self.client_hosts[0] = self.net.address
        self.peer_hosts = [apart] + [root] * (len(self.names) - 1)

    @property
    def endpoints(self) -> list[str]:
        return [
            f"http://{h}:{p}" for h, p in zip(self.client_hosts, self.client_ports, strict=True)
        ]

    def _peer_url(self, i: int) -> str:
        return f"http://{self.peer_hosts[i]}:{self.peer_ports[i]}"

    def _argv(self, i: int) -> list[str]:
        peers = ",".join(f"{n}={self._peer_url(j)}" for j, n in enumerate(self.names))
        client, peer = self.endpoints[i], self._peer_url(i)
        inside = ["nsenter", f"--net={self.net.ns_path}", "--"] if self.net and i == 0 else []
        return [
            *inside,
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

    def cut(self) -> None:
        """Cut member 0 (`apart`) from its peers, both ways, and wait until it is seen: member 0
        answers its clients that it is unhealthy (no leader), the others elect one."""
        net = self._apart()
        root, apart = self.peer_hosts[1], self.peer_hosts[0]
        nobody = ("lladdr", NOBODY_MAC, "nud", "permanent")
        netns.ip("neigh", "replace", apart, *nobody, "dev", net.veth_root)
        netns.ip("-n", net.name, "neigh", "replace", root, *nobody, "dev", net.veth_host)
        deadline = time.monotonic() + HANG
        while self.health(0) != "false":
            if time.monotonic() > deadline:
                raise RuntimeError(f"etcd m0 still says {self.health(0)} after the cut")
            time.sleep(0.1)
        self.wait_healthy(*range(1, len(self.names)))

    def rejoin(self) -> None:
        """Undo `cut()` and wait until every running member is healthy again."""
        net = self._apart()
        root, apart = self.peer_hosts[1], self.peer_hosts[0]
        netns.ip("neigh", "del", apart, "dev", net.veth_root, check=False)
        netns.ip("-n", net.name, "neigh", "del", root, "dev", net.veth_host, check=False)
        self.wait_healthy()

    def _apart(self) -> netns.Net:
        if self.net is None:
            raise RuntimeError("only a cluster started with apart=True has a member to cut off")
        return self.net

    def health(self, i: int) -> str | None:
        """What the member's /health says ("true": it sees a leader and reads through it), or
        None if it does not answer."""
        url = f"{self.endpoints[i]}/health"
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                body = r.read()
        except urllib.error.HTTPError as e:  # 503 with a body, when unhealthy
            body = e.read()
        except OSError:
            return None
        with contextlib.suppress(ValueError, AttributeError):
            return str(json.loads(body).get("health"))
        return None

    def healthy(self, i: int) -> bool:
        """The member answers and sees a leader (etcd's /health)."""
        return self.health(i) == "true"

    def wait_healthy(self, *members: int) -> None:
        """Until the members (all running ones by default) are healthy."""
        deadline = time.monotonic() + HANG
        running = [i for i in members or range(len(self.names)) if self.procs[i] is not None]
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
        """Kill every member; with `apart`, remove the cut and the namespace too."""
        try:
            for i, proc in enumerate(self.procs):
                if proc is not None:
                    proc.kill()
                    proc.wait(HANG)
                    self.procs[i] = None
        finally:
            self._remove_net()

    def _remove_net(self) -> None:
        """The namespace (its neighbour entries with it), the veth pair, the index; if anything
        is left, the index stays recorded and a later allocation reclaims it."""
        if self.net is None:
            return
        net, self.net = self.net, None
        with contextlib.suppress(netns.NetError):
            netns.destroy(net)
        if not net.exists():
            with alloc.machine_lock():
                alloc.release(net.index)
