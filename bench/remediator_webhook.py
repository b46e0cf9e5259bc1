"""Webhook answer latency under a burst, and alerts lost (must be 0).

Starts the real `redis-autoheal remediator` process on loopback, then sends notifications of
ALERTS_PER_NOTIFICATION alerts at RATE alerts/s for DURATION seconds (at most IN_FLIGHT requests
open at once, so the load is bounded even if the server falls behind), and reports the answer
latency p50/p99 and the alerts that did not end up in the audit log. None of the alerts can run
anything: their targets have no ssh section or are unknown, so this measures the webhook path
itself (validation, dedup, the fsync'd audit write, the answer).

    .venv/bin/python bench/remediator_webhook.py [--rate 2000] [--duration 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from redis_autoheal.config import load_config  # noqa: E402
from remediator.audit import read_events  # noqa: E402

TOKEN = "bench-token"
ALERTS_PER_NOTIFICATION = 10
IN_FLIGHT = 64


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp: Path) -> Path:
    (tmp / "token").write_text(TOKEN)
    (tmp / "token").chmod(0o600)  # the remediator refuses a token others can read
    data = {
        "targets": [{"name": "redis"}, {"name": "cache"}],
        "remediator": {"webhook_token_file": str(tmp / "token"), "state_dir": str(tmp / "state")},
        "audit": {"path": str(tmp / "audit" / "audit.log")},
    }
    path = tmp / "config.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def _notification(n: int) -> bytes:
    alerts = []
    for i in range(ALERTS_PER_NOTIFICATION):
        k = n * ALERTS_PER_NOTIFICATION + i
        target = ("redis", "cache", "elsewhere")[k % 3]
        alerts.append(
            {
                "status": "firing",
                "labels": {"alertname": "RedisDown", "instance": target, "remediate": "true"},
                "annotations": {"summary": "Redis is down"},
                "startsAt": "2025-10-10T14:30:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": f"{k:016x}",
            }
        )
    body = {
        "version": "4",
        "groupKey": "{}:{}",
        "status": "firing",
        "receiver": "bench",
        "alerts": alerts,
    }
    return json.dumps(body).encode()


async def _burst(base: str, rate: float, duration: float) -> tuple[list[float], int, int]:
    count = int(rate * duration / ALERTS_PER_NOTIFICATION)
    interval = ALERTS_PER_NOTIFICATION / rate
    latencies: list[float] = []
    failures = 0
    slots = asyncio.Semaphore(IN_FLIGHT)
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def one(n: int) -> None:
            nonlocal failures
            body = _notification(n)
            try:
                started = time.perf_counter()
                async with session.post(f"{base}/webhook", data=body, headers=headers) as r:
                    await r.read()
                    if r.status != 200:
                        failures += 1
                        return
                latencies.append(time.perf_counter() - started)
            finally:
                slots.release()

        tasks = []
        began = time.perf_counter()
        deadline = began + duration * 3  # bounded in time too, whatever the server does
        for n in range(count):
            await slots.acquire()
            tasks.append(asyncio.create_task(one(n)))
            pause = began + (n + 1) * interval - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            if time.perf_counter() > deadline:
                break
        await asyncio.gather(*tasks)
        sent = len(tasks)
    return latencies, failures, sent


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000, help="alerts per second")
    parser.add_argument("--duration", type=float, default=10, help="seconds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        config_path = _config(tmp)
        port = _port()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "remediator",
                "--config",
                str(config_path),
                "--listen",
                f"127.0.0.1:{port}",
                "--log-level",
                "warning",
            ],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    time.sleep(0.1)
            started = time.perf_counter()
            latencies, failures, sent = asyncio.run(_burst(base, args.rate, args.duration))
            elapsed = time.perf_counter() - started
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        events = read_events(load_config(config_path).audit)
        audited = {
            a["fingerprint"] for e in events if e["event_type"] == "webhook" for a in e["alerts"]
        }
        expected = {f"{k:016x}" for k in range(sent * ALERTS_PER_NOTIFICATION)}
        lost = len(expected - audited)
    alerts = sent * ALERTS_PER_NOTIFICATION
    print(
        f"sent {alerts} alerts in {sent} notifications over {elapsed:.1f}s "
        f"({alerts / elapsed:.0f} alerts/s, {ALERTS_PER_NOTIFICATION} per notification)"
    )
    print(
        f"answer latency: p50 {_percentile(latencies, 50) * 1000:.1f} ms, "
        f"p99 {_percentile(latencies, 99) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms"
    )
    print(f"non-200 answers: {failures}; alerts lost (not in the audit log): {lost}")
    return 0 if lost == 0 and failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
