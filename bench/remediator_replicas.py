"""Webhook answer latency, and webhook -> verified PONG, with `coordination.backend: local`
beside `etcd` (a real 3-member etcd cluster on loopback, Debian's `etcd`), in one run.

Answers: one remediator app per backend on loopback; each notification is a new outage of one
of TARGETS targets, so with etcd every answer includes the claim transaction. The targets' SSH
port is closed: the recoveries fail at once in the background, which is not measured here.

Verified PONG (root: `--pong-runs`, 0 to skip): one test host (a network namespace with real
sshd, sudo and redis-server) and one app per backend, taking turns: kill -9 of Redis, the unit
`failed`, the alert to one app, and the moment it verified PONG (as bench/remediator_recovery.py,
PAUSE apart so the start budget never delays a restart).

    sudo .venv/bin/python bench/remediator_replicas.py [--rounds 4] [--pong-runs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from redis_autoheal.config import load_config  # noqa: E402
from remediator.app import create_app  # noqa: E402
from remediator.keys import DISPATCHER  # noqa: E402
from testhost.host import TestHost  # noqa: E402
from tests.etcd_cluster import EtcdCluster  # noqa: E402
from tests.support import free_port  # noqa: E402

TOKEN = "bench-token"
TARGETS = 50
PAUSE = 4.0


def _config(tmp: Path, coordination: dict[str, Any]) -> Path:
    tmp.mkdir()
    for name, text in (("token", TOKEN), ("key", "unused\n"), ("known_hosts", "")):
        (tmp / name).write_text(text)
        (tmp / name).chmod(0o600)
    ssh = {"host": "127.0.0.1", "port": free_port(), "key_file": str(tmp / "key")}
    ssh["known_hosts"] = str(tmp / "known_hosts")
    data = {
        "targets": [{"name": f"t{i}", "ssh": ssh} for i in range(TARGETS)],
        "auto_recovery": {"max_attempts": 1, "retry_delay_seconds": 0},
        "circuit_breaker": {"max_recoveries": 100},
        "remediator": {"webhook_token_file": str(tmp / "token"), "state_dir": str(tmp / "state")},
        "audit": {"path": str(tmp / "audit" / "audit.log")},
        "coordination": coordination,
    }
    path = tmp / "config.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def _notification(target: str) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    labels = {"alertname": "RedisDown", "instance": target, "remediate": "true"}
    alert = {
        "status": "firing",
        "labels": labels,
        "annotations": {},
        "startsAt": now,
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": f"{time.time_ns():016x}",
    }
    return {
        "version": "4",
        "groupKey": "g",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "remediator",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am",
        "alerts": [alert],
    }


async def _measure(config: Path, rounds: int) -> list[float]:
    app = create_app(load_config(config))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.sleep(1)  # the etcd lease granted
    seconds = []
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(rounds):
                for i in range(TARGETS):
                    began = time.perf_counter()
                    url = f"http://127.0.0.1:{port}/webhook"
                    async with http.post(url, json=_notification(f"t{i}"), headers=headers) as r:
                        body = await r.json()
                    seconds.append(time.perf_counter() - began)
                    assert r.status == 200, body
                    assert body["alerts"][0]["disposition"] == "recovery_started", body
                await asyncio.sleep(1)  # the round's recoveries end, their targets freed
    finally:
        await runner.cleanup()
    return seconds


def _host_config(tmp: Path, host: TestHost, coordination: dict[str, Any]) -> Path:
    """bench/remediator_recovery.py's config, on `coordination`."""
    tmp.mkdir()
    (tmp / "token").write_text(TOKEN)
    (tmp / "token").chmod(0o600)
    data = {
        "targets": [host.target("vm3")],
        "auto_recovery": {"stable_seconds": 0},
        "circuit_breaker": {"max_recoveries": 100},
        "remediator": {"webhook_token_file": str(tmp / "token"), "state_dir": str(tmp / "state")},
        "audit": {"path": str(tmp / "audit.log")},
        "coordination": coordination,
    }
    (tmp / "config.yml").write_text(yaml.safe_dump(data))
    return tmp / "config.yml"


async def _pong(host: TestHost, configs: dict[str, Path], runs: int) -> dict[str, list[float]]:
    """Seconds from the webhook to the verified PONG, per backend, the backends taking turns."""
    apps, runners, ports = {}, [], {}
    for name, config in configs.items():
        apps[name] = create_app(load_config(config))
        runner = web.AppRunner(apps[name])
        await runner.setup()
        runners.append(runner)
        ports[name] = free_port()
        await web.TCPSite(runner, "127.0.0.1", ports[name]).start()
    await asyncio.sleep(1)  # the etcd lease granted
    seconds: dict[str, list[float]] = {name: [] for name in configs}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(runs):
                for name, app in apps.items():
                    host.kill9()
                    await asyncio.to_thread(host.wait_state, "failed", 10)
                    url = f"http://127.0.0.1:{ports[name]}/webhook"
                    began = time.monotonic()
                    async with http.post(url, json=_notification("vm3"), headers=headers) as r:
                        body = await r.json()
                    assert body["alerts"][0]["disposition"] == "recovery_started", body
                    await app[DISPATCHER].wait_idle()
                    report = app[DISPATCHER].history("vm3")[-1]
                    assert report.outcome == "recovered", report.reason
                    assert report.pong_after_seconds is not None
                    seconds[name].append(
                        report.started_monotonic + report.pong_after_seconds - began
                    )
                    await asyncio.sleep(PAUSE)
    finally:
        for runner in runners:
            await runner.cleanup()
    return seconds


def _pong_line(name: str, seconds: list[float]) -> str:
    return (
        f"{name:6} webhook -> verified PONG over {len(seconds)} runs: "
        f"p50 {statistics.median(seconds):.3f}s, max {max(seconds):.3f}s"
    )


def _line(name: str, seconds: list[float]) -> str:
    q = statistics.quantiles(seconds, n=100)
    return f"{name:6} {len(seconds)} answers: p50 {q[49] * 1e3:.1f} ms, p99 {q[98] * 1e3:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--pong-runs", type=int, default=10, help="per backend; 0: skip")
    args = parser.parse_args()
    pong: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "etcd").mkdir()
        cluster = EtcdCluster(tmp / "etcd")
        cluster.start()
        try:
            local = asyncio.run(_measure(_config(tmp / "local", {"backend": "local"}), args.rounds))
            etcd = {"backend": "etcd", "etcd": {"endpoints": cluster.endpoints}}
            shared = asyncio.run(_measure(_config(tmp / "etcd-r", etcd), args.rounds))
            if args.pong_runs:
                host = TestHost.build()
                try:
                    configs = {
                        "local": _host_config(tmp / "pong-local", host, {"backend": "local"}),
                        "etcd": _host_config(tmp / "pong-etcd", host, etcd),
                    }
                    pong = asyncio.run(_pong(host, configs, args.pong_runs))
                finally:
                    host.teardown()
        finally:
            cluster.close()
    print(_line("local", local))
    print(_line("etcd", shared))
    for name, seconds in pong.items():
        print(_pong_line(name, seconds))


if __name__ == "__main__":
    main()
