"""Failover time of remediator replicas: the replica recovering Redis SIGKILLed mid-recovery ->
the other replica's first command on the host.

Builds one test host (root: a network namespace with real sshd, sudo and redis-server), a real
3-member etcd cluster on loopback (Debian's `etcd`) and two real remediator processes
(`coordination.backend: etcd`). Each run: Redis killed (-9) and its first restart made to fail,
so the recovery waits `retry_delay_seconds` (longer than the lease) before its next attempt;
both replicas get the alert; once the holder has verified its failed first attempt it is
SIGKILLed, and the clock runs until the host records the next systemctl command, the other
replica's (its takeover's restart). Then the killed replica is started again for the next run.
The README's bound is the lease TTL plus a third of it.

    sudo .venv/bin/python bench/remediator_failover.py [--runs 5] [--lease-ttl 10]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from remediator.audit import read_events  # noqa: E402
from testhost.host import TestHost  # noqa: E402
from tests.etcd_cluster import EtcdCluster  # noqa: E402
from tests.remediator.configs import start_remediator  # noqa: E402
from tests.remediator.hostapp import AUTH, host_config  # noqa: E402
from tests.remediator.notifications import alert, notification  # noqa: E402
from tests.support import HANG, free_port  # noqa: E402

if TYPE_CHECKING:
    import subprocess

    from redis_autoheal.config import Config

RETRY_DELAY = 120  # the holder's wait between attempts: far past any lease


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


async def _until(what: str, check: Any) -> Any:
    """`check()`'s first true value, polled; a hang after HANG seconds."""
    deadline = time.monotonic() + HANG
    while not (value := check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {HANG:g}s")
        await asyncio.sleep(0.02)
    return value


def _events(config: Config, phase: str) -> list[dict[str, Any]]:
    events = read_events(config.audit)
    return [e for e in events if e["event_type"] == "auto_recovery" and e.get("phase") == phase]


class Replicas:
    """Two remediator processes on one etcd cluster; a killed one started again."""

    def __init__(self, configs: list[Config], tmp: Path) -> None:
        self.configs = configs
        self.ports = [free_port() for _ in configs]
        self.logs = [tmp / f"r{i}.log" for i in range(len(configs))]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * len(configs)

    def start(self, i: int) -> None:
        self.procs[i] = start_remediator(self.configs[i], self.ports[i], self.logs[i])

    def kill(self, i: int) -> None:
        proc = self.procs[i]
        assert proc is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(HANG)
        self.procs[i] = None

    def close(self) -> None:
        for i, proc in enumerate(self.procs):
            if proc is not None:
                proc.terminate()
                proc.wait(HANG)
                self.procs[i] = None

    def coordinated(self, i: int) -> bool:
        url = f"http://127.0.0.1:{self.ports[i]}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            return "autoheal_coordination_up 1.0" in r.read().decode()

    async def post_all(self, body: dict[str, Any]) -> list[str]:
        """The notification to every replica (again after a 503, as Alertmanager does)."""

        async def post(http: aiohttp.ClientSession, port: int) -> str:
            while True:
                url = f"http://127.0.0.1:{port}/webhook"
                async with http.post(url, json=body, headers=AUTH) as r:
                    if r.status != 503:
                        assert r.status == 200, await r.text()
                        return str((await r.json())["alerts"][0]["disposition"])
                await asyncio.sleep(0.2)

        async with aiohttp.ClientSession() as http, asyncio.timeout(HANG):
            return list(await asyncio.gather(*(post(http, p) for p in self.ports)))


async def _run(host: TestHost, replicas: Replicas, n: int) -> float:
    """One failover: the seconds from the holder's SIGKILL to the host's next command."""
    host.start_fails()
    host.kill9()
    await asyncio.to_thread(host.wait_state, "failed", 10)
    verified = [len(_events(c, "verified")) for c in replicas.configs]
    answers = await replicas.post_all(notification(alert("vm3", starts_at=_now())))
    assert sorted(answers) == ["duplicate", "recovery_started"], answers
    holder = answers.index("recovery_started")
    other = 1 - holder
    holder_config = replicas.configs[holder]
    await _until(
        "failed first attempt", lambda: len(_events(holder_config, "verified")) > verified[holder]
    )
    host.start_fails(fails=False)
    commands = len(host.invocations())
    finished = len(_events(replicas.configs[other], "finished"))
    killed = time.monotonic()
    replicas.kill(holder)
    first = await _until("takeover command", lambda: host.invocations()[commands:])
    seconds = first[0].mono - killed
    ended = await _until(
        "takeover's end", lambda: _events(replicas.configs[other], "finished")[finished:]
    )
    assert ended[0]["result"]["outcome"] == "recovered", ended
    assert host.ping()
    print(f"run {n + 1}: replica {holder} killed, replica {other}'s first command {seconds:.2f}s")
    replicas.start(holder)
    await _until("the restarted replica's lease", lambda: replicas.coordinated(holder))
    return seconds


async def _runs(host: TestHost, replicas: Replicas, runs: int) -> list[float]:
    for i in range(len(replicas.configs)):
        replicas.start(i)
    for i in range(len(replicas.configs)):
        await _until("a lease", lambda i=i: replicas.coordinated(i))
    return [await _run(host, replicas, n) for n in range(runs)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lease-ttl", type=int, default=10, help="lease_ttl_seconds")
    args = parser.parse_args()
    host = TestHost.build()
    try:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            (tmp / "etcd").mkdir()
            cluster = EtcdCluster(tmp / "etcd")
            cluster.start()
            coordination = {
                "backend": "etcd",
                "etcd": {"endpoints": cluster.endpoints, "lease_ttl_seconds": args.lease_ttl},
            }
            configs = []
            for i in range(2):
                (tmp / f"r{i}").mkdir()
                configs.append(
                    host_config(
                        tmp / f"r{i}",
                        {"vm3": host},
                        coordination=coordination,
                        auto_recovery={"retry_delay_seconds": RETRY_DELAY},
                        circuit_breaker={"max_recoveries": 100},
                    )
                )
            replicas = Replicas(configs, tmp)
            try:
                seconds = asyncio.run(_runs(host, replicas, args.runs))
            finally:
                replicas.close()
                cluster.close()
    finally:
        host.teardown()
    print(
        f"failover (holder SIGKILLed -> the other's first command) over {len(seconds)} runs, "
        f"lease_ttl_seconds {args.lease_ttl}: p50 {statistics.median(seconds):.2f}s, "
        f"max {max(seconds):.2f}s (bound: {args.lease_ttl * 4 / 3:.1f}s)"
    )
    return 0 if max(seconds) <= args.lease_ttl * 4 / 3 + 1 else 1


if __name__ == "__main__":
    sys.exit(main())
