"""1000 followed units from one exporter process: memory, CPU, detection and reconnect at scale.

    .venv/bin/python bench/follow_scale.py [--units 1000] [--idle 60]

This process runs exporter/follow.py's Followers, exactly as the exporter does, for `--units`
targets, each on an SSH host of its own (a distinct user: a connection each). A second
process plays every host and Alertmanager on 127.0.0.1: an asyncssh server that answers
`sudo -n journalctl -u UNIT -f ...` with a stream and `systemctl is-active UNIT` with the
unit's state, and an HTTP endpoint taking POST /api/v2/alerts. The figures are this process's
alone:
- memory: resident set before the followers start and once every stream is up;
- CPU while idle: over `--idle` seconds with every unit followed (resends off);
- every unit stopped at once: time until Alertmanager holds all the firing alerts, CPU used;
- every SSH connection dropped at once: time until every stream is up again and reconciled
  (one read each: a unit stopped while its stream was down is reported).
Nothing leaves loopback. Bounded: every wait has a limit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import asyncssh
import yaml
from aiohttp import web
from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exporter.follow import Followers  # noqa: E402
from redis_autoheal.config import load_config  # noqa: E402
from redis_autoheal.sshpool import SshPool  # noqa: E402
from tests.support import free_port  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable

RULES = ROOT / "alerts" / "rules" / "redis-autoheal.rules.yml"
WAIT_LIMIT = 300.0


# --- the other process: every host, and Alertmanager ------------------------------------------


async def _ready(_: web.Request) -> web.Response:
    """Alertmanager's GET /-/ready, which the followers ask while they have nothing to push."""
    return web.Response(text="OK")


class Hosts:
    """The units' states, the open journal streams, Alertmanager's view of the alerts."""

    def __init__(self) -> None:
        self.states: dict[str, str] = {}
        self.streams: dict[asyncssh.SSHServerConnection, set[asyncio.Queue[str]]] = {}
        self.alerts: dict[tuple[str, str], bool] = {}  # (alertname, instance) -> firing
        self.connections: set[asyncssh.SSHServerConnection] = set()

    def entry(self, user: str, message: str) -> str:
        fields = {"UNIT": "redis-server.service", "_PID": "1", "MESSAGE": message, "USER": user}
        return json.dumps(fields) + "\n"

    async def process(self, process: asyncssh.SSHServerProcess[str]) -> None:
        conn = process.get_extra_info("connection")
        user = process.get_extra_info("username")
        words = (process.command or "").split()
        if "is-active" in words:
            state = self.states.get(user, "active")
            process.stdout.write(state + "\n")
            process.exit(0 if state == "active" else 3)
            return
        if "journalctl" not in words:
            process.exit(1)
            return
        queue: asyncio.Queue[str] = asyncio.Queue()
        self.streams.setdefault(conn, set()).add(queue)
        try:
            process.stdout.write(self.entry(user, "Started Redis."))
            while True:
                line = await queue.get()
                process.stdout.write(line.replace("USER", user))
        except (OSError, asyncssh.Error):
            pass
        finally:
            self.streams.get(conn, set()).discard(queue)

    def set_all(self, state: str, message: str | None) -> None:
        """Every unit to `state`, with a journal line on every stream unless `message` is None."""
        for user in self.states:
            self.states[user] = state
        if message is None:
            return
        for queues in self.streams.values():
            for queue in queues:
                queue.put_nowait(self.entry("USER", message))

    async def http(self, port: int) -> web.AppRunner:
        async def alerts(request: web.Request) -> web.Response:
            now = time.time()
            for a in await request.json():
                ends = datetime.fromisoformat(a["endsAt"]).timestamp()
                self.alerts[a["labels"]["alertname"], a["labels"]["instance"]] = ends > now
            return web.json_response({})

        async def control(request: web.Request) -> web.Response:
            action = request.match_info["action"]
            if action == "stop-all":
                self.set_all("inactive", "Stopped Redis.")
            elif action == "start-all":
                self.set_all("active", "Started Redis.")
            elif action == "stop-quietly":  # no journal line: only a reconcile can tell
                self.set_all("inactive", None)
            elif action == "drop":
                for conn in list(self.connections):
                    conn.abort()
            return web.json_response({})

        async def stats(_: web.Request) -> web.Response:
            firing = sum(1 for up in self.alerts.values() if up)
            streams = sum(len(q) for q in self.streams.values())
            return web.json_response({"firing": firing, "streams": streams})

        app = web.Application()
        app.router.add_post("/api/v2/alerts", alerts)
        app.router.add_post("/control/{action}", control)
        app.router.add_get("/stats", stats)
        app.router.add_get("/-/ready", _ready)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner


async def serve(units: int, ssh_port: int, http_port: int, keys: Path) -> None:
    hosts = Hosts()
    hosts.states = {f"u{i}": "active" for i in range(units)}

    class Server(asyncssh.SSHServer):
        def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
            self.conn = conn
            hosts.connections.add(conn)

        def connection_lost(self, _exc: Exception | None) -> None:
            hosts.connections.discard(self.conn)
            hosts.streams.pop(self.conn, None)

    await hosts.http(http_port)
    await asyncssh.listen(
        "127.0.0.1",
        ssh_port,
        server_factory=Server,
        server_host_keys=[str(keys / "host_key")],
        authorized_client_keys=str(keys / "client_key.pub"),
        process_factory=hosts.process,
        encoding="utf-8",
        backlog=2048,
    )
    await asyncio.Event().wait()


# --- this process: the followers under test --------------------------------------------------


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def write_config(directory: Path, units: int, ssh_port: int, http_port: int) -> Path:
    known = directory / "known_hosts"
    host_key = asyncssh.read_public_key(str(directory / "host_key.pub"))
    known.write_text(f"[127.0.0.1]:{ssh_port} {host_key.export_public_key().decode()}")
    targets = [
        {
            "name": f"t{i}",
            "ssh": {
                "host": "127.0.0.1",
                "port": ssh_port,
                "user": f"u{i}",
                "key_file": str(directory / "client_key"),
                "known_hosts": str(known),
            },
        }
        for i in range(units)
    ]
    follow = {
        "alertmanager_urls": [f"http://127.0.0.1:{http_port}"],
        "rules_file": str(RULES),
        "resend_seconds": 3600,
    }
    path = directory / "config.yml"
    path.write_text(yaml.safe_dump({"targets": targets, "exporter": {"follow": follow}}))
    return path


async def until(what: str, check: object, limit: float = WAIT_LIMIT) -> float:
    """Seconds until `check()` (awaitable bool) holds; raises after `limit`."""
    started = time.monotonic()
    while not await check():  # type: ignore[operator]
        if time.monotonic() - started > limit:
            raise TimeoutError(f"{what}: not within {limit:g}s")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def measure(args: argparse.Namespace, directory: Path, ssh_port: int, http_port: int) -> None:
    config = load_config(write_config(directory, args.units, ssh_port, http_port))
    base = f"http://127.0.0.1:{http_port}"
    async with aiohttp.ClientSession() as http:

        async def stats() -> dict[str, int]:
            async with http.get(f"{base}/stats") as r:
                data: dict[str, int] = await r.json()
                return data

        async def control(action: str) -> None:
            async with http.post(f"{base}/control/{action}") as r:
                r.raise_for_status()

        def followed() -> float:
            return REGISTRY.get_sample_value("redis_autoheal_exporter_followed_units") or 0.0

        async def all_up() -> bool:
            units: int = args.units
            return followed() == units and (await stats())["streams"] >= units

        async def firing(n: int) -> bool:
            return (await stats())["firing"] == n

        rss0 = rss_mib()
        pool = SshPool()
        followers = Followers(pool)
        cpu0, t0 = cpu_seconds(), time.monotonic()
        await followers.sync(config)
        up = await until("every stream up", all_up)
        cpu_up = cpu_seconds() - cpu0
        await until("every unit read active", lambda: _all_read(followers, "active"))
        rss1 = rss_mib()
        print(f"{args.units} units followed after {up:.1f} s (CPU {cpu_up:.1f} s to connect)")
        print(f"  resident memory: {rss0:.0f} MiB before, {rss1:.0f} MiB with every stream up")
        print(f"  = {(rss1 - rss0) * 1024 / args.units:.0f} KiB per followed unit")

        cpu0, t0 = cpu_seconds(), time.monotonic()
        await asyncio.sleep(args.idle)
        idle = (cpu_seconds() - cpu0) / (time.monotonic() - t0)
        print(f"  idle CPU over {args.idle:g} s: {100 * idle:.2f} % of one core")

        cpu0 = cpu_seconds()
        await control("stop-all")
        seconds = await until("every alert firing", lambda: firing(args.units))
        print(
            f"every unit stopped at once: {args.units} alerts firing in Alertmanager after "
            f"{seconds:.2f} s (CPU {cpu_seconds() - cpu0:.1f} s)"
        )
        await control("start-all")
        seconds = await until("every alert resolved", lambda: firing(0))
        print(f"  and all resolved {seconds:.2f} s after they started again")

        cpu0 = cpu_seconds()
        await control("stop-quietly")  # no journal line: the streams cannot tell
        await control("drop")
        await until("the drop noticed", lambda: _below(followed, args.units), 60)
        seconds = await until("every stream up again", all_up)
        reconciled = await until("every stop found by a reconcile", lambda: firing(args.units))
        print(
            f"every SSH connection dropped: all streams up again after {seconds:.1f} s; every "
            f"stop the streams had not shown reported {reconciled:.1f} s later "
            f"(CPU {cpu_seconds() - cpu0:.1f} s)"
        )
        print(f"  resident memory after: {rss_mib():.0f} MiB")
        await followers.close()
        await pool.close()


async def _all_read(followers: Followers, state: str) -> bool:
    return all(f.state == state for f in followers.running())


async def _below(value: Callable[[], float], n: int) -> bool:
    return value() < n


def keys(directory: Path) -> None:
    for name in ("host_key", "client_key"):
        key = asyncssh.generate_private_key("ssh-ed25519")
        key.write_private_key(str(directory / name))
        key.write_public_key(str(directory / f"{name}.pub"))
        (directory / name).chmod(0o600)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--serve", nargs=3, metavar=("SSH_PORT", "HTTP_PORT", "KEYDIR"))
    args = parser.parse_args()
    # Each lost stream logs a warning: a thousand of them say nothing more than the figures.
    logging.basicConfig(level=logging.ERROR)
    if args.serve:
        ssh_port, http_port, keydir = args.serve
        asyncio.run(serve(args.units, int(ssh_port), int(http_port), Path(keydir)))
        return 0
    with tempfile.TemporaryDirectory(prefix="follow-scale-") as tmp:
        directory = Path(tmp)
        keys(directory)
        ssh_port, http_port = free_port(), free_port()
        argv = [sys.executable, __file__, "--units", str(args.units), "--serve"]
        server = subprocess.Popen(
            [*argv, str(ssh_port), str(http_port), tmp], stderr=subprocess.DEVNULL
        )
        try:
            time.sleep(2)
            if server.poll() is not None:
                raise RuntimeError("the hosts' process exited")
            asyncio.run(asyncio.wait_for(measure(args, directory, ssh_port, http_port), 1800))
        finally:
            server.terminate()
            server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
