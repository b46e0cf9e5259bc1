"""Two (or more) real Alertmanagers on loopback, clustered by gossip or with their gossip
blocked, for the tests of remediator replicas: Debian's `prometheus-alertmanager`, each with its
own web and cluster ports and storage, all on one config.

Blocked, each peer is told of a cluster address the test holds but where nothing answers (a
bound, unlistened TCP port and a bound UDP port that reads nothing): each Alertmanager is a
cluster of one that believes its peer is down, as in a partition, and sends every notification
itself.
"""

from __future__ import annotations

import contextlib
import socket
import urllib.request
from typing import TYPE_CHECKING, Any, Self

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.alerts.local_servers import daemon, get_json, post_json, wait_until
from tests.support import HANG, free_port, require_binary

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@contextlib.contextmanager
def dead_address() -> Iterator[str]:
    """HOST:PORT on loopback held (TCP and UDP bound) while the block runs, answering nothing."""
    with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", 0))  # bound, never listening: a connection is refused
        port = tcp.getsockname()[1]
        udp.bind(("127.0.0.1", port))  # bound, never read: a probe is dropped
        yield f"127.0.0.1:{port}"


class AlertmanagerCluster:
    """`size` Alertmanagers on `config` (a dict) under `workdir`; a context manager."""

    def __init__(self, workdir: Path, config: dict[str, Any], *, gossip: bool, size: int = 2):
        self.binary = require_binary("prometheus-alertmanager")
        self.workdir = workdir
        self.gossip = gossip
        self.urls = [f"http://127.0.0.1:{free_port()}" for _ in range(size)]
        self.cluster = [f"127.0.0.1:{free_port()}" for _ in range(size)]
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "alertmanager.yml").write_text(yaml.safe_dump(config))
        self._stack = contextlib.ExitStack()

    def _argv(self, i: int, peers: list[str]) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.workdir / 'alertmanager.yml'}",
            f"--storage.path={self.workdir / f'am{i}'}",
            f"--web.listen-address={self.urls[i].removeprefix('http://')}",
            f"--web.external-url={self.urls[i]}",
            f"--cluster.listen-address={self.cluster[i]}",
            *(f"--cluster.peer={p}" for p in peers),
            # The second peer in the cluster's order waits this long for the first's
            # notification log before it sends itself (default 15s).
            "--cluster.peer-timeout=2s",
            "--cluster.settle-timeout=2s",
            "--log.level=debug",
        ]

    def __enter__(self) -> Self:
        try:
            for i, url in enumerate(self.urls):
                if self.gossip:
                    peers = [a for j, a in enumerate(self.cluster) if j != i]
                else:
                    peers = [self._stack.enter_context(dead_address())]
                argv = self._argv(i, peers)
                self._stack.enter_context(
                    daemon(argv, f"{url}/-/ready", self.workdir / f"am{i}.log")
                )
            wait_until(self._formed, HANG, "the Alertmanagers' cluster to form")
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def peers(self, i: int) -> set[str]:
        """The cluster addresses Alertmanager `i` counts as its peers (itself included)."""
        status = get_json(f"{self.urls[i]}/api/v2/status")["cluster"]
        return {p["address"] for p in status.get("peers", [])}

    def _formed(self) -> bool:
        """Gossiping: every peer sees all; blocked: each sees only itself."""
        for i, own in enumerate(self.cluster):
            expected = set(self.cluster) if self.gossip else {own}
            if self.peers(i) != expected:
                return False
        return True

    def post(self, *alerts: dict[str, Any]) -> None:
        """The alerts to every Alertmanager, as Prometheus sends them to each."""
        for url in self.urls:
            post_json(f"{url}/api/v2/alerts", list(alerts))

    def metric(self, i: int, name: str, **labels: str) -> float:
        """The sum of the samples of `name` (e.g. `alertmanager_notifications_total`) with
        `labels` that Alertmanager `i` exports."""
        with urllib.request.urlopen(f"{self.urls[i]}/metrics", timeout=5) as response:
            text = response.read().decode()
        return sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == name and labels.items() <= s.labels.items()
        )
